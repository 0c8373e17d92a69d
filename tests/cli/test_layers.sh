#!/usr/bin/env bash
# cachectl over layered stores (KCACHE_PATH): ls, show, stats and get read
# every layer and say which one a record came from; -s picks one store.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cli_init layers

UP=$WORK/upper
LOW=$WORK/lower
"$FILL" -s "$LOW" --count 2 >"$WORK/low.keys"
"$FILL" -s "$UP" --arch sm_80 --count 1 >"$WORK/up.keys"
low_build=$(awk '$1 == "build" {print $2; exit}' "$WORK/low.keys")
up_build=$(awk '$1 == "build" {print $2; exit}' "$WORK/up.keys")
export KCACHE_PATH="$UP:$LOW:$WORK/absent"

cc ls
check "ls lists the records of both layers with a LAYER column" \
    eval 'status_is 0 && out_has "^LAYER" && out_has "^0 +build +$up_build" && out_has "^1 +build +$low_build"'
check "ls names the layers, and warns of the skipped one on stderr" \
    eval 'out_has "^  0  $UP" && out_has "^  1  $LOW" && err_has "^cachectl: warning: KCACHE_PATH: .*absent: skipped: no such directory"'

cc --json ls
check "ls --json gives each record its layer" \
    json_ok "len(d['layers']) == 2 and {r['layer'] for r in d['records']} == {0, 1} and all(r['layer_path'] in ('$UP', '$LOW') for r in d['records'])"

cc show "${low_build:0:12}"
check "show finds a lower layer's record and names its layer" \
    eval 'status_is 0 && out_has "^layer +$LOW"'

cc stats --json
check "stats --json reports each layer" \
    json_ok "[l['layer'] for l in d['layers']] == [0, 1] and d['layers'][0]['path'] == '$UP'"

cc get "${low_build:0:12}" -o "$WORK/low.cubin"
check "get reads a cubin from a lower layer" \
    eval 'status_is 0 && [ "$(head -c 4 "$WORK/low.cubin" | od -An -c | tr -d " ")" = "177ELF" ]'

cc -s "$LOW" ls --kind build
check "-s picks one store and shows no LAYER column" \
    eval 'status_is 0 && ! out_has "^LAYER" && out_has "$low_build" && ! out_has "$up_build"'

KCACHE_PATH="$UP:$WORK/absent" cc ls
check "a missing layer is warned about when only one layer is left too" \
    eval 'status_is 0 && err_has "absent: skipped: no such directory"'

KCACHE_PATH="$WORK/absent:$UP" cc gc
check "gc with KCACHE_PATH works on the first writable layer and says which" \
    eval 'status_is 0 && out_has "^store +$UP \(layer 0 of KCACHE_PATH" && err_has "absent: skipped"'
KCACHE_PATH="ro=$UP:$LOW" cc --json gc --dry-run
check "gc passes over a layer marked ro= (--json names the store and layer)" \
    json_ok "d['store'] == '$LOW' and d['layer'] == 1"
KCACHE_PATH="ro=$UP" cc gc
check "gc with no writable layer fails saying why" \
    eval 'failure_with_message && err_has "no layer of KCACHE_PATH is writable .*marked ro="'

KCACHE_PATH="$WORK/nothing1:$WORK/nothing2" cc ls
check "a path whose stores are all missing is a clear failure" \
    eval 'failure_with_message && err_has "no such directory"'

# ---- read-only layers as root -------------------------------------------------
# Root writes into a chmod a-w directory; the ro= marker and the seal hold
# for root too. A publish through KCACHE_PATH (populate) then lands in the
# next writable layer and leaves the marked layer's data.mdb as it was.
cat >"$WORK/m.json" <<'JSON'
{"version": 1, "kernels": [{"name": "ro.scale",
  "source": "extern \"C\" __global__ void scale(float *x, float s, int n)\n{\n    int i = blockIdx.x * BLOCK + threadIdx.x;\n    if (i < n)\n        x[i] *= s;\n}\n",
  "entry": "scale", "params": {"BLOCK": [128]},
  "args": [{"name": "x", "type": "f32*", "access": "inout"}, {"name": "s", "type": "f32"},
           {"name": "n", "type": "i32"}],
  "grid": ["cdiv(n, BLOCK)"], "block": ["BLOCK"]}]}
JSON
IMG=$WORK/image
TOP=$WORK/top
"$FILL" -s "$IMG" --count 1 >/dev/null
chmod -R a-w "$IMG"
cp "$IMG/data.mdb" "$WORK/image.before"
mtime_before=$(stat -c %Y.%y "$IMG/data.mdb")
builds_in() { "$CACHECTL" -s "$1" --json ls --kind build --name scale |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])'; }
image_unchanged() {
    cmp -s "$IMG/data.mdb" "$WORK/image.before" &&
        [ "$(stat -c %Y.%y "$IMG/data.mdb")" = "$mtime_before" ]
}

if [ "$(id -u)" -eq 0 ]; then
    KCACHE_PATH="$IMG:$TOP" cc --json ls
    check "as root, a chmod a-w layer without a marker is writable, as before" \
        json_ok "d['layers'][0]['writable'] is True"
fi

KCACHE_PATH="ro=$IMG:$TOP" cc --json ls
check "a layer marked ro= is read-only, and says why" \
    json_ok "d['layers'][0]['path'] == '$IMG' and d['layers'][0]['writable'] is False and 'ro=' in d['layers'][0]['readonly_why']"

KCACHE_PATH="ro=$IMG:$TOP" cc populate --manifest "$WORK/m.json" --arch sm_90
check "populate through KCACHE_PATH publishes into the next writable layer" \
    eval 'status_is 0 && [ "$(builds_in "$TOP")" = 1 ] && [ "$(builds_in "$IMG")" = 0 ]'
check "the marked layer's data.mdb is unchanged, bytes and mtime (uid $(id -u))" image_unchanged
KCACHE_PATH="ro=$IMG:$TOP" cc --json ls --kind build --name scale
check "and the build is read back through the layers, from layer 1" \
    json_ok "[r['layer'] for r in d['records']] == [1]"
KCACHE_PATH="ro=$IMG:$TOP" cc ls
check "ls's legend says why the marked layer is read-only" eval 'out_has "^  0  $IMG \(read-only: marked ro="'

KCACHE_PATH="ro=$WORK/absent-ro:$TOP" cc ls
check "a marked layer that does not exist is skipped with a warning, not created" \
    eval 'status_is 0 && err_has "absent-ro: skipped" && [ ! -e "$WORK/absent-ro" ]'

# The seal, through KCACHE_PATH, as root: the same.
SEAL=$WORK/sealed
TOP2=$WORK/top2
"$FILL" -s "$SEAL" --count 1 >/dev/null
"$CACHECTL" -s "$SEAL" seal >/dev/null
cp "$SEAL/data.mdb" "$WORK/sealed.before"
KCACHE_PATH="$SEAL:$TOP2" cc populate --manifest "$WORK/m.json" --arch sm_90
check "a sealed first layer: populate publishes into the next writable layer" \
    eval 'status_is 0 && [ "$(builds_in "$TOP2")" = 1 ] && [ "$(builds_in "$SEAL")" = 0 ]'
check "and the sealed layer's data.mdb is unchanged" cmp -s "$SEAL/data.mdb" "$WORK/sealed.before"
KCACHE_PATH="$SEAL:$TOP2" cc --json ls
check "ls says the sealed layer is read-only: sealed" \
    json_ok "d['layers'][0]['readonly_why'] == 'sealed'"
chmod -R u+w "$IMG"

cli_finish
