#!/usr/bin/env bash
# Start virtlogd + libvirtd by hand (no systemd as PID 1 on the dev/CI machines),
# idempotently and safely when several callers run it at once (flock), so that
# `virsh -c qemu:///system` works as root. Prints "libvirtd PID virtlogd PID".
#
# usage: start-libvirtd.sh          (stop with stop-libvirtd.sh)
# libvirtd also listens for TLS on 127.0.0.1:16514 (lab/libvirt-tls-pki.sh: the lab's CA,
# server and client certificates under /var/lib/memwarden-lab/libvirt-pki).
# env:   QEMU_AS_ROOT=0   1 = write /etc/libvirt/qemu.conf with user/group "root"
#                         (only if that file does not exist yet)
#
# Installs the minimal packages (libvirt-daemon, -driver-qemu, -clients,
# qemu-system-x86), not libvirt-daemon-system (it drags in systemd, polkitd,
# iptables...). Does by hand what that package's postinst would have done:
#   * user libvirt-qemu (group kvm) and groups kvm, libvirt-qemu, libvirt:
#     libvirtd resolves its compiled-in default QEMU user before reading
#     qemu.conf, so without them the QEMU driver fails to load
#     ("Failed to parse user 'libvirt-qemu'");
#   * /var/log/libvirt (both daemons exit at once without it);
#   * /dev/kvm root:kvm 0660, as udev sets it: left root-only, libvirt judges its
#     QEMU capability cache stale on every lookup and each domain start re-probes
#     QEMU (~60 s per `virsh create` under TCG instead of ~0.5 s).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
mkdir -p /run/lock
# (the daemons must not inherit fd 9, or they would hold the lock forever)
mkdir -p /run/lock/memwarden-lab
exec 9>/run/lock/memwarden-lab/libvirtd.lock
flock -w 300 9 || { echo "start-libvirtd: lock busy for 300 s" >&2; exit 1; }

if ! command -v libvirtd >/dev/null || ! command -v virsh >/dev/null || ! command -v qemu-system-x86_64 >/dev/null; then
  apt-get install -y -q --no-install-recommends --allow-downgrades \
    libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients \
    qemu-system-x86 qemu-utils/bookworm >/dev/null
fi

getent group kvm >/dev/null || groupadd -r kvm
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
getent group libvirt >/dev/null || groupadd -r libvirt
getent passwd libvirt-qemu >/dev/null || useradd -r -g kvm -G libvirt-qemu \
  -d /var/lib/libvirt -s /usr/sbin/nologin -c "Libvirt Qemu" libvirt-qemu
mkdir -p /var/log/libvirt /var/lib/libvirt
if [ -c /dev/kvm ]; then chgrp kvm /dev/kvm && chmod 0660 /dev/kvm; fi
if [ "${QEMU_AS_ROOT:-0}" = 1 ] && [ ! -e /etc/libvirt/qemu.conf ]; then
  printf 'user = "root"\ngroup = "root"\n' > /etc/libvirt/qemu.conf
fi

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
# TLS on 127.0.0.1:16514 with the lab's own PKI, as a remote host has it (qemu+tls:// tests);
# machine-wide, as libvirtd is: every checkout's tests share it.
conf=$("$(dirname "$0")"/libvirt-tls-pki.sh /var/lib/memwarden-lab/libvirt-pki)
alive /run/virtlogd.pid || virtlogd -d 9>&-
alive /run/libvirtd.pid || libvirtd -d --listen -f "$conf" 9>&-    # log: /var/log/libvirt/libvirtd.log
for _ in $(seq 300); do [ -S /run/libvirt/libvirt-sock ] && break; sleep 0.1; done
[ -S /run/libvirt/libvirt-sock ] || { echo "start-libvirtd: no /run/libvirt/libvirt-sock after 30 s; see /var/log/libvirt/libvirtd.log" >&2; exit 1; }
# The first connection after an install probes QEMU (~10 s under TCG; cached in
# /var/cache/libvirt/qemu/capabilities afterwards).
timeout 120 virsh -c qemu:///system version >/dev/null
echo "libvirtd $(cat /run/libvirtd.pid) virtlogd $(cat /run/virtlogd.pid)"
