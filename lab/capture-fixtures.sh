#!/usr/bin/env bash
# Boot lab guests in known memory states and capture their kernel files (with
# capture-tree.sh, INSIDE the guest) into fixture trees: OUT/guest-<series>-<state>/
# plus a NOTE.md saying kernel, boot, state and the key meminfo lines.
#
# usage: capture-fixtures.sh [OUT]        (default: fixtures/ next to lab/)
# env:   SERIES="6.1 6.12"   kernels: 6.1 = linux-image-cloud-amd64 (bookworm),
#                            6.12 = linux-image-6.12-cloud-amd64
#        STATES="idle fill hugepages thp swap ksm"
#        WORK=$MEMWARDEN_LAB_DIR or <repo>/.lab   where guests and run dirs live
# States:
#   idle       512 MiB, nothing running but init, ~5 s after boot
#   fill       512 MiB, 128 MiB of zeroes written into a tmpfs (Shmem, Cached)
#   hugepages  512 MiB, hugepages=16 on the kernel command line (16 x 2 MiB reserved)
#   thp        640 MiB (THP is forced off below 512 MiB of RAM), THP enabled=always,
#              memhog 128 MiB with MADV_HUGEPAGE (AnonHugePages > 0)
#   swap       512 MiB + a 512 MiB virtio swap disk, memhog 560 MiB of random data
#   ksm        512 MiB, memhog 64 MiB same-content pages with MADV_MERGEABLE,
#              ksm run=1 (pages_to_scan 1000) until pages_sharing >= 1000
#   zram       512 MiB, zram loaded (/modules/zram.order), a 64 MiB zram0 written with
#              16 MiB of /dev/urandom then 16 MiB of repeated text, synced, page cache dropped
#              (not in the default STATES: STATES=zram)
#   zfs        512 MiB + a 512 MiB raw disk, the guest of build-zfs.sh (OpenZFS from zfs-dkms,
#              built once, minutes: see README.md), pool "tank" on the disk's one partition
#              (compression off), 160 MiB of /dev/urandom written, the pool exported and
#              imported (the ARC forgets it), the file read back: the ARC holds it
#              (not in the default STATES: STATES=zfs SERIES=6.1)
# The tree comes out through a second raw virtio disk (serial "capture"): the guest
# tars it there and prints size + md5 on the console; we check both before untarring.
set -euo pipefail
H=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$H/../fixtures}; mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
WORK=${WORK:-${MEMWARDEN_LAB_DIR:-$H/../.lab}}; mkdir -p "$WORK"; WORK=$(cd "$WORK" && pwd)
SERIES=${SERIES:-6.1 6.12}
STATES=${STATES:-idle fill hugepages thp swap ksm}
C=$H/console.py
if [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then accel=KVM; else accel='TCG (no vmx/svm on the host)'; fi

# Hold one of the lab's guest slots (the same flock files memwarden-lab's tests use:
# at most MEMWARDEN_LAB_SLOTS=2 lab guests at once on the machine).
got=
for _ in $(seq 2400); do
  for i in $(seq 0 $(( ${MEMWARDEN_LAB_SLOTS:-2} - 1 ))); do
    exec 8>"$WORK/guest-slot-$i"
    if flock -n 8; then got=$i; break 2; fi
    exec 8>&-
  done
  sleep 0.25
done
[ -n "$got" ] || { echo "capture-fixtures: no free guest slot in $WORK after 600 s" >&2; exit 1; }

pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; }
trap cleanup EXIT

