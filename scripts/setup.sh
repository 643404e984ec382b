#!/usr/bin/env bash
# Install what memwarden needs on Debian 12 (idempotent; run as root).
#   run:    libvirt0 (the libvirt backend loads libvirt.so.0 for URIs other than the local
#           qemu:///system, which it reaches over libvirt's RPC socket; the build needs no
#           system library)
#   --test: also what the test suite runs against: QEMU, a minimal libvirtd (and libvirt-dev,
#           whose headers the tests check memwarden's copy of libvirt's constants against), smem,
#           busybox-static and cpio for the lab guests (see lab/README.md); promtool (prometheus)
#           and python3-prometheus-client's OpenMetrics parser check /metrics and deploy/prometheus;
#           a Prometheus server scrapes `memwarden serve` (also over TLS: openssl makes the test's
#           certificate, curl is the TLS client); chromium + chromium-driver load its page;
#           prometheus-node-exporter and prometheus-libvirt-exporter are the peers the scrape_cost
#           bench compares /metrics against; systemd's systemd-analyze verifies the unit;
#           openssh-server: a test reaches the lab's libvirtd over qemu+ssh:// on a loopback sshd
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(libvirt0)
if [ "${1:-}" = --test ]; then
  pkgs+=(busybox-static cpio smem time python3 gcc libc6-dev xz-utils zstd
         libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-dev qemu-system-x86 prometheus python3-prometheus-client
         chromium chromium-driver prometheus-node-exporter prometheus-libvirt-exporter systemd openssl curl openssh-server tmux)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit 2>/dev/null)" ] || apt-get update -q
  # Debian 12's qemu-system-x86 (7.2) Breaks the backported qemu-utils 10 some images carry:
  # take bookworm's qemu-utils alongside it.
  extra=()
  case " ${missing[*]} " in *" qemu-system-x86 "*) extra=(qemu-utils/bookworm) ;; esac
  apt-get install -y -q --no-install-recommends --allow-downgrades "${missing[@]}" "${extra[@]}" \
    || { apt-get update -q && apt-get install -y -q --no-install-recommends --allow-downgrades "${missing[@]}" "${extra[@]}"; }
fi
