#!/usr/bin/env bash
# Build a lab guest: a Debian kernel (unpacked from its .deb, the host's /boot is
# never touched) + a busybox initramfs with lab/guest-init.sh as /init, the
# virtio modules it needs, lab/memhog (static) and lab/capture-tree.sh.
#
# usage: build-guest.sh OUTDIR
# env:   KSERIES=""      which Debian kernel series: "" = linux-image-$KFLAVOUR
#                        (bookworm's 6.1), or e.g. 6.12 = linux-image-6.12-$KFLAVOUR
#        KFLAVOUR=cloud-amd64   or amd64 (the generic kernel)
#        KVER=           exact version instead, e.g. 6.1.0-56 or 6.12.117+deb12
#                        (package linux-image-$KVER-$KFLAVOUR)
# out:   OUTDIR/vmlinuz  OUTDIR/initramfs.cpio.gz  OUTDIR/kernel-release
# Idempotent: the .deb and its unpacked tree stay in OUTDIR/cache; re-running
# only rebuilds the (small) initramfs. Runs as root on Debian 12; installs
# busybox-static, cpio, gcc, libc6-dev and xz-utils with apt-get if missing.
set -euo pipefail
OUT=${1:?usage: build-guest.sh OUTDIR}
HERE=$(cd "$(dirname "$0")" && pwd)
KFLAVOUR=${KFLAVOUR:-cloud-amd64}
KSERIES=${KSERIES:-}
export DEBIAN_FRONTEND=noninteractive
mkdir -p "$OUT/cache" && OUT=$(cd "$OUT" && pwd)

