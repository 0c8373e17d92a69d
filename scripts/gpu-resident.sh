#!/usr/bin/env bash
# The launcher's bound on loaded modules on a GPU (docs/GPU.md), in one
# call, after scripts/gpu-prepare.sh built build-gpu/ here:
#   1. kcache_bench_launch --skip-cold (warm hits, steady-state launch vs raw
#      cuLaunchKernel), alternating KCACHE_MAX_MODULES=0 (no bound: launches
#      take no pin) and unset (the automatic bound: launches pin),
#      KC_RES_ROUNDS rounds (default 2);
#   2. kcache_bench_launcher --device cuda --skip compile (create, store hits
#      of 16,384 distinct kernels, each named apart unless --one-name, 1M
#      memo hits of one kernel) under each KCACHE_MAX_MODULES of
#      KC_RES_BOUNDS (default "0 default 256"), on one store populated by
#      the first run (KC_BENCH_POPULATE_PROCS processes, default 8 here:
#      about a minute on 16 cores); KC_RES_SKIP="create hot" skips those
#      parts;
#   3. (part modules) the raw driver: kcache_bench_modules loading 16,384
#      distinctly named variants of .carry/k8_sm90.cubin with at most K loaded
#      (KC_BENCH_MODULES_KEEP, each K of KC_RES_KEEPS, default "256 1024
#      4096"), the load and the cuModuleUnload timed.
#   KC_RES_RUNS="BOUND BENCH [FLAG...]; ..." replaces the bounds loop of
#      part 2 with the runs listed, in order: each with KCACHE_MAX_MODULES
#      =BOUND ("default": unset), the bench binary BENCH ("-": build-gpu's)
#      and the extra flags (e.g. --no-prefetch, --one-name).
#   KC_RES_ROOT: where part 2's stores go (default a new directory under
#      /tmp); the first run of each naming populates its store there.
#   KC_RES_MODES: part 3's kcache_bench_modules modes (default
#      distinct-names; `distinct` loads variants of one name).
# KC_RES_PARTS picks among launch, launcher, modules (default all three).
# Logs: $OUT/resident.log (everything, headed by the machine), and by part
# $OUT/resident-launch.log, $OUT/resident-launcher.log,
# $OUT/resident-modules.log.
set -uo pipefail
. "$(dirname "$0")/gpu-env.sh"
export KC_BENCH_POPULATE_PROCS="${KC_BENCH_POPULATE_PROCS:-8}"
kc_gpu_log resident.log # sets $out
status=0
B=build-gpu/tools

parts=",${KC_RES_PARTS:-launch,launcher,modules},"
if [[ $parts == *,launch,* ]]; then
echo "== kcache_bench_launch --skip-cold, no bound vs default bound" | tee "$out/resident-launch.log"
for round in $(seq "${KC_RES_ROUNDS:-2}"); do
  for bound in 0 default; do
    echo "-- round $round: KCACHE_MAX_MODULES=$bound" | tee -a "$out/resident-launch.log"
    set_bound=(KCACHE_MAX_MODULES="$bound")
    [ "$bound" = default ] && set_bound=(-u KCACHE_MAX_MODULES)
    env "${set_bound[@]}" KCACHE_DIR="$(mktemp -d)/kcache" timeout 120 \
      $B/kcache_bench_launch --skip-cold 2>&1 | tee -a "$out/resident-launch.log" || status=1
  done
done
fi

if [[ $parts == *,modules,* ]]; then
echo "== kcache_bench_modules, at most K loaded" | tee "$out/resident-modules.log"
for mode in ${KC_RES_MODES:-distinct-names}; do
for keep in ${KC_RES_KEEPS:-256 1024 4096}; do
  echo "-- $mode, at most $keep loaded" | tee -a "$out/resident-modules.log"
  KC_BENCH_MODULES_KEEP=$keep timeout 120 $B/kcache_bench_modules .carry/k8_sm90.cubin \
    k0000000 16384 "$mode" 2>&1 | tee -a "$out/resident-modules.log" || status=1
done
done
fi

[[ $parts == *,launcher,* ]] || exit $status
echo "== kcache_bench_launcher --device cuda --skip compile" | tee "$out/resident-launcher.log"
kbl="${KC_RES_ROOT:-$(mktemp -d)}/kbl"
skips=(--skip compile)
for part in ${KC_RES_SKIP:-}; do skips+=(--skip "$part"); done
runs="${KC_RES_RUNS:-}"
if [ -z "$runs" ]; then
  for bound in ${KC_RES_BOUNDS:-0 default 256}; do runs+="$bound -;"; done
fi
IFS=';' read -ra run_list <<< "$runs"
for run in "${run_list[@]}"; do
  read -ra words <<< "$run"
  [ ${#words[@]} -ge 2 ] || continue
  bound="${words[0]}" bench="${words[1]}" flags=("${words[@]:2}")
  [ "$bench" = - ] && bench=$B/kcache_bench_launcher
  echo "-- KCACHE_MAX_MODULES=$bound $bench ${flags[*]}" | tee -a "$out/resident-launcher.log"
  set_bound=(KCACHE_MAX_MODULES="$bound")
  [ "$bound" = default ] && set_bound=(-u KCACHE_MAX_MODULES)
  start=$(date +%s)
  env "${set_bound[@]}" timeout 500 "$bench" --device cuda -s "$kbl" \
    "${skips[@]}" "${flags[@]}" 2>&1 | tee -a "$out/resident-launcher.log" || status=1
  echo "-- took $(( $(date +%s) - start )) s" | tee -a "$out/resident-launcher.log"
done
exit $status