for s in $SERIES; do
  G=$WORK/guest-$s
  case $s in
    6.1) KSERIES= "$H/build-guest.sh" "$G" >&2 ;;
    *) KSERIES=$s "$H/build-guest.sh" "$G" >&2 ;;
  esac
  for st in $STATES; do
    name=guest-$s-$st; R=$WORK/run-capture-$s-$st
    mem=512; append=; swap=0; data=0; GS=$G
    case $st in
      hugepages) append=hugepages=16 ;;
      thp) mem=640 ;;
      swap) swap=512 ;;
      zfs) data=512; GS=$WORK/guest-$s-zfs
           MEMWARDEN_LAB_DIR=$WORK "$H/build-zfs.sh" "$G" "$GS" >&2 ;;
    esac
    t0=$(date +%s)
    pid=$(MEM_MIB=$mem EXTRA_APPEND=$append SWAP_MIB=$swap DATA_MIB=$data CAPTURE_MIB=16 "$H/boot-qemu.sh" "$R" "$GS" 8>&-)
    log=$R/state.txt; : > "$log"
    c() { echo "\$ $*" >> "$log"; "$C" "$R" --timeout 300 "$@" | tee -a "$log"; }
    case $st in
      idle|hugepages) sleep 5 ;;
      fill) c fill 128 ;;
      thp) c run 'echo always > /sys/kernel/mm/transparent_hugepage/enabled'
           c hog 128 -H -p same ;;
      swap) c hog 560 -p random ;;
      ksm) c hog 64 -m -p same
           c run 'echo 1000 > /sys/kernel/mm/ksm/pages_to_scan; echo 1 > /sys/kernel/mm/ksm/run'
           c wait-ksm 1000 240 ;;
      zram) c run 'while read -r m; do insmod /modules/$m.ko || echo "insmod $m failed"; done < /modules/zram.order'
            c run 'echo 64M > /sys/block/zram0/disksize'
            c run 'dd if=/dev/urandom of=/dev/zram0 bs=1M count=16 2>&1; yes memwarden-zram-fixture | head -c 16777216 | dd of=/dev/zram0 bs=1M seek=16 2>&1; sync'
            c run 'echo 3 > /proc/sys/vm/drop_caches'
            c run 'cat /sys/block/zram0/mm_stat' ;;
      zfs) c run 'while read -r m; do insmod /modules/$m.ko || echo "insmod $m failed"; done < /modules/zfs.order'
           c run 'printf "n\np\n1\n\n\nw\n" | fdisk $(disk data) >/dev/null 2>&1; zpool create -f -o ashift=12 -O compression=off -O atime=off tank $(disk data)1'
           c run 'dd if=/dev/urandom of=/tank/f bs=1M count=160 2>&1 | tail -1; sync; zpool export tank; zpool import -d $(disk data)1 tank'
           c run 'cat /tank/f > /dev/null'
           c run 'grep -E "^(size|c|c_max|data_size|metadata_size|overhead_size) " /proc/spl/kstat/zfs/arcstats; grep -E "^(linear_data_size|scatter_data_size|scatter_chunk_waste) " /proc/spl/kstat/zfs/abdstats' ;;
    esac
    c run "grep -E '^(MemTotal|MemFree|MemAvailable|Shmem|AnonPages|AnonHugePages|HugePages_Total|HugePages_Free|SwapTotal|SwapFree):' /proc/meminfo"
    cap=$("$C" "$R" --timeout 300 capture | grep '^LAB-CAPTURE')
    bytes=$(echo "$cap" | sed -n 's/.*bytes=\([0-9]*\).*/\1/p')
    md5=$(echo "$cap" | sed -n 's/.*md5=\([0-9a-f]*\).*/\1/p')
    [ -n "$bytes" ] && [ "$(head -c "$bytes" "$R/capture.img" | md5sum | cut -d' ' -f1)" = "$md5" ] \
      || { echo "capture-fixtures: $name: tar on the capture disk does not match ($cap)" >&2; exit 1; }
    rm -rf "${OUT:?}/$name.tmp" && mkdir -p "$OUT/$name.tmp"
    head -c "$bytes" "$R/capture.img" | tar x -C "$OUT/$name.tmp"
    kver=$(cat "$OUT/$name.tmp/proc/sys/kernel/osrelease")
    {
      echo "# $name"
      echo
      echo "- Kernel: $kver (Debian package linux-image-$kver, unpacked by lab/build-guest.sh)."
      [ -f "$GS/zfs-version" ] && [ "$GS" != "$G" ] && echo "- OpenZFS $(cat "$GS/zfs-version") (Debian zfs-dkms, built for this kernel by lab/build-zfs.sh; zpool/zfs from zfsutils-linux)."
      echo "- Booted: plain QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}'), q35, 1 vCPU, -m $mem,"
      echo "  $accel, direct kernel boot, busybox initramfs (lab/guest-init.sh),"
      echo "  virtio-balloon (stats polling off), append \`console=ttyS0 panic=-1 quiet${append:+ $append}\`$([ "$swap" -gt 0 ] && echo ", a ${swap} MiB virtio swap disk")$([ "$data" -gt 0 ] && echo ", a ${data} MiB raw virtio disk (serial data)")."
      echo "- State: $st (see lab/capture-fixtures.sh). Console session before the capture:"
      echo
      echo '```'
      cat "$log"
      echo '```'
      echo
      echo "- Captured $(date -u '+%Y-%m-%d %H:%M UTC') by lab/capture-tree.sh inside the guest, out via a raw"
      echo "  virtio disk (tar, $bytes bytes, md5 checked). The capture's own processes (sh, cat, find) are in proc/."
    } > "$OUT/$name.tmp/NOTE.md"
    rm -rf "${OUT:?}/$name" && mv "$OUT/$name.tmp" "$OUT/$name"
    kill "$pid"; pid=
    rm -rf "$R"
    echo "$name: $(du -sb "$OUT/$name" | cut -f1) bytes, $(( $(date +%s) - t0 )) s" >&2
  done
done
