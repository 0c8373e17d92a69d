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
check "ls names the layers and the skipped one" \
    eval 'out_has "^  0  $UP" && out_has "^  1  $LOW" && out_has "absent: skipped: no such directory"'

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

KCACHE_PATH="$WORK/nothing1:$WORK/nothing2" cc ls
check "a path whose stores are all missing is a clear failure" \
    eval 'failure_with_message && err_has "no such directory"'

cli_finish
