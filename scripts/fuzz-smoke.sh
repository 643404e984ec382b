#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for N seconds each (default 10), seeding each corpus
# with real inputs: kernel files (their first 16 KiB) from this machine's /proc and /sys and
# fixtures/*/; the libvirt RPC replies captured from libvirtd 9.0, domain XMLs and QMP
# conversations captured from QEMU 7.2 (crates/hv/tests/data, crates/qmpsim/tests/data);
# deploy/memwarden.toml; the API's query strings as the page and the README write them. Prints
# the executions per second. Exits non-zero on the first crash (libFuzzer leaves the input
# under fuzz/artifacts/<target>/). Needs the nightly toolchain, cargo-fuzz and python3:
#   cargo install cargo-fuzz
# scripts/test.sh runs it for 3 s a target; the sanitizer build alone takes ~130 s on 2 cores
# (85 s before the protocol, config, query and end-to-end targets).
#   usage: scripts/fuzz-smoke.sh [SECONDS] [TARGET...]
# Allocation cap: every run is started with -rss_limit_mb=512 -malloc_limit_mb=512, so an
# input that makes any target hold more than 512 MiB (in all, or in one malloc) is a crash.
# FUZZ_RUNS=N adds -runs=N (a campaign: FUZZ_RUNS=10000000 scripts/fuzz-smoke.sh 2700 T).
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

data=../crates/hv/tests/data
# libvirt_rpc: a byte naming the call waited for (the target's CALLS), then the reply as it
# comes off the socket: its length word, then the captured packet.
mkdir -p corpus/libvirt_rpc
rpc_seed() { # rpc_seed CALL-INDEX FILE
  local f=$data/libvirt-rpc/$2 len
  [ -r "$f" ] || return 0
  len=$(( $(stat -c %s "$f") + 4 ))
  { printf "\\x$(printf %02x "$1")"
    printf "\\x$(printf %02x $((len >> 24 & 255)))\\x$(printf %02x $((len >> 16 & 255)))"
    printf "\\x$(printf %02x $((len >> 8 & 255)))\\x$(printf %02x $((len & 255)))"
    cat "$f"; } > "corpus/libvirt_rpc/seed-${2%.bin}"
}
rpc_seed 0 auth_list.bin
rpc_seed 3 lookup_by_name.bin
rpc_seed 3 lookup_no_such_domain.bin
rpc_seed 4 list_all_domains.bin
rpc_seed 5 get_all_domain_stats.bin
rpc_seed 6 get_xml_desc.bin
rpc_seed 7 get_max_memory.bin
rpc_seed 8 get_state.bin
rpc_seed 9 memory_stats.bin
seed domain_xml "$data"/domain-xml/*.xml
seed config ../deploy/memwarden.toml
printf 'interval = "30s"\ndeadline = "500ms"\n[vms]\nsource = "qmp"\nqmp = ["/run/qemu/*.qmp"]\n[balloon]\nenabled = true\n' \
  > corpus/config/seed-qmp
# http_query: the query string, then NUL and an Accept-Encoding value.
mkdir -p corpus/http_query
printf 'since=6h&field=meminfo.Slab,vm.guest_used&vm=NAME' > corpus/http_query/seed-1
printf 'since=24h\0gzip' > corpus/http_query/seed-2
printf 'since=1h&vm=lab%%20vm&field=vm.balloon_actual,vm.guest_used,vm.guest_cache,vm.qemu_rss\0deflate, GZIP;q=0.5' \
  > corpus/http_query/seed-3
printf 'since=8d\0gzip;q=0' > corpus/http_query/seed-4
printf 'since=30d&field=host.lru.' > corpus/http_query/seed-5
mkdir -p corpus/qmp_replies corpus/e2e_qmp_plan corpus/e2e_host_tree
if command -v python3 >/dev/null; then
  python3 seeds/qmp_transcripts.py corpus/qmp_replies corpus/e2e_qmp_plan \
    ../crates/qmpsim/tests/data/qemu-7.2-*.jsonl
  python3 seeds/host_trees.py corpus/e2e_host_tree / "${fx[@]}"
else
  echo "no python3: the QMP and host-tree targets start from an empty corpus"
fi

cargo +nightly fuzz build >/dev/null 2>&1 || cargo +nightly fuzz build
printf '%-14s %12s %10s %8s\n' target runs execs/s seconds
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  # Inputs that once failed (fuzz/regressions/<target>/, kept in git) run every time.
  [ -d "regressions/$t" ] && cp regressions/"$t"/* "corpus/$t/"
  log=$(mktemp)
  # e2e_qmp_plan starts a thread per execution (QmpBackend::list's worker): LeakSanitizer
  # reports the 32 bytes glibc allocates for a thread's TLS destructor list
  # (__cxa_thread_atexit_impl) as a leak now and then; its memory is held by the two limits
  # instead. (The fake QEMU of both QMP targets is one thread for the whole run.)
  leaks=()
  case $t in e2e_qmp_plan) leaks=(-detect_leaks=0) ;; esac
  if ! cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -print_final_stats=1 \
      -rss_limit_mb=512 -malloc_limit_mb=512 ${FUZZ_RUNS:+-runs=$FUZZ_RUNS} "${leaks[@]}" \
      >"$log" 2>&1; then
    grep -m3 -A4 -E "panicked|ERROR: libFuzzer|ERROR: AddressSanitizer" "$log" || true
    grep -E "^stat::number_of_executed_units|^#[0-9]+" "$log" | tail -2 || true
    tail -40 "$log"
    echo "FAIL: $t crashed (input under fuzz/artifacts/$t/)"
    rm -f "$log"
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log")
  printf '%-14s %12s %10s %8s\n' "$t" "${runs:-?}" "${rate:-?}" "${took:-?}"
  rm -f "$log"
done
