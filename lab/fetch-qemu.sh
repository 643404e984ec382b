#!/usr/bin/env bash
# Unpack a newer QEMU (bookworm-backports' qemu-system-x86, 10.0 today) into the lab's own
# directory for plain-QEMU lab guests. Nothing is installed: the system's QEMU 7.2 stays what
# libvirt 9.0 and every other test run.
#
# usage: fetch-qemu.sh [DEST]     DEST default: $MEMWARDEN_LAB_DIR/qemu-10 (<repo>/.lab/qemu-10)
# env:   QEMU_SUITE=bookworm-backports   the apt release the packages come from
# out:   DEST/qemu-system-x86_64   a wrapper to run: the binary (DEST/usr/bin) with -L for its
#                                  firmware, option ROMs and keymaps (DEST/usr/share/qemu,
#                                  DEST/usr/share/seabios) and QEMU_MODULE_DIR for its modules
#        DEST/lib                  shared libraries the system lacks (the wrapper's LD_LIBRARY_PATH;
#                                  empty on Debian 12 with bookworm's qemu-system-x86 installed)
#        DEST/version              first line of `qemu-system-x86_64 --version`
# Prints DEST/version's line. Idempotent (a complete DEST of the same package list is left
# alone) and flock'ed on DEST.lock. Enables bookworm-backports in a sources.list.d file if apt has no such suite
# (the same file build-guest.sh writes); backports are NotAutomatic in Debian, so the system
# keeps installing and upgrading from bookworm. Runs as root on Debian 12.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
LAB=${MEMWARDEN_LAB_DIR:-$HERE/../.lab}
DEST=${1:-$LAB/qemu-10}
SUITE=${QEMU_SUITE:-bookworm-backports}
export DEBIAN_FRONTEND=noninteractive
mkdir -p "$(dirname "$DEST")" && DEST=$(cd "$(dirname "$DEST")" && pwd)/$(basename "$DEST")

exec 9>"$DEST.lock"
flock 9

# The binary, its data (option ROMs, keymaps), the helpers package it depends on, the SeaBIOS it
# asks for (>> 1.16.3; bookworm has 1.16.2), and the OpenGL and SPICE modules: QEMU 10 looks for
# every module it knows in its own dir, then in the system's, where 7.2's are ("Only modules from
# the same build can be loaded"), and `qom-list-types` (libvirt's capability probe) loads them
# all and killed QEMU on 7.2's. iPXE is not needed: lab guests have no NIC.
pkgs=(qemu-system-x86 qemu-system-data qemu-system-common seabios
      qemu-system-modules-opengl qemu-system-modules-spice)
check() {  # prints the version line; fails if the binary does not run
  local out
  out=$("$DEST/qemu-system-x86_64" --version) && "$DEST/qemu-system-x86_64" -L help >/dev/null \
    && echo "${out%%$'\n'*}"
}
if [ -f "$DEST/version" ] && [ "$(cat "$DEST/packages" 2>/dev/null)" = "${pkgs[*]}" ] \
   && check >/dev/null 2>&1; then
  cat "$DEST/version"; exit 0
fi

# (apt-cache's output is read whole: `apt-cache | grep -q` fails under pipefail when grep
# hangs up first)
has_suite() { grep -q "a=$SUITE," <<<"$(apt-cache policy 2>/dev/null)"; }
in_suite() { grep -q " $SUITE/" <<<"$(apt-cache policy qemu-system-x86 2>/dev/null)"; }
if ! in_suite; then
  if ! has_suite; then
    f=/etc/apt/sources.list.d/memwarden-lab-backports.sources
    [ "$SUITE" = bookworm-backports ] || { echo "fetch-qemu: apt has no suite $SUITE" >&2; exit 1; }
    [ -f "$f" ] || printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' > "$f"
  fi
  apt-get update -q >/dev/null 2>&1 || true
  in_suite || { echo "fetch-qemu: no qemu-system-x86 in $SUITE after apt-get update (apt-cache policy qemu-system-x86)" >&2; exit 1; }
fi

tmp=$DEST.tmp
rm -rf "$tmp" && mkdir -p "$tmp/debs" "$tmp/root/lib"
# (apt warns that user _apt cannot write here; harmless, root downloads it)
(cd "$tmp/debs" && apt-get download -q "${pkgs[@]/%//$SUITE}" >/dev/null 2>&1) \
  || { echo "fetch-qemu: apt-get download ${pkgs[*]} from $SUITE failed" >&2; exit 1; }
for deb in "$tmp"/debs/*.deb; do dpkg -x "$deb" "$tmp/root"; done

# Shared libraries: each library package these depend on that is not installed at the version
# asked for (libvirglrenderer1 for the OpenGL module on Debian 12) is downloaded (apt's candidate: bookworm first) and its .so files kept.
deps=$(for d in "$tmp"/debs/*.deb; do dpkg-deb -f "$d" Depends; echo; done | tr ',' '\n' | sed 's/^ *//' | sort -u)
while read -r dep; do
  name=${dep%% *}; case "$name" in lib*|zlib*) ;; *) continue ;; esac
  want=$(sed -n 's/.*(\(.*\)).*/\1/p' <<<"$dep")
  have=$({ dpkg-query -W -f='${Status} ${Version}' "$name" 2>/dev/null || true; } | sed -n 's/^install ok installed //p')
  if [ -n "$have" ] && { [ -z "$want" ] || dpkg --compare-versions "$have" ${want% *} "${want#* }"; }; then
    continue
  fi
  echo "fetch-qemu: $name ${want:+($want) }not installed${have:+ (have $have)}: unpacking it" >&2
  (cd "$tmp/debs" && apt-get download -q "$name" >/dev/null 2>&1) \
    || { echo "fetch-qemu: apt-get download $name failed" >&2; exit 1; }
  x=$tmp/x.$name && mkdir -p "$x" && dpkg -x "$(ls "$tmp/debs/${name}"_*.deb | head -1)" "$x"
  find "$x" -name '*.so*' \( -type f -o -type l \) -exec cp -a {} "$tmp/root/lib/" \;
done <<<"$deps"

# The wrapper: the unpacked firmware first (-L; Debian's QEMU 10 then searches /usr/share/qemu,
# /usr/share/seabios and /usr/lib/ipxe/qemu, its built-in firmware path), its own modules (the
# system's /usr/lib/x86_64-linux-gnu/qemu are 7.2's), and the libraries kept in lib/.
cat > "$tmp/root/qemu-system-x86_64" <<'WRAP'
#!/bin/sh
# Written by lab/fetch-qemu.sh: the unpacked QEMU with its own firmware, modules and libraries.
D=$(cd "$(dirname "$0")" && pwd)
[ -n "$(ls -A "$D/lib" 2>/dev/null)" ] && export LD_LIBRARY_PATH="$D/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export QEMU_MODULE_DIR="$D/usr/lib/x86_64-linux-gnu/qemu"
exec "$D/usr/bin/qemu-system-x86_64" -L "$D/usr/share/qemu" -L "$D/usr/share/seabios" "$@"
WRAP
chmod +x "$tmp/root/qemu-system-x86_64"

rm -rf "$DEST" && mv "$tmp/root" "$DEST" && rm -rf "$tmp"
v=$(check) || { echo "fetch-qemu: the unpacked qemu-system-x86_64 does not run" >&2; exit 1; }
echo "${pkgs[*]}" > "$DEST/packages"
echo "$v" > "$DEST/version"
echo "$v"
