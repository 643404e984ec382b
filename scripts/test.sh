#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit + fixture + live + lab (real QEMU/libvirt) tests.
# Installs what it needs (scripts/setup.sh --test); run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --test
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# A short fuzz smoke run of every parser (scripts/fuzz-smoke.sh; longer runs by hand).
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
  ./scripts/fuzz-smoke.sh "${FUZZ_SECONDS:-3}"
else
  echo "fuzz smoke skipped: no nightly toolchain (rustup toolchain install nightly)"
fi
