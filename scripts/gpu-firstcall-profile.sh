#!/usr/bin/env bash
# Runs on the GPU machine (see docs/GPU.md), after scripts/gpu-prepare.sh:
# where a fresh process's first call spends its time there, and the
# driver's module-load growth under other APIs.
#   1. tests/gpu/triton_roundtrip.py makes a store of imported Triton kernels;
#   2. kc_run_spec's page faults per part of the first call (3 processes);
#   3. where perf exists: samples of 40 first calls on CLOCK_MONOTONIC
#      ($OUT/perf-script.txt.gz; each process's t0 and parts in
#      $OUT/runs.jsonl place them in its parts); else strace of one;
#   4. kcache_bench_first (the simulation device: kcache's CPU side alone);
#   5. kcache_bench_modules 16,384 distinctly named kernels, through the
#      module API with CUDA_MODULE_LOADING=EAGER and through the library API.
# Logs: $OUT/profile.log, $OUT/perf-script.txt.gz. About 4 minutes.
set -u
. "$(dirname "$0")/gpu-env.sh"
kc_gpu_log profile.log
B=build-gpu
for t in perf strace ltrace gdb; do echo "$t: $(command -v $t || echo none)"; done
T="$(mktemp -d)/trt"
python3 tests/gpu/triton_roundtrip.py build-gpu "$T" > "$out/triton-roundtrip.json" \
  2> "$out/triton-roundtrip.err" || echo "triton_roundtrip.py failed"
args="$T/store $T/spec.json scale_add in:$T/io/x.bin in:$T/io/y.bin out:/tmp/o.bin:4194304 i:1048576"
echo "== page faults per part, 3 processes"
for i in 1 2 3; do KC_RUN_SPEC_FAULTS=1 $B/tests/kc_run_spec $args | cut -c1-200; done
if command -v perf >/dev/null; then
  echo "== perf record (no call graphs, CLOCK_MONOTONIC) of 40 first calls"
  perf record -q -F 49999 -k CLOCK_MONOTONIC -o /tmp/p.data -- \
    bash -c "for i in \$(seq 40); do $B/tests/kc_run_spec $args >> $out/runs.jsonl; done" 2>&1 | tail -3
  perf script -i /tmp/p.data --comm kc_run_spec -F time,ip,sym,dso 2>/dev/null |
    gzip > "$out/perf-script.txt.gz"
  ls -la "$out/perf-script.txt.gz"
elif command -v strace >/dev/null; then
  echo "== strace of one first call"
  strace -r -T -o "$out/strace.txt" $B/tests/kc_run_spec $args | cut -c1-200
fi
echo "== kcache_bench_first (simulation device)"
F="$(mktemp -d)/bf"
$B/tools/kcache_bench_first --populate "$F" > /dev/null && $B/tools/kcache_bench_first "$F" --runs 12 --dirty-heap | tail -2
cubin=.carry/k8_sm90.cubin
echo "== kcache_bench_modules distinct-names, CUDA_MODULE_LOADING=EAGER"
CUDA_MODULE_LOADING=EAGER timeout 100 $B/tools/kcache_bench_modules "$cubin" k0000000 16384 distinct-names | tail -4
echo "== kcache_bench_modules distinct-names, library API"
KC_BENCH_MODULES_API=library timeout 100 $B/tools/kcache_bench_modules "$cubin" k0000000 16384 distinct-names | tail -4
