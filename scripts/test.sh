#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit + fixture + live + lab (real QEMU/libvirt) tests.
# Installs what it needs (scripts/setup.sh --test); run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --test
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
