#!/usr/bin/env bash
# A damaged store through cachectl: every command refuses it with exit status
# 3 and a message that says what is wrong and what to do; cachectl recover
# salvages its records into a new store that verifies.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cli_init recover

S=$WORK/store
"$FILL" -s "$S" --count 8 >"$WORK/keys"
build=$(awk '$1 == "build" {print $2; exit}' "$WORK/keys")
size=$(stat -c %s "$S/data.mdb")

# A copy cut one page short, as a copy interrupted by a full disk leaves it.
D=$WORK/damaged
mkdir "$D"
head -c $((size - 4096)) "$S/data.mdb" >"$D/data.mdb"

for cmd in ls stats verify export; do
    cc -s "$D" $cmd
    check "$cmd refuses the damaged store with status 3" \
        eval 'status_is 3 && err_has "is damaged: .*truncated" && err_has "cachectl recover"'
done
cc -s "$D" --json ls
check "--json says KC_EDAMAGED" eval 'status_is 3 && out_has "KC_EDAMAGED"'
check "cachectl moved nothing" test -f "$D/data.mdb"

cc recover "$D" "$WORK/saved"
check "recover reports the builds it saved" eval 'status_is 0 && out_has "^  build +[0-9]+ +0 "'
cc -s "$WORK/saved" verify
check "the recovered store verifies" eval 'status_is 0'

cc --json recover "$S" "$WORK/whole"
check "an intact store is recovered whole (--json)" \
    json_ok "d['kinds']['build']['saved'] == d['kinds']['build']['expected'] > 0 and d['kinds']['build']['lost'] == 0"
cc -s "$WORK/whole" show "${build:0:12}"
check "with its records" eval 'status_is 0'

cc recover "$S" "$WORK/whole"
check "recover refuses an existing store" eval 'status_is 1 && err_has "already holds a store"'
cc recover "$S"
check "recover needs SRC and DST" usage_error

cli_finish
