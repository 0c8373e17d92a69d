#!/usr/bin/env bash
# cachectl populate on a real store, with NVRTC and no GPU: a manifest of
# two kernels populated for sm_80 and sm_90 leaves a build of every config
# for each arch and no tuning; a second run compiles nothing; a config that
# fails to compile is reported without failing the run, a kernel with none
# that compiles fails it; a bad manifest names the file and the field; a bad
# --arch is a usage error.
set -euo pipefail

source "$(dirname "$0")/lib.sh"
cli_init populate
S=$WORK/store

cat >"$WORK/manifest.json" <<'EOF'
{
  "version": 1,
  "kernels": [
    {
      "name": "pop.scale",
      "source": "extern \"C\" __global__ void scale(float *x, float s, int n)\n{\n    int i = blockIdx.x * BLOCK + threadIdx.x;\n    if (i < n)\n        x[i] *= s;\n}\n",
      "entry": "scale",
      "params": {"BLOCK": [128, 256, 512]},
      "args": [
        {"name": "x", "type": "f32*", "access": "inout"},
        {"name": "s", "type": "f32"},
        {"name": "n", "type": "i32"}
      ],
      "grid": ["cdiv(n, BLOCK)"],
      "block": ["BLOCK"]
    },
    {
      "name": "pop.add",
      "source": "extern \"C\" __global__ void add(const float *a, float *b, int n)\n{\n    int i = (blockIdx.x * BLOCK + threadIdx.x) * UNROLL;\n    for (int u = 0; u < UNROLL; u++)\n        if (i + u < n)\n            b[i + u] += a[i + u];\n}\n",
      "entry": "add",
      "params": {"BLOCK": [128, 256], "UNROLL": [1, 4]},
      "args": [
        {"name": "a", "type": "f32*", "access": "in"},
        {"name": "b", "type": "f32*", "access": "inout"},
        {"name": "n", "type": "i32"}
      ],
      "grid": ["cdiv(n, BLOCK * UNROLL)"],
      "block": ["BLOCK"]
    }
  ]
}
EOF
EXPECTED='{("scale", (("BLOCK", 128),)), ("scale", (("BLOCK", 256),)), ("scale", (("BLOCK", 512),)), ("add", (("BLOCK", 128), ("UNROLL", 1))), ("add", (("BLOCK", 128), ("UNROLL", 4))), ("add", (("BLOCK", 256), ("UNROLL", 1))), ("add", (("BLOCK", 256), ("UNROLL", 4)))}'
BUILDS='{(r["name"], tuple(sorted(r["params"].items()))) for r in d["records"]}'

cc -s "$S" populate --manifest "$WORK/manifest.json" --arch sm_80,sm_90 -j 2
check "populate for two archs succeeds" test "$rc" -eq 0
check "the summary counts every config as compiled for each arch" \
    eval 'grep -q "^sm_80: 2 kernels: 7 compiled, 0 reused, 0 failed" "$OUT" && grep -q "^sm_90: 2 kernels: 7 compiled, 0 reused, 0 failed" "$OUT"'
check "progress is shown as plain lines when stderr is not a terminal" \
    eval 'grep -q "^\[sm_90\] 7/7 configs compiled$" "$ERR"'

for arch in sm_80 sm_90; do
    cc -s "$S" ls --kind build --arch "$arch" --json # "name" is the entry
    check "ls --kind build --arch $arch lists a build of every config" \
        eval "[ \$rc -eq 0 ] && json_ok '$BUILDS == $EXPECTED and d[\"count\"] == 7'"
done
# Registers are the driver's to report: with no GPU they are unknown, and
# say so, rather than 0.
cc -s "$S" ls --kind build --arch sm_90
check "ls prints unknown register counts as '? regs', never '0 regs'" \
    eval 'status_is 0 && out_has "\? regs" && ! out_has " 0 regs"'
cc -s "$S" --json ls --kind build --arch sm_90
check "ls --json: registers null" json_ok 'all(r["registers"] is None for r in d["records"])'
first_build=$(jget 'd["records"][0]["key"]')
cc -s "$S" show "$first_build"
check "show: registers, static smem, max threads, local memory are '?'" \
    eval 'status_is 0 && out_has "^registers +\? \(unknown" && out_has "^max threads +\?$" && ! out_has "^registers +0"'
cc -s "$S" --json show "$first_build"
check "show --json: null for each" \
    json_ok 'all(d[f] is None for f in ("registers", "static_smem", "max_threads", "local_bytes"))'
cc -s "$S" ls --kind tuning --json
check "no GPU: nothing is tuned" eval '[ $rc -eq 0 ] && json_ok "d[\"count\"] == 0"'
cc -s "$S" ls --kind lease --json
check "no lease is left behind" eval '[ $rc -eq 0 ] && json_ok "d[\"count\"] == 0"'

cc -s "$S" populate --manifest "$WORK/manifest.json" --arch sm_80,sm_90 --json
check "a second populate compiles nothing and reuses every build" \
    eval '[ $rc -eq 0 ] && json_ok "[(a[\"arch\"], a[\"compiled\"], a[\"reused\"], a[\"failed\"]) for a in d[\"archs\"]] == [(\"sm_80\", 0, 7, 0), (\"sm_90\", 0, 7, 0)]"'

