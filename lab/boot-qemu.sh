#!/usr/bin/env bash
# Start one lab guest under plain QEMU (no libvirt), daemonized; print QEMU's PID.
#
# usage: boot-qemu.sh RUNDIR GUESTDIR        (GUESTDIR: output of build-guest.sh)
# env:
#   MEM_MIB=512  SMP=1  ACCEL=auto|tcg|kvm  EXTRA_APPEND="hugepages=16 ..."
#   STATS_POLL=0       balloon guest-stats-polling-interval at start (s; 0 = off)
#   BALLOON_OPTS=""    extra virtio-balloon-pci properties, e.g. deflate-on-oom=on
#   BALLOON=virtio     none = no balloon device at all (a VM memwarden must diagnose)
#   CAPTURE_MIB=0      >0: add a raw virtio disk RUNDIR/capture.img (serial "capture")
#                      that the guest's `capture` command tars its tree onto
#   PANIC=none         pause: a pvpanic device, QEMU pauses a guest that panics (guest-panicked)
#   SWAP_MIB=0         >0: add a raw virtio disk RUNDIR/swap.img (serial "swap"); the
#                      guest mkswaps and swapons it at boot
#   DATA_MIB=0         >0: add a raw virtio disk RUNDIR/data.img (serial "data"), left alone
#                      by the guest's init (e.g. a ZFS pool's vdev: `disk data` in the guest)
#   WAIT=1 WAIT_S=120  wait until the guest prints LAB-READY (fail after WAIT_S)
#   QEMU=qemu-system-x86_64   the QEMU binary, e.g. the newer one of fetch-qemu.sh:
#                      QEMU=.lab/qemu-10/qemu-system-x86_64 (default: the system's, 7.2)
#   QEMU_FIRMWARE=     firmware/data dirs searched first (-L each; colon-separated); the
#                      fetch-qemu.sh wrapper already passes its own
# RUNDIR gets:
#   qmp.sock     QMP socket (one client at a time)
#   serial.sock  guest console (ttyS0): lab/console.py RUNDIR CMD ...
#   serial.log   everything the guest printed (written even with no client attached)
#   qemu.pid, qemu.stderr
# The balloon is -device virtio-balloon-pci,id=balloon0: QOM path
# /machine/peripheral/balloon0 (guest-stats, guest-stats-polling-interval).
# Accelerator: KVM only if /dev/kvm is writable AND the CPU shows vmx/svm; on PVM
# sandboxes /dev/kvm exists but stock kernels hang under it, so TCG there.
set -euo pipefail
RUN=${1:?usage: boot-qemu.sh RUNDIR GUESTDIR}
G=${2:?usage: boot-qemu.sh RUNDIR GUESTDIR}
MEM_MIB=${MEM_MIB:-512}; SMP=${SMP:-1}; ACCEL=${ACCEL:-auto}
STATS_POLL=${STATS_POLL:-0}; CAPTURE_MIB=${CAPTURE_MIB:-0}; SWAP_MIB=${SWAP_MIB:-0}
WAIT=${WAIT:-1}; WAIT_S=${WAIT_S:-120}; DATA_MIB=${DATA_MIB:-0}

QEMU=${QEMU:-qemu-system-x86_64}
if [ "$QEMU" = qemu-system-x86_64 ] && ! command -v qemu-system-x86_64 >/dev/null; then
  # Debian 12's qemu-system-x86 (7.2) Breaks a backported qemu-utils 10: take bookworm's.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    --allow-downgrades qemu-system-x86 qemu-utils/bookworm >/dev/null
fi
[ -f "$G/vmlinuz" ] && [ -f "$G/initramfs.cpio.gz" ] || { echo "boot-qemu: no guest in $G (run build-guest.sh)" >&2; exit 1; }
G=$(cd "$G" && pwd)

if [ "$ACCEL" = auto ]; then
  if [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then ACCEL=kvm; else ACCEL=tcg; fi
fi
case $ACCEL in
  kvm) accel=(-accel kvm -cpu host) ;;
  tcg) accel=(-accel tcg,thread=multi -cpu max) ;;
  *) echo "boot-qemu: ACCEL must be auto, kvm or tcg" >&2; exit 2 ;;
