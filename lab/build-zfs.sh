#!/usr/bin/env bash
# OpenZFS for a lab guest: Debian's zfs-dkms built with dkms for the guest's kernel, and a
# guest variant whose initramfs also carries spl.ko/zfs.ko (+ the modules they depend on),
# the zpool/zfs binaries and the shared libraries ldd names for them.
#
# usage: build-zfs.sh GUESTDIR OUTDIR
#   GUESTDIR  a guest of build-guest.sh (its kernel-release, vmlinuz and initramfs are used)
#   OUTDIR    the ZFS guest: OUTDIR/vmlinuz (a copy), OUTDIR/initramfs.cpio.gz (the guest's
#             initramfs with a second cpio archive appended: the kernel unpacks both, so the
#             base guest is reused as is), OUTDIR/kernel-release, OUTDIR/zfs-version
# The built modules are cached in $MEMWARDEN_LAB_DIR/zfs-cache/<kernel release>/<zfs version>/
# (modules/*.ko, build-seconds); a cached build is reused, only the small archive is rebuilt.
# In the guest: `run while read -r m; do insmod /modules/$m.ko; done < /modules/zfs.order`,
# then zpool/zfs (in /bin, libraries in /lib/x86_64-linux-gnu and /lib64).
#
# Apt: zfs-dkms is in Debian's contrib component; if apt has no candidate for it, contrib is
# enabled for bookworm and bookworm-updates in /etc/apt/sources.list.d/memwarden-lab-contrib.sources
# (our own file, written once). The host gets dkms, zfs-dkms and linux-headers-<release>
# installed (dkms needs them where it looks); zfsutils-linux and its libraries are only
# `apt-get download`ed and unpacked into the cache, never installed. The build runs under
# nice -n 10 (the machine is shared with guests). Idempotent, flock'ed on the cache dir.
# Runs as root on Debian 12.
set -euo pipefail
G=${1:?usage: build-zfs.sh GUESTDIR OUTDIR}
OUT=${2:?usage: build-zfs.sh GUESTDIR OUTDIR}
HERE=$(cd "$(dirname "$0")" && pwd)
LAB=${MEMWARDEN_LAB_DIR:-$HERE/../.lab}
export DEBIAN_FRONTEND=noninteractive
[ -f "$G/kernel-release" ] || { echo "build-zfs: no guest in $G (run build-guest.sh)" >&2; exit 1; }
G=$(cd "$G" && pwd)
rel=$(cat "$G/kernel-release")
mkdir -p "$LAB/zfs-cache" "$OUT" && LAB=$(cd "$LAB" && pwd) && OUT=$(cd "$OUT" && pwd)

exec 9>"$LAB/zfs-cache/lock"
flock 9

candidate() { { apt-cache policy "$1" 2>/dev/null || true; } | sed -n 's/^ *Candidate: //p' | grep -v '(none)' | head -1 || true; }
ver=$(candidate zfs-dkms)
if [ -z "$ver" ]; then
  f=/etc/apt/sources.list.d/memwarden-lab-contrib.sources
  [ -f "$f" ] || printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: contrib\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' > "$f"
  apt-get update -q >/dev/null 2>&1 || true
  ver=$(candidate zfs-dkms)
  [ -n "$ver" ] || { echo "build-zfs: no zfs-dkms candidate even with contrib (apt-cache policy zfs-dkms)" >&2; exit 1; }
fi
up=${ver%%-*}                      # dkms' module version: the upstream part (2.1.11)
C=$LAB/zfs-cache/$rel/$ver

