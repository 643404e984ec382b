#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit + fixture + live + lab (real QEMU/libvirt) tests.
# Installs what it needs (scripts/setup.sh --test); run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --test
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# A short fuzz smoke run of every parser (scripts/fuzz-smoke.sh; longer runs by hand). Its
# sanitizer build (~130 s of both cores) needs only the CPU, and the lab tests below mostly wait
# on their guests: it starts now, in the background at the lowest CPU priority (a test that
# wants the CPU gets it), and the timed runs themselves come after the tests, with the CPU to
# themselves. (fuzz-smoke.sh builds again: nothing left to do then, or the build's errors.)
fuzz_build=
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
  (cd fuzz && exec nice -n 19 cargo +nightly fuzz build) >/dev/null 2>&1 &
  fuzz_build=$!
else
  echo "fuzz smoke skipped: no nightly toolchain (rustup toolchain install nightly)"
fi
# Unit, fixture, live and lab (real QEMU guests, real libvirtd) tests. nextest when present
# (one process per test, one closing summary), else cargo test.
# Three lab guests at once: a test with two guests beside one with one (.config/nextest.toml
# schedules them so; the guests mostly wait, and 2 cores carry three).
export MEMWARDEN_LAB_SLOTS=${MEMWARDEN_LAB_SLOTS:-3}
tests=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo test --workspace --locked --doc || tests=$?
  cargo nextest run --workspace --locked --no-fail-fast || tests=$?
else
  cargo test --workspace --locked || tests=$?
fi
# The real-ZFS guest tests need OpenZFS built with dkms (~5 min the first time: lab/README.md):
# #[ignore]d (skipped above), run here on request; fixtures/guest-6.1-zfs is checked either way.
if [ "${MEMWARDEN_LAB_ZFS:-}" = 1 ]; then
  cargo test -p memwarden-analysis --test zfs_arc_in_a_real_guest --locked -- --ignored \
    --test-threads=1 || tests=$?
else
  echo "zfs_arc_in_a_real_guest skipped: MEMWARDEN_LAB_ZFS=1 scripts/test.sh runs it"
fi
if [ -n "$fuzz_build" ]; then
  wait "$fuzz_build" || true
  ./scripts/fuzz-smoke.sh "${FUZZ_SECONDS:-3}"
fi
exit "$tests"
