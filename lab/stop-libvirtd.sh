#!/usr/bin/env bash
# Stop what start-libvirtd.sh started: destroy (and undefine) the lab's domains
# (names mwlab-*), then libvirtd and virtlogd, each by the PID in its pidfile.
set -euo pipefail
V="virsh -q -c qemu:///system"
if [ -S /run/libvirt/libvirt-sock ]; then
  for d in $($V list --all --name | grep '^mwlab-' || true); do
    $V destroy "$d" >/dev/null 2>&1 || true
    $V undefine "$d" >/dev/null 2>&1 || true
  done
fi
for f in /run/libvirtd.pid /run/virtlogd.pid; do
  if [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; then
    p=$(cat "$f"); kill "$p"
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    echo "stopped $(basename "$f" .pid) ($p)"
  fi
done