# One config of a kernel fails to compile: reported, not fatal.
sed -e 's/extern \\"C\\" __global__ void scale/#if BLOCK == 512\\n#error BLOCK 512 is not supported\\n#endif\\nextern \\"C\\" __global__ void scale/' \
    "$WORK/manifest.json" >"$WORK/partial.json"
cc -s "$S" populate --manifest "$WORK/partial.json" --arch sm_90 --json
check "a config that fails to compile is reported with its reason, exit 0" \
    eval '[ $rc -eq 0 ] && json_ok "[(f[\"config\"], \"BLOCK 512 is not supported\" in f[\"reason\"]) for k in d[\"archs\"][0][\"kernels\"] for f in k[\"failed\"]] == [(\"BLOCK=512\", True)] and d[\"archs\"][0][\"compiled\"] == 2"'

cat >"$WORK/broken.json" <<'EOF'
{"version": 1, "kernels": [{"name": "pop.broken", "source": "this is not CUDA", "entry": "broken",
  "params": {"BLOCK": [64, 128]}, "grid": [1], "block": ["BLOCK"]}]}
EOF
cc -s "$S" populate --manifest "$WORK/broken.json" --arch sm_80
check "a kernel with no config that compiles fails the run and says why" \
    eval '[ $rc -eq 1 ] && err_has "pop.broken: no candidate compiled" && grep -q "BLOCK=64 failed: compile error" "$OUT"'

# An entry the source does not define: NVRTC compiles it without a word,
# the cubin's symbol table says it is not there.
sed 's/"entry": "scale"/"entry": "scal"/' "$WORK/manifest.json" >"$WORK/typo.json"
cc -s "$WORK/typo-store" populate --manifest "$WORK/typo.json" --arch sm_90
check "an entry that is not a symbol of the cubin fails populate, naming the symbols" \
    eval '[ $rc -eq 1 ] && err_has "pop.scale: no candidate compiled" && err_has "entry .scal. is not a symbol of the compiled cubin \(symbols: scale\)" && out_has "BLOCK=128 failed: entry .scal. is not a symbol"'
cc -s "$WORK/typo-store" --json ls --kind build --name scal
check "and publishes no build of it (the other kernel's builds are)" \
    json_ok 'd["count"] == 0'

sed 's/"grid"/"gird"/' "$WORK/manifest.json" >"$WORK/bad.json"
cc -s "$S" populate --manifest "$WORK/bad.json" --arch sm_80,sm_90
check "a bad manifest exits 1 naming the file and the field" \
    eval '[ $rc -eq 1 ] && err_has "bad.json: kernels\[0\] .pop.scale.: unknown key .gird."'

cc -s "$S" populate --manifest "$WORK/missing.json" --arch sm_80
check "a missing manifest exits 1 naming it" eval '[ $rc -eq 1 ] && err_has "missing.json"'

cc -s "$S" populate --manifest "$WORK/manifest.json" --arch sm_80,gfx90a
check "a bad --arch is a usage error naming it" eval '[ $rc -eq 2 ] && err_has "bad arch .gfx90a."'

cc -s "$S" populate --arch sm_80
check "a missing --manifest is a usage error" eval '[ $rc -eq 2 ] && err_has "manifest"'

cc -s "$S" populate --manifest "$WORK/manifest.json" --arch sm_90 -j 0
check "-j 0 is a usage error" test "$rc" -eq 2

# ---- PTX, turned into cubins by nvJitLink (no driver here) -------------------

nvcc="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
printf 'extern "C" __global__ void scale(float *x, float a, int n)\n{\n    int i = blockIdx.x * blockDim.x + threadIdx.x;\n    if (i < n)\n        x[i] *= a;\n}\n' >"$WORK/scale.cu"
"$nvcc" -ptx -arch=compute_80 "$WORK/scale.cu" -o "$WORK/scale.ptx"
cat >"$WORK/ptx.json" <<'JSON'
{"version": 1, "kernels": [{"name": "pop.scale_ptx", "source_kind": "ptx", "source_file": "scale.ptx",
  "entry": "scale",
  "args": [{"name": "x", "type": "f32*", "access": "inout"}, {"name": "a", "type": "f32"},
           {"name": "n", "type": "i32"}],
  "grid": ["cdiv(n, 256)"], "block": [256]}]}
JSON
P=$WORK/ptx-store
cc -s "$P" populate --manifest "$WORK/ptx.json" --arch sm_80,sm_90 --json
check "populate compiles a PTX kernel for sm_80 and sm_90 without a driver" \
    json_ok 'all(a["compiled"] == 1 and a["failed"] == 0 for a in d["archs"])'
cc -s "$P" --json ls --kind build
check "each arch got a build made by nvJitLink" \
    json_ok 'sorted(r["arch"] for r in d["records"]) == ["sm_80", "sm_90"] and all(r["toolchain"].startswith("nvjitlink-") for r in d["records"])'
cc -s "$P" verify
check "the PTX builds verify" eval 'status_is 0'

cli_finish
