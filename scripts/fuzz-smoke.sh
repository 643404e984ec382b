#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for N seconds each (default 10), seeding each corpus
# with real kernel files (their first 16 KiB) (this machine's /proc and /sys, and fixtures/*/), and prints the
# executions per second. Exits non-zero on the first crash (libFuzzer leaves the input under
# fuzz/artifacts/<target>/). Needs the nightly toolchain and cargo-fuzz:
#   cargo install cargo-fuzz
# scripts/test.sh runs it for 3 s a target; the sanitizer build alone takes ~90 s on 2 cores.
#   usage: scripts/fuzz-smoke.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-10}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)

seed() { # seed TARGET FILE... : copy the readable, non-empty ones into the corpus
  local dir=corpus/$1; shift
  mkdir -p "$dir"
  local i=0 f
  for f in "$@"; do
    [ -r "$f" ] || continue
    i=$((i + 1))
    # The first 16 KiB: whole files (vmallocinfo, smaps) make every execution slow.
    head -c 16384 "$f" > "$dir/seed-$i" 2>/dev/null || true
    [ -s "$dir/seed-$i" ] || rm -f "$dir/seed-$i"
  done
}
fx=(../fixtures/*)
seed meminfo /proc/meminfo "${fx[@]/%//proc/meminfo}"
seed node_meminfo /sys/devices/system/node/node*/meminfo
seed vmstat /proc/vmstat "${fx[@]/%//proc/vmstat}"
seed psi /proc/pressure/memory /proc/pressure/cpu /proc/pressure/io
seed vmallocinfo /proc/vmallocinfo "${fx[@]/%//proc/vmallocinfo}"
seed modules /proc/modules "${fx[@]/%//proc/modules}"
seed smaps_rollup /proc/self/smaps_rollup /proc/1/smaps_rollup /proc/self/smaps
seed status /proc/self/status /proc/2/status
seed ksm_stat /proc/self/ksm_stat /proc/self/ksm_merging_pages
mkdir -p corpus/sysfs
printf 'hugepages-2048kB\n0\n' > corpus/sysfs/seed-1
printf 'hugepages-1048576kB\nalways [madvise] never\n' > corpus/sysfs/seed-2

cargo +nightly fuzz build >/dev/null 2>&1 || cargo +nightly fuzz build
printf '%-14s %12s %10s\n' target runs execs/s
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log=$(mktemp)
  if ! cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -print_final_stats=1 \
      >"$log" 2>&1; then
    tail -40 "$log"
    echo "FAIL: $t crashed (input under fuzz/artifacts/$t/)"
    rm -f "$log"
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  printf '%-14s %12s %10s\n' "$t" "${runs:-?}" "${rate:-?}"
  rm -f "$log"
done