if [ ! -f "$C/.complete" ]; then
  rm -rf "$C" && mkdir -p "$C/modules" "$C/debs" "$C/root"
  # Headers, dkms and the source package. zfs-dkms' postinst (and the headers' dkms hook) build
  # for every kernel with headers: the whole install is niced and timed as the build.
  t0=$(date +%s)
  nice -n 10 apt-get install -y -q --no-install-recommends "linux-headers-$rel" dkms "zfs-dkms=$ver" \
    > "$C/apt-install.log" 2>&1 \
    || { apt-get update -q >/dev/null 2>&1; nice -n 10 apt-get install -y -q --no-install-recommends \
           "linux-headers-$rel" dkms "zfs-dkms=$ver" > "$C/apt-install.log" 2>&1; } \
    || { echo "build-zfs: apt-get install failed, see $C/apt-install.log" >&2; exit 1; }
  # Built by the postinst already, or not (then now): `dkms build` is a no-op when built.
  nice -n 10 dkms build "zfs/$up" -k "$rel" > "$C/dkms-build.log" 2>&1 \
    || grep -q 'already built' "$C/dkms-build.log" \
    || { echo "build-zfs: dkms build zfs/$up -k $rel failed, see $C/dkms-build.log and /var/lib/dkms/zfs/$up/build/make.log" >&2; exit 1; }
  echo $(( $(date +%s) - t0 )) > "$C/build-seconds"
  D=/var/lib/dkms/zfs/$up/$rel/x86_64/module
  [ -d "$D" ] || { echo "build-zfs: dkms left no modules in $D" >&2; exit 1; }
  for f in "$D"/*.ko*; do
    n=${f##*/}; n=${n%%.ko*}
    case "$f" in
      *.xz) xz -dc "$f" > "$C/modules/$n.ko" ;;
      *.zst) zstd -dcq "$f" > "$C/modules/$n.ko" ;;
      *) cp "$f" "$C/modules/$n.ko" ;;
    esac
  done
  # Userland, unpacked (not installed): zpool, zfs and the libraries of the same source.
  (cd "$C/debs" && apt-get download -q "zfsutils-linux=$ver" "libzfs4linux=$ver" "libzpool5linux=$ver" \
     "libnvpair3linux=$ver" "libuutil3linux=$ver" >/dev/null 2>&1) \
    || { echo "build-zfs: apt-get download of zfsutils-linux $ver and its libraries failed" >&2; exit 1; }
  for d in "$C"/debs/*.deb; do dpkg -x "$d" "$C/root"; done
  rm -rf "$C/debs"
  touch "$C/.complete"
fi

# The appended archive: /modules/zfs.order (deps first, from each .ko's depends=), the modules
# (ZFS's own from the cache, kernel ones from the guest's unpacked tree), the binaries and
# every library ldd names (the system's for those not from ZFS's packages).
A=$OUT/overlay
rm -rf "$A" && mkdir -p "$A/modules" "$A/bin" "$A/lib/x86_64-linux-gnu" "$A/lib64" "$A/etc"
M=$G/cache/$rel/lib/modules/$rel
: > "$A/modules/zfs.order"
add() {
  local m=$1 f dep
  [ -f "$A/modules/$m.ko" ] && return 0
  if [ -f "$C/modules/$m.ko" ]; then
    cp "$C/modules/$m.ko" "$A/modules/$m.ko"
  else
    f=$(find "$M" \( -name "$m.ko" -o -name "$m.ko.*" -o -name "${m//_/-}.ko*" \) | head -1)
    # built into the kernel (=y) or already in the base guest's /modules: nothing to add
    [ -n "$f" ] || return 0
    case "$f" in
      *.xz) xz -dc "$f" > "$A/modules/$m.ko" ;;
      *.zst) zstd -dcq "$f" > "$A/modules/$m.ko" ;;
      *) cp "$f" "$A/modules/$m.ko" ;;
    esac
  fi
  for dep in $(tr '\0' '\n' < "$A/modules/$m.ko" | sed -n 's/^depends=//p' | head -1 | tr ',' ' '); do
    add "$dep"
  done
  echo "$m" >> "$A/modules/zfs.order"
}
add zfs
for b in zpool zfs; do
  src=
  for d in "$C/root/sbin" "$C/root/usr/sbin"; do [ -f "$d/$b" ] && src=$d/$b && break; done
  [ -n "$src" ] || { echo "build-zfs: no $b in zfsutils-linux" >&2; exit 1; }
  cp "$src" "$A/bin/$b"
  LD_LIBRARY_PATH=$C/root/lib/x86_64-linux-gnu:$C/root/usr/lib/x86_64-linux-gnu ldd "$src" \
    | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^[[:space:]]*\(\/lib64\/[^ ]*\) .*/\1/p' \
    | while read -r l; do
        case "$l" in /lib64/*) cp -L "$l" "$A/lib64/" ;; *) cp -L "$l" "$A/lib/x86_64-linux-gnu/" ;; esac
      done
done
# libzfs reads the host id from /etc/hostid (zpool import refuses a pool "in use" by another id)
printf '\x4d\x57\x4c\x42' > "$A/etc/hostid"
(cd "$A" && find . | cpio -o -H newc --quiet | gzip -6) > "$OUT/overlay.cpio.gz"
cat "$G/initramfs.cpio.gz" "$OUT/overlay.cpio.gz" > "$OUT/initramfs.cpio.gz.tmp"
mv "$OUT/initramfs.cpio.gz.tmp" "$OUT/initramfs.cpio.gz" && rm -f "$OUT/overlay.cpio.gz"
cp "$G/vmlinuz" "$OUT/vmlinuz.tmp" && mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
echo "$rel" > "$OUT/kernel-release"
echo "$ver" > "$OUT/zfs-version"
order=$(tr '\n' ' ' < "$A/modules/zfs.order")
rm -rf "$A"
echo "built $OUT for $rel with zfs $ver (dkms build $(cat "$C/build-seconds") s, cached in $C; modules: $order)"
