#!/usr/bin/env bash
# Runs on the GPU machine (see docs/GPU.md), after scripts/gpu-prepare.sh:
# whole Triton cubins against the same cubins imported with
# `import-triton --strip-debug` (BENCHMARKS.md, "Issue 13, ninth pass").
#   1. tests/gpu/triton_roundtrip.py: Triton's cache imported both ways,
#      every output checked against Triton's, the footprints;
#   2. a fresh process's first call (kc_run_spec, scale_add from its stored
#      tuning), whole and stripped alternating, KC_AB_ROUNDS each (12);
#   3. the driver's own first load (kcache_bench_modules CUBIN scale_add 1
#      load-only) of each scale_add cubin, whole and stripped as fetched
#      from the two stores with `cachectl get`, alternating, 5 each;
#   4. with KC_AB_CPU_SCAN=1: the first call pinned to each CPU in turn
#      (taskset), three rounds, to show whether the spread between
#      processes follows the CPU a process runs on.
# KC_AB_CPU=N pins parts 2 and 3 to CPU N. Logs: $OUT/strip-ab.log.
set -u
. "$(dirname "$0")/gpu-env.sh"
kc_gpu_log strip-ab.log # sets $out
B=build-gpu
T="$(mktemp -d)/trt"
rounds="${KC_AB_ROUNDS:-12}"
pin=()
[ -n "${KC_AB_CPU:-}" ] && pin=(taskset -c "$KC_AB_CPU")
python3 tests/gpu/triton_roundtrip.py $B "$T" > "$out/triton-roundtrip.json" \
  2> "$out/triton-roundtrip.err" || echo "triton_roundtrip.py failed: $out/triton-roundtrip.err"
python3 - "$out/triton-roundtrip.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
fc = d.get("first_call_us", {})
print("failures", d.get("failures"))
print("strip_debug", d.get("strip_debug"))
print("footprint", d.get("footprint"))
for k in ("kcache", "kcache_stripped", "triton_warm_cache_results", "triton_warm_default"):
    print("round trip first call", k, fc.get(k))
for k in ("scale_add_second", "stripped_scale_add_second", "matmul", "stripped_matmul"):
    v = d.get(k, {})
    print(k, {x: v.get(x) for x in ("identical_to_triton", "tunes", "store_hits")})
print("inductor", d.get("inductor"))
PY
io="in:$T/io/x.bin in:$T/io/y.bin out:/tmp/o.bin:4194304 i:1048576"
first() { "${pin[@]}" $B/tests/kc_run_spec "$1" "$2" scale_add $io; }
echo "== first call, whole (W) and stripped (S) alternating, $rounds each ${pin[*]}"
for _ in $(seq "$rounds"); do
  echo "W $(first $T/store $T/spec.json)"
  echo "S $(first $T/store-stripped $T/spec-stripped.json)"
done | tee "$T/ab.txt"
python3 - "$T/ab.txt" <<'PY'
import json, statistics, sys
rows = {"W": [], "S": []}
for line in open(sys.argv[1]):
    side, _, js = line.partition(" ")
    try:
        rows[side].append(json.loads(js))
    except ValueError:
        pass
for side, name in (("W", "whole"), ("S", "stripped")):
    r = rows[side]
    if not r:
        continue
    first = sorted(x["first_call_us"] for x in r)
    parts = {k: statistics.median(x[k] for x in r)
             for k in ("create_us", "open_us", "load_us", "launch_us", "sync_us")}
    print("%s: first call median %.1f us, sorted %s; parts (medians) %s"
          % (name, statistics.median(first), [round(v) for v in first], parts))
PY
echo "== the driver's first load, whole then stripped, alternating ${pin[*]}"
python3 - "$T" > "$T/pairs.txt" <<'PY'
import json, sys
T = sys.argv[1]
w = json.load(open(T + "/spec.json"))["kernels"][0]["candidates"]
s = json.load(open(T + "/spec-stripped.json"))["kernels"][0]["candidates"]
for a, b in zip(w, s):
    print(a["build"], b["build"])
PY
while read -r wb sb; do
  $B/tools/cachectl -s "$T/store" get "$wb" -o "$T/w.cubin" > /dev/null &&
    $B/tools/cachectl -s "$T/store-stripped" get "$sb" -o "$T/s.cubin" > /dev/null || continue
  for _ in 1 2 3 4 5; do
    for f in w s; do
      echo "$f $(stat -c %s "$T/$f.cubin") $("${pin[@]}" $B/tools/kcache_bench_modules "$T/$f.cubin" \
        scale_add 1 load-only | grep -o 'load-only) [0-9.]*' | cut -d' ' -f2)"
    done
  done
done < "$T/pairs.txt" | tee "$T/loads.txt"
python3 - "$T/loads.txt" <<'PY'
import collections, statistics, sys
t = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f, size, us = line.split()
    t[(f, int(size))].append(float(us))
for (f, size), v in sorted(t.items(), key=lambda kv: (-kv[0][1], kv[0][0])):
    print("%s %6d bytes: median %.1f us of %s" % ("whole" if f == "w" else "stripped", size,
                                                 statistics.median(v), sorted(v)))
PY
if [ "${KC_AB_CPU_SCAN:-0}" = 1 ]; then
  echo "== first call (whole) pinned to each CPU, three rounds"
  for _ in 1 2 3; do
    for c in $(seq 0 $(($(nproc) - 1))); do
      echo "$c $(taskset -c "$c" $B/tests/kc_run_spec $T/store $T/spec.json scale_add $io)"
    done
  done > "$T/scan.txt"
  python3 - "$T/scan.txt" <<'PY'
import collections, json, statistics, sys
t = collections.defaultdict(list)
for line in open(sys.argv[1]):
    c, _, js = line.partition(" ")
    try:
        t[int(c)].append(json.loads(js)["first_call_us"])
    except ValueError:
        pass
for c in sorted(t):
    print("cpu %2d: %s" % (c, " ".join("%.0f" % v for v in t[c])))
med = {c: statistics.median(v) for c, v in t.items()}
print("per-CPU medians: min %.0f, median %.0f, max %.0f us"
      % (min(med.values()), statistics.median(med.values()), max(med.values())))
PY
fi
