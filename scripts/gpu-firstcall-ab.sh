#!/usr/bin/env bash
# Runs on the GPU machine (see docs/GPU.md), after scripts/gpu-prepare.sh:
# a fresh process's first call of a stored, imported Triton kernel, this
# build against a baseline build, alternating, on one store; the driver's
# floor under it; the CUDA device's open step by step
# (kcache_cuda_open_cost); kcache_bench_launch of both; and `ctest -L gpu`.
#   KC_BASELINE=DIR bash scripts/gpu-firstcall-ab.sh
# DIR holds the baseline's kc_run_spec and kcache_bench_launch (both link
# libkcache statically: copy them from another build-gpu/). Logs: $OUT.
set -u
base="${KC_BASELINE:?set KC_BASELINE to the directory of the baseline binaries}"
base="$(cd "$base" && pwd)"
. "$(dirname "$0")/gpu-env.sh"
kc_gpu_log firstcall-ab.log
B=build-gpu
T="$(mktemp -d)/trt"
python3 tests/gpu/triton_roundtrip.py build-gpu "$T" > "$out/triton-roundtrip.json" \
  2> "$out/triton-roundtrip.err" || echo "triton_roundtrip.py failed: $out/triton-roundtrip.err"
args="$T/store $T/spec.json scale_add in:$T/io/x.bin in:$T/io/y.bin out:/tmp/o.bin:4194304 i:1048576"
echo "== first call, this build (NEW) and the baseline (OLD), alternating, 12 each"
for i in $(seq 12); do
  echo "NEW $($B/tests/kc_run_spec $args | cut -c1-330)"
  echo "OLD $("$base/kc_run_spec" $args | cut -c1-330)"
done
echo "== the driver's floor: a fresh process's first load of scale_add's cubins"
for c in $(ls "$T"/tcache/*/scale_add.cubin 2>/dev/null | head -2); do
  for i in 1 2 3; do $B/tools/kcache_bench_modules "$c" scale_add 1 load-only | grep first; done
done
echo "== opening the CUDA device, step by step (the driver's part of the create)"
$B/tools/kcache_cuda_open_cost 9 | tail -2
echo "== kcache_bench_launch, this build"
timeout 240 $B/tools/kcache_bench_launch 2>&1 | tail -40
echo "== kcache_bench_launch --skip-cold, the baseline"
timeout 120 "$base/kcache_bench_launch" --skip-cold 2>&1 | tail -25
echo "== ctest -L gpu"
ctest --test-dir build-gpu -L gpu --output-on-failure 2>&1 | grep -E "tests passed|Failed|Not Run|\*\*\*"
