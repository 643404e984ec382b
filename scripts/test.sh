#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit + fixture + live + lab (real QEMU/libvirt) tests.
# Installs what it needs (scripts/setup.sh --test); run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --test
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# A short fuzz smoke run of every parser (scripts/fuzz-smoke.sh; longer runs by hand).
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
  ./scripts/fuzz-smoke.sh "${FUZZ_SECONDS:-3}"
else
  echo "fuzz smoke skipped: no nightly toolchain (rustup toolchain install nightly)"
fi
# Unit, fixture, live and lab (real QEMU guests, real libvirtd) tests. nextest when present
# (one process per test, one closing summary), else cargo test.
# Three lab guests at once: a test with two guests beside one with one (.config/nextest.toml
# schedules them so; the guests mostly wait, and 2 cores carry three).
export MEMWARDEN_LAB_SLOTS=${MEMWARDEN_LAB_SLOTS:-3}
if cargo nextest --version >/dev/null 2>&1; then
  cargo test --workspace --locked --doc
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked
fi
