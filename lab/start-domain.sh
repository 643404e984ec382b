#!/usr/bin/env bash
# Start one lab guest as the libvirt domain "mwlab-NAME": direct kernel boot,
# serial console on a unix socket + log file (as boot-qemu.sh), a virtio
# memballoon with stats (or none). Prints the QEMU PID.
#
# usage: start-domain.sh NAME RUNDIR GUESTDIR   (libvirtd running: start-libvirtd.sh;
#                                                 GUESTDIR: output of build-guest.sh)
# env:   MEM_MIB=512  VCPUS=1  TYPE=auto|qemu|kvm  EXTRA_APPEND=""
#        STATS_PERIOD=2    <memballoon><stats period='N'/>; 0 = no polling (the
#                          stats then stay as the guest pushed them at driver load)
#        BALLOON=virtio    or none: <memballoon model='none'/> (no balloon at all)
#        BALLOON_ATTRS=""  extra <memballoon> attributes, e.g. freePageReporting='on'
#                          autodeflate='on' (deflate-on-oom)
#        DEVICES=""        extra XML inside <devices>, e.g. <panic model='isa'/> (pvpanic)
#        ON_CRASH=destroy  <on_crash>: what libvirt does when the guest says it panicked
#                          (destroy, restart, preserve: keep it as "crashed")
#        PERSIST=0         1 = virsh define + start (persistent: --config works;
#                          remove with virsh undefine); 0 = virsh create (transient)
#        WAIT=1 WAIT_S=120 wait until the guest prints LAB-READY in RUNDIR/serial.log
# RUNDIR gets domain.xml, serial.sock, serial.log (virtlogd writes it, root 0600).
# Stop: virsh -c qemu:///system destroy mwlab-NAME [; virsh undefine mwlab-NAME]
set -euo pipefail
NAME=mwlab-${1:?usage: start-domain.sh NAME RUNDIR GUESTDIR}
RUN=${2:?usage: start-domain.sh NAME RUNDIR GUESTDIR}
G=${3:?usage: start-domain.sh NAME RUNDIR GUESTDIR}
MEM_MIB=${MEM_MIB:-512}; VCPUS=${VCPUS:-1}; TYPE=${TYPE:-auto}
STATS_PERIOD=${STATS_PERIOD:-2}; BALLOON=${BALLOON:-virtio}; PERSIST=${PERSIST:-0}
WAIT=${WAIT:-1}; WAIT_S=${WAIT_S:-120}
V="virsh -q -c qemu:///system"

[ -f "$G/vmlinuz" ] && [ -f "$G/initramfs.cpio.gz" ] || { echo "start-domain: no guest in $G (run build-guest.sh)" >&2; exit 1; }
G=$(cd "$G" && pwd)
# type='kvm' only with real hardware virtualization (see boot-qemu.sh); 'qemu' = TCG.
if [ "$TYPE" = auto ]; then
  if [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then TYPE=kvm; else TYPE=qemu; fi
fi
case $BALLOON in
  virtio) balloon="<memballoon model='virtio' ${BALLOON_ATTRS:-}><stats period='$STATS_PERIOD'/></memballoon>" ;;
  none) balloon="<memballoon model='none'/>" ;;
  *) echo "start-domain: BALLOON must be virtio or none" >&2; exit 2 ;;
esac
mkdir -p "$RUN" && RUN=$(cd "$RUN" && pwd)
chmod 0755 "$RUN"          # QEMU runs as libvirt-qemu: it must get in
rm -f "$RUN/serial.sock" "$RUN/serial.log"

cat > "$RUN/domain.xml" <<XML
<domain type='$TYPE'>
  <name>$NAME</name>
  <memory unit='MiB'>$MEM_MIB</memory>
  <currentMemory unit='MiB'>$MEM_MIB</currentMemory>
  <vcpu>$VCPUS</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>$G/vmlinuz</kernel>
    <initrd>$G/initramfs.cpio.gz</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet ${EXTRA_APPEND:-}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_crash>${ON_CRASH:-destroy}</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='unix'>
      <source mode='bind' path='$RUN/serial.sock'/>
      <log file='$RUN/serial.log' append='off'/>
      <target port='0'/>
    </serial>
    $balloon
    ${DEVICES:-}
  </devices>
</domain>
XML

if [ "$PERSIST" = 1 ]; then
  $V define "$RUN/domain.xml" >/dev/null && $V start "$NAME" >/dev/null
else
  $V create "$RUN/domain.xml" >/dev/null
fi
pid=$(cat "/run/libvirt/qemu/$NAME.pid")
if [ "$WAIT" = 1 ]; then
  end=$(( $(date +%s) + WAIT_S ))
  until grep -q LAB-READY "$RUN/serial.log" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { echo "start-domain: $NAME died; see /var/log/libvirt/qemu/$NAME.log" >&2; exit 1; }
    [ "$(date +%s)" -lt "$end" ] || { echo "start-domain: $NAME: no LAB-READY after ${WAIT_S}s; serial log tail:" >&2; tail -5 "$RUN/serial.log" >&2; exit 1; }
    sleep 0.2
  done
fi
echo "$pid"
