#!/usr/bin/env bash
# Runs on the GPU machine, from the repository root of the carried working
# tree, after scripts/gpu-prepare.sh built build-gpu/ here. Writes every log
# under $OUT (or ./gpu-out). Usage, through the device tool:
#   bash scripts/gpu-run.sh            # everything below
#   KC_GPU_PARTS=triton,core bash scripts/gpu-run.sh   # some parts
# Parts: triton (imported Triton binaries, first call vs Triton, footprint),
# python (the Triton cache manager under torch.compile), core (gpu tests,
# demo, cubin tools, kcache_bench_launch, and the baseline comparison when
# KC_BASELINE is set), launcher (kcache_bench_launcher: create, 16,384
# distinct kernels, memo hits, parallel compile), store
# (kcache_bench_store at 1k, 100k and 1M records).
set -uo pipefail
out="${OUT:-$PWD/gpu-out}"
mkdir -p "$out"
. "$(dirname "$0")/gpu-env.sh"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  nproc
} > "$out/machine.txt" 2>&1

status=0
parts=",${KC_GPU_PARTS:-triton,python,core,launcher,store},"
want() { case "$parts" in *",$1,"*|*",all,"*) return 0 ;; esac; return 1; }
# Imported Triton binaries (and Inductor's) launched through kcache, compared
# with Triton's own launches; first call vs Triton's warm start.
if want triton && python3 -c "import torch, triton" 2>/dev/null; then
  echo "== Triton round trip ==" | tee "$out/triton-roundtrip.log"
  python3 tests/gpu/triton_roundtrip.py build-gpu "$out/triton" \
    > "$out/triton-roundtrip.json" 2>> "$out/triton-roundtrip.log" || status=1
  cat "$out/triton-roundtrip.json" | tee -a "$out/triton-roundtrip.log"
  # The driver's own floor under the first call: a fresh process's first
  # cuModuleLoadData + cuModuleGetFunction of the kernel's cubins, nothing else.
  echo "== the driver's floor: a fresh process's first load of scale_add's cubins ==" |
    tee -a "$out/triton-roundtrip.log"
  for c in $(ls "$out"/triton/tcache/*/scale_add.cubin 2>/dev/null | head -3); do
    for i in 1 2 3; do
      build-gpu/tools/kcache_bench_modules "$c" scale_add 1 load-only | grep -E "cubin|first"
    done
  done 2>&1 | tee -a "$out/triton-roundtrip.log"
else
  echo "SKIP: no torch/triton here: Triton round trip not run" | tee "$out/triton-roundtrip.log"
fi
# kcache as Triton's cache manager under torch.compile (the Python package
# from python/, with the library built in build-gpu/).
if want python && python3 -c "import torch, triton" 2>/dev/null; then
  echo "== torch.compile with kcache's Triton cache manager ==" | tee "$out/torch-cache-manager.log"
  PYTHONPATH="$src/python" KCACHE_LIBRARY="$src/build-gpu/libkcache.so.0" \
    python3 tests/gpu/torch_cache_manager.py build-gpu "$out/tcm" \
    > "$out/torch-cache-manager.json" 2>> "$out/torch-cache-manager.log" || status=1
  cat "$out/torch-cache-manager.json" | tee -a "$out/torch-cache-manager.log"
fi
if want core; then
echo "== ctest -L gpu ==" | tee "$out/gpu-tests.log"
ctest --test-dir build-gpu -L gpu --output-on-failure 2>&1 | tee -a "$out/gpu-tests.log" || status=1

echo "== demo: cold run (fresh store) ==" | tee "$out/demo.log"
build-gpu/tools/kcache_demo --check 2>&1 | tee -a "$out/demo.log" || status=1
echo "== demo: warm run (new process, same store) ==" | tee -a "$out/demo.log"
build-gpu/tools/kcache_demo --check --expect-warm 2>&1 | tee -a "$out/demo.log" || status=1
build-gpu/tools/cachectl stats 2>&1 | tee -a "$out/demo.log"

# A cubin fetched with `cachectl get` must be readable by CUDA's own tools.
echo "== cachectl get | cuobjdump / nvdisasm ==" | tee "$out/cubin-tools.log"
key="$(build-gpu/tools/cachectl ls --kind tuning | awk 'NR == 2 {print $2}')"
if build-gpu/tools/cachectl get "$key" -o "$out/winner.cubin" 2>&1 | tee -a "$out/cubin-tools.log" &&
   cuobjdump -elf "$out/winner.cubin" > "$out/cuobjdump.txt" 2>&1 &&
   nvdisasm "$out/winner.cubin" > "$out/nvdisasm.txt" 2>&1; then
  echo "cuobjdump and nvdisasm read the cubin of tuning $key:" \
       "$(wc -l < "$out/cuobjdump.txt") and $(wc -l < "$out/nvdisasm.txt") lines" | tee -a "$out/cubin-tools.log"
  head -5 "$out/nvdisasm.txt" | tee -a "$out/cubin-tools.log"
else
  echo "FAIL: cuobjdump/nvdisasm could not read the cubin of $key" | tee -a "$out/cubin-tools.log"
  status=1
fi
rm -f "$out/cuobjdump.txt"

if [ -x build-gpu/tools/kcache_bench_launch ]; then
  echo "== benchmarks ==" | tee "$out/bench.log"
  build-gpu/tools/kcache_bench_launch 2>&1 | tee -a "$out/bench.log" || status=1
fi

# Regression check against an earlier build: KC_BASELINE names a folder with
# that commit's kcache_bench_launch (built by scripts/gpu-prepare.sh there and
# copied, e.g. into .carry/base/). Both run in turn, KC_BASELINE_ROUNDS times,
# on this machine in this call, so their numbers are side by side.
if [ -n "${KC_BASELINE:-}" ] && [ -x "$KC_BASELINE/kcache_bench_launch" ]; then
  echo "== benchmarks: baseline $KC_BASELINE vs this build ==" | tee "$out/bench-compare.log"
  for round in $(seq "${KC_BASELINE_ROUNDS:-2}"); do
    for side in baseline current; do
      bin=build-gpu/tools/kcache_bench_launch
      [ "$side" = baseline ] && bin="$KC_BASELINE/kcache_bench_launch"
      echo "-- round $round: $side" | tee -a "$out/bench-compare.log"
      KCACHE_DIR="$(mktemp -d)/kcache" "$bin" --skip-cold 2>&1 | tee -a "$out/bench-compare.log" || status=1
    done
  done
fi
fi

# The launcher at scale (docs/GPU.md): parallel compile on this machine's
# cores (no GPU needed), then create/distinct/hot on the GPU, with and
# without the prefetch. The store of 16,384 kernels is made on the first run.
if want launcher && [ -x build-gpu/tools/kcache_bench_launcher ]; then
  echo "== kcache_bench_launcher ==" | tee "$out/bench-launcher.log"
  kbl="$(mktemp -d)/kbl"
  build-gpu/tools/kcache_bench_launcher -s "$kbl" --compile-only --max-cands 6 2>&1 |
    tee -a "$out/bench-launcher.log" || status=1
  for flags in "" "--no-prefetch"; do
    echo "-- --device cuda $flags" | tee -a "$out/bench-launcher.log"
    build-gpu/tools/kcache_bench_launcher --device cuda -s "$kbl" --skip compile $flags 2>&1 |
      tee -a "$out/bench-launcher.log" || status=1
  done
fi

# The store at 1k, 100k and 1M records (BENCHMARKS.md).
if want store && [ -x build-gpu/tools/kcache_bench_store ]; then
  echo "== kcache_bench_store ==" | tee "$out/bench-store.log"
  cubins=()
  [ -d .carry/cubins ] && cubins=(--cubins .carry/cubins) # real NVRTC cubins
  build-gpu/tools/kcache_bench_store --sizes "${KC_STORE_SIZES:-1000,100000,1000000}" \
    "${cubins[@]}" --dir "$(mktemp -d)" --cachectl build-gpu/tools/cachectl 2>&1 |
    tee -a "$out/bench-store.log" || status=1
fi
exit $status