need=()
[ -x /bin/busybox ] && /bin/busybox --list | grep -qx insmod || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
command -v gcc >/dev/null || need+=(gcc)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
command -v xz >/dev/null || need+=(xz-utils)
command -v zstd >/dev/null || need+=(zstd)
if [ ${#need[@]} -gt 0 ]; then
  apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; }
fi

# resolve META -> the versioned linux-image package it depends on
# (never fails: an unknown package resolves to "", so that the apt-get update retries below run
# under `set -o pipefail`, where a failing apt-cache would otherwise end the script)
resolve() { { apt-cache depends "$1" 2>/dev/null || true; } | sed -n 's/.*Depends: \(linux-image-[0-9].*\)/\1/p' | head -1 || true; }
if [ -n "${KVER:-}" ]; then
  pkg=linux-image-$KVER-$KFLAVOUR
else
  meta=linux-image-$KFLAVOUR; [ -n "$KSERIES" ] && meta=linux-image-$KSERIES-$KFLAVOUR
  pkg=$(resolve "$meta")
  if [ -z "$pkg" ]; then
    apt-get update -q >/dev/null 2>&1 || true
    pkg=$(resolve "$meta")
  fi
  if [ -z "$pkg" ] && [ -n "$KSERIES" ]; then
    # Debian 12 carries 6.12 in bookworm-security today; older snapshots had it in backports only.
    f=/etc/apt/sources.list.d/memwarden-lab-backports.sources
    if [ ! -f "$f" ]; then
      printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' > "$f"
      apt-get update -q >/dev/null 2>&1 || true
      pkg=$(resolve "$meta")
    fi
  fi
  [ -n "$pkg" ] || { echo "build-guest: cannot resolve $meta (apt-get update? apt-cache policy $meta)" >&2; exit 1; }
fi
rel=${pkg#linux-image-}; rel=${rel%-unsigned}
K=$OUT/cache/$rel
# What the unpacked tree keeps of the kernel's modules; a tree unpacked with an older filter
# (no marker) is unpacked again.
KEEP=keep-v3-virtio-block-pvpanic-zram
if [ ! -f "$K/boot/vmlinuz-$rel" ] || [ ! -f "$K/.$KEEP" ]; then
  rm -f "$OUT/cache/${pkg}_"*.deb
  # (apt warns that user _apt cannot write here; harmless, root downloads it)
  (cd "$OUT/cache" && apt-get download -q "$pkg" >/dev/null 2>&1) \
    || { echo "build-guest: apt-get download $pkg failed" >&2; exit 1; }
  deb=$(ls "$OUT/cache/${pkg}_"*.deb | head -1)
  rm -rf "$K" "$K.tmp" && mkdir -p "$K.tmp" && dpkg -x "$deb" "$K.tmp"
  # Keep only what the guest uses (drivers/virtio, drivers/block, drivers/misc/pvpanic, and for
  # zram: zsmalloc in mm/, the lzo/lz4/zstd compressors in crypto/ and lib/): ~10 MB, not ~250.
  find "$K.tmp/lib/modules" -name '*.ko*' ! -path '*/drivers/virtio/*' ! -path '*/drivers/block/*' \
    ! -path '*/drivers/misc/pvpanic/*' ! -path '*/mm/*' ! -path '*/crypto/lz*' \
    ! -path '*/crypto/zstd*' ! -path '*/lib/lz*' ! -path '*/lib/zstd/*' -delete
  rm -rf "$K.tmp/usr" && touch "$K.tmp/.$KEEP" && mv "$K.tmp" "$K"
  rm -f "$deb"
fi
cp "$K/boot/vmlinuz-$rel" "$OUT/vmlinuz.tmp" && mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
echo "$rel" > "$OUT/kernel-release"

R=$OUT/cache/root
rm -rf "$R" && mkdir -p "$R"/{bin,dev,proc,sys,modules}
cp /bin/busybox "$R/bin/busybox"
gcc -static -O2 -Wall -o "$R/bin/memhog" "$HERE/memhog.c"
install -m 0755 "$HERE/capture-tree.sh" "$R/bin/capture-tree"
install -m 0755 "$HERE/guest-init.sh" "$R/init"

# Modules (=m in Debian's configs; =y ones are simply not found), decompressed for
# busybox insmod, and their load order from the depends= field of .modinfo.
M=$K/lib/modules/$rel
: > "$R/modules/order"
# add_module NAME [ORDER]: NAME and its dependencies, listed in ORDER (default the boot list).
add_module() {
  local m=$1 order=${2:-$R/modules/order} f dep
  [ -f "$R/modules/$m.ko" ] && return 0
  f=$(find "$M" \( -name "$m.ko" -o -name "$m.ko.*" -o -name "${m//_/-}.ko*" \) | head -1)
  [ -n "$f" ] || return 0
  case "$f" in
    *.xz) xz -dc "$f" > "$R/modules/$m.ko" ;;
    *.zst) zstd -dcq "$f" > "$R/modules/$m.ko" ;;
    *) cp "$f" "$R/modules/$m.ko" ;;
  esac
  for dep in $(tr '\0' '\n' < "$R/modules/$m.ko" | sed -n 's/^depends=//p' | head -1 | tr ',' ' '); do
    add_module "$dep" "$order"
  done
  echo "$m" >> "$order"
}
# pvpanic_mmio drives QEMU's ISA `-device pvpanic` (ACPI QEMU0001), pvpanic_pci `pvpanic-pci`:
# the guest tells the hypervisor it panicked (boot-qemu.sh PANIC=pause).
for m in virtio_pci virtio_balloon virtio_blk pvpanic_mmio pvpanic_pci; do add_module "$m"; done
# zram is not loaded at boot (it would be in every guest's figures): /modules/zram.order lists
# it and what it needs, for `run while read -r m; do insmod /modules/$m.ko; done < /modules/zram.order`.
# Its compressor is asked for through the crypto API (request_module, which busybox cannot
# serve) on 6.1, so the default one (lzo-rle) is listed before it; 6.12's zram has its own.
: > "$R/modules/zram.order"
for m in lzo_rle zram; do add_module "$m" "$R/modules/zram.order"; done
grep -qE '^CONFIG_VIRTIO_BALLOON=[ym]' "$K/boot/config-$rel" || { echo "build-guest: no virtio_balloon in $rel" >&2; exit 1; }

(cd "$R" && find . | cpio -o -H newc --quiet | gzip -6) > "$OUT/initramfs.cpio.gz.tmp"
mv "$OUT/initramfs.cpio.gz.tmp" "$OUT/initramfs.cpio.gz"
echo "built $OUT/vmlinuz ($rel) and $OUT/initramfs.cpio.gz ($(du -k "$OUT/initramfs.cpio.gz" | cut -f1) KiB; modules: $(tr '\n' ' ' < "$R/modules/order"); zram: $(tr '\n' ' ' < "$R/modules/zram.order"))"