esac

mkdir -p "$RUN" && RUN=$(cd "$RUN" && pwd)
if [ -f "$RUN/qemu.pid" ] && kill -0 "$(cat "$RUN/qemu.pid")" 2>/dev/null; then
  echo "boot-qemu: already running in $RUN, pid $(cat "$RUN/qemu.pid")" >&2; exit 1
fi
rm -f "$RUN"/{qmp.sock,serial.sock,serial.log,qemu.pid,qemu.stderr,capture.img,swap.img,data.img}

disks=()
if [ "$CAPTURE_MIB" -gt 0 ]; then
  truncate -s "${CAPTURE_MIB}M" "$RUN/capture.img"
  disks+=(-drive "file=$RUN/capture.img,format=raw,if=none,id=cap,cache=writethrough"
          -device virtio-blk-pci,drive=cap,serial=capture)
fi
if [ "$SWAP_MIB" -gt 0 ]; then
  truncate -s "${SWAP_MIB}M" "$RUN/swap.img"
  disks+=(-drive "file=$RUN/swap.img,format=raw,if=none,id=swap,cache=unsafe"
          -device virtio-blk-pci,drive=swap,serial=swap)
fi
if [ "$DATA_MIB" -gt 0 ]; then
  # sparse; cache=unsafe: the guest's flushes need not reach the host's disk
  truncate -s "${DATA_MIB}M" "$RUN/data.img"
  disks+=(-drive "file=$RUN/data.img,format=raw,if=none,id=data,cache=unsafe"
          -device virtio-blk-pci,drive=data,serial=data)
fi

# PANIC=pause: a pvpanic device, and QEMU pauses the guest when its kernel reports a panic
# (query-status `guest-panicked`, event GUEST_PANICKED) instead of letting panic=-1 reboot it.
panic=()
case ${PANIC:-none} in
  none) ;;
  pause) panic=(-device pvpanic -action panic=pause) ;;
  *) echo "boot-qemu: PANIC must be none or pause" >&2; exit 2 ;;
esac
balloon=(-device "virtio-balloon-pci,id=balloon0,guest-stats-polling-interval=$STATS_POLL${BALLOON_OPTS:+,$BALLOON_OPTS}")
[ "${BALLOON:-virtio}" = none ] && balloon=()
firmware=()
IFS=: read -ra fw <<<"${QEMU_FIRMWARE:-}"
for d in "${fw[@]}"; do [ -n "$d" ] && firmware+=(-L "$d"); done

"$QEMU" "${firmware[@]}" "${accel[@]}" -machine q35 -m "$MEM_MIB" -smp "$SMP" \
  -name "lab-$(basename "$RUN")" -nic none -display none -monitor none \
  -kernel "$G/vmlinuz" -initrd "$G/initramfs.cpio.gz" \
  -append "console=ttyS0 panic=-1 quiet ${EXTRA_APPEND:-}" \
  -chardev "socket,id=ser0,path=$RUN/serial.sock,server=on,wait=off,logfile=$RUN/serial.log" \
  -serial chardev:ser0 \
  -qmp "unix:$RUN/qmp.sock,server=on,wait=off" \
  "${balloon[@]}" \
  "${panic[@]}" \
  "${disks[@]}" \
  -daemonize -pidfile "$RUN/qemu.pid" 2>"$RUN/qemu.stderr"

pid=$(cat "$RUN/qemu.pid")
if [ "$WAIT" = 1 ]; then
  end=$(( $(date +%s) + WAIT_S ))
  until grep -q LAB-READY "$RUN/serial.log" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { echo "boot-qemu: qemu died, see $RUN/qemu.stderr" >&2; exit 1; }
    [ "$(date +%s)" -lt "$end" ] || { echo "boot-qemu: no LAB-READY after ${WAIT_S}s (pid $pid); serial log tail:" >&2; tail -5 "$RUN/serial.log" >&2; exit 1; }
    sleep 0.2
  done
fi
echo "$pid"
