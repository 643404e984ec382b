#!/bin/busybox sh
# /init of memwarden's lab guest (busybox only; packed by lab/build-guest.sh).
#
# Boot: mounts proc/sys/dev, a tmpfs on /fill, loads the modules listed in
# /modules/order (virtio_pci, virtio_balloon, virtio_blk and what they need),
# turns on swap on a virtio disk with serial "swap" if there is one, prints
#     LAB-READY balloon=<yes|no> swap=<kB> kernel=<release>
# and then obeys commands read line by line from the serial console (ttyS0).
#
# Command line: [@TAG] COMMAND [ARGS]. The guest answers
#     LAB-GOT @TAG                 as soon as the line is read
#     ... output ...
#     LAB-ACK @TAG rc=<status>     when done (LAB-ERR @TAG ... for an unknown command)
# A client should send, wait for LAB-GOT, hang up, then read the rest from the
# serial log: output printed while a client is attached can be garbled.
# Commands:
#     meminfo             print /proc/meminfo between
#                         LAB-MEMINFO-BEGIN @TAG uptime=<s> / LAB-MEMINFO-END @TAG
#     fill MIB [zero|random]   write MIB into the /fill tmpfs (Shmem grows)
#     drop                delete all fill files
#     hog MIB [memhog options] start /bin/memhog in the background, wait until
#                         it has filled its memory (see lab/memhog.c)
#     killhogs            kill every memhog
#     wait-ksm N SECONDS  wait until /sys/kernel/mm/ksm/pages_sharing >= N
#     run SHELL-LINE      run a shell line (eval), e.g. run echo 1 > /sys/kernel/mm/ksm/run
#     capture             lab/capture-tree.sh of this guest, tar it onto the raw
#                         virtio disk with serial "capture", print
#                         LAB-CAPTURE bytes=<n> md5=<hex>
#     poweroff            power off
# Kernel command line knobs: lab.interval=S (print meminfo every S s, tag @tick;
#   default 0 = never), lab.fill=MIB (fill once at boot).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null || true
mkdir -p /tmp /fill && mount -t tmpfs -o size=95% fill /fill

INTERVAL=0; FILL=0
for w in $(cat /proc/cmdline); do
  case "$w" in
    lab.interval=*) INTERVAL=${w#*=} ;;
    lab.fill=*) FILL=${w#*=} ;;
  esac
done

[ -f /modules/order ] && while read -r m; do insmod "/modules/$m.ko" 2>/dev/null; done < /modules/order
for _ in 1 2 3 4 5 6 7 8 9 10; do
  ls /sys/bus/virtio/drivers/virtio_balloon/ 2>/dev/null | grep -q virtio && break
  sleep 0.2
done
if ls /sys/bus/virtio/drivers/virtio_balloon/ 2>/dev/null | grep -q virtio; then B=yes; else B=no; fi

disk() {  # disk SERIAL -> /dev/vdX
  for b in /sys/block/vd*; do
    [ -f "$b/serial" ] && [ "$(cat "$b/serial")" = "$1" ] && echo "/dev/${b##*/}" && return 0
  done
  return 1
}
sw=$(disk swap) && mkswap "$sw" >/dev/null 2>&1 && swapon "$sw"

meminfo() {  # one write per block: no interleaving with other output
  { echo "LAB-MEMINFO-BEGIN @$1 uptime=$(cut -d' ' -f1 /proc/uptime)"
    cat /proc/meminfo
    echo "LAB-MEMINFO-END @$1"; } > "/tmp/mi.$1" && cat "/tmp/mi.$1"
}
NFILL=0
fill() {
  NFILL=$((NFILL+1)); src=/dev/zero; [ "${2:-}" = random ] && src=/dev/urandom
  dd if=$src of=/fill/f$NFILL bs=1M count="$1" 2>/dev/null
}
hog() {
  n=$(ls /tmp/hog.*.out 2>/dev/null | wc -l); o=/tmp/hog.$n.out
  memhog "$@" > "$o" 2>&1 &
  while kill -0 $! 2>/dev/null; do grep -q MEMHOG-READY "$o" && break; sleep 0.2; done
  cat "$o"; grep -q MEMHOG-READY "$o"
}
wait_ksm() {
  i=0
  while [ "$(cat /sys/kernel/mm/ksm/pages_sharing)" -lt "$1" ]; do
    i=$((i+1)); [ "$i" -gt $(( ${2:-120} * 2 )) ] && return 1
    sleep 0.5
  done
  echo "pages_sharing=$(cat /sys/kernel/mm/ksm/pages_sharing)"
}
capture() {
  d=$(disk capture) || { echo "no virtio disk with serial 'capture'"; return 1; }
  rm -rf /tmp/cap /tmp/cap.tar
  capture-tree /tmp/cap && (cd /tmp/cap && tar cf /tmp/cap.tar .) || return 1
  dd if=/tmp/cap.tar of="$d" bs=64k conv=fsync 2>/dev/null && sync || return 1
  echo "LAB-CAPTURE bytes=$(wc -c < /tmp/cap.tar) md5=$(md5sum < /tmp/cap.tar | cut -d' ' -f1)"
  rm -rf /tmp/cap /tmp/cap.tar
}

[ "$FILL" -gt 0 ] && fill "$FILL"
stty -echo 2>/dev/null || true   # no echo of commands into the log (before READY: clients may type then)
echo "LAB-READY balloon=$B swap=$(awk '/^SwapTotal/ {print $2}' /proc/meminfo) kernel=$(uname -r)"
if [ "$INTERVAL" -gt 0 ]; then
  ( while sleep "$INTERVAL"; do meminfo tick; done ) &
fi

while read -r line; do
  tag=-
  case "$line" in @*) tag=${line%% *}; tag=${tag#@}; line=${line#"@$tag"}; line=${line# } ;; esac
  set -f; set -- $line; set +f
  cmd=${1:-}; [ $# -gt 0 ] && shift
  [ -z "$cmd" ] && continue
  echo "LAB-GOT @$tag"
  sleep 0.2                      # let the client hang up before bulk output
  rc=0
  case "$cmd" in
    meminfo) meminfo "$tag" ;;
    fill) fill "$@" || rc=$? ;;
    drop) rm -f /fill/* ;;
    hog) hog "$@" || rc=1 ;;
    killhogs) killall memhog 2>/dev/null; sleep 0.5 ;;
    wait-ksm) wait_ksm "$@" || rc=1 ;;
    run) eval "${line#run }" || rc=$? ;;
    capture) capture || rc=1 ;;
    poweroff) echo "LAB-ACK @$tag rc=0"; sync; poweroff -f ;;
    *) echo "LAB-ERR @$tag unknown command: $cmd"; continue ;;
  esac
  echo "LAB-ACK @$tag rc=$rc"
done
# stdin closed: keep PID 1 alive
while :; do sleep 3600; done
