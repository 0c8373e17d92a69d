#!/usr/bin/env bash
# Runs on the GPU machine (see docs/GPU.md), after scripts/gpu-prepare.sh:
# what scales with that host and cannot be measured on a 2-core machine.
#   1. the driver's cost of 16,384 module loads into one context, the
#      kernels alike but for a constant, and alike but for their names
#      (kcache_bench_modules; needs .carry/k8_sm90.cubin, see docs/GPU.md);
#   2. parallel compile of 1..6 candidates (medians of KC_COMPILE_ROUNDS
#      rounds, default 3): sequential, threads, the
#      launcher's pool, forked processes (kcache_bench_launcher
#      --compile-only): where threads slow each other and processes do not,
#      the cause is inside the process;
#   3. an exclusive writer among 1..16 reading threads (kcache_bench_busy);
#   4. the host's own scaling, without kcache or NVRTC: one CPU-bound job
#      (sha256sum of 512 MiB of zeros) alone, then N copies at once; where
#      each copy slows as N grows, the cores are not independent.
# KC_SCALING_PARTS picks parts (default "modules compile busy cores").
# Logs: $OUT/scaling.log. About 4 minutes.
set -u
. "$(dirname "$0")/gpu-env.sh"
kc_gpu_log scaling.log
B=build-gpu
lscpu | grep -E '^(Model name|Thread\(s\) per core|Core\(s\) per socket|Socket\(s\))' || true
parts="${KC_SCALING_PARTS:-modules compile busy cores}"
want() { case " $parts " in *" $1 "*) return 0 ;; esac; return 1; }
cubin=.carry/k8_sm90.cubin
if ! want modules; then
  :
elif [ -f "$cubin" ]; then
  for mode in distinct distinct-names; do
    echo "== kcache_bench_modules $cubin k0000000 16384 $mode"
    timeout 150 $B/tools/kcache_bench_modules "$cubin" k0000000 16384 "$mode" 2>&1 | tail -25
  done
else
  echo "== no $cubin: module loads skipped (docs/GPU.md says how to make it)"
fi
if want compile; then
  echo "== kcache_bench_launcher --compile-only --max-cands 6 --rounds ${KC_COMPILE_ROUNDS:-3}"
  timeout 400 $B/tools/kcache_bench_launcher -s "$(mktemp -d)" --compile-only --max-cands 6 \
    --rounds "${KC_COMPILE_ROUNDS:-3}" 2>&1 |
    tail -25
fi
if want busy; then
  echo "== kcache_bench_busy --threads 1,3,8,16"
  d="$(mktemp -d)/busy"
  timeout 120 $B/tools/kcache_bench_busy -s "$d" --threads 1,3,8,16 --limit 30 2>&1 | tail -25
fi
if want cores; then
  echo "== the host alone: sha256sum of 512 MiB of zeros, N at once (seconds each)"
  job() { head -c 536870912 /dev/zero | sha256sum >/dev/null; }
  for n in 1 2 4 6 8 16; do
    t0=$EPOCHREALTIME
    pids=""
    for i in $(seq "$n"); do (s=$EPOCHREALTIME; job; awk -v s="$s" -v e="$EPOCHREALTIME" \
      'BEGIN { printf "%.2f\n", e - s }') > "/tmp/core.$i" & pids="$pids $!"; done
    wait $pids # not a bare wait: that waits for the tee above too
    wall=$(awk -v s="$t0" -v e="$EPOCHREALTIME" 'BEGIN { printf "%.2f", e - s }')
    echo "N=$n wall $wall s, each: $(cat /tmp/core.* | tr '\n' ' ')"
    rm -f /tmp/core.*
  done
fi
