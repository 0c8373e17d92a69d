#!/usr/bin/env bash
# cachectl rm never leaves a store inconsistent: a record another one uses
# is refused with nothing removed, --cascade removes exactly the records
# that use it (transitively), a record outside the writable layer of
# KCACHE_PATH is refused, and with --json every error is one JSON document.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cli_init rm
S=$WORK/store

# snapshot DIR: every record of the store as sorted "kind key" lines.
snapshot() {
    "$CACHECTL" -s "$1" --json ls |
        python3 -c 'import json,sys; print("\n".join(sorted(r["kind"] + " " + r["key"] for r in json.load(sys.stdin)["records"])))'
}

if ! "$FILL" -s "$S" --arch sm_90 --count 2 --binmeta --group g1 >"$WORK/keys" 2>"$WORK/fill.err"; then
    cat "$WORK/fill.err"
    echo "kc_testfill failed: cannot run the CLI tests"
    echo "0 passed, 1 failed"
    exit 1
fi
cp -r "$S" "$WORK/pristine"
tuning=$(awk '$1 == "tuning" { print $2 }' "$WORK/keys")
group=$(awk '$1 == "group" { print $2 }' "$WORK/keys")
saxpy_build=$(awk '$1 == "binmeta" { print $2 }' "$WORK/keys")
cc -s "$S" --json show "$saxpy_build"
saxpy_blob=$(jget 'd["blob"]["key"]')
cc -s "$S" --json ls --kind build --name vec_add
b64=$(jget '[r["key"] for r in d["records"] if r["params"] == {"BLOCK": 64}][0]')
blob64=$(jget '[r["blob"] for r in d["records"] if r["params"] == {"BLOCK": 64}][0]')
cc -s "$S" --json ls --kind build --name block_sum
bs_build=$(jget 'd["records"][0]["key"]')
bs_blob=$(jget 'd["records"][0]["blob"]')
snapshot "$S" >"$WORK/before"
check "the store holds 14 records" eval '[ "$(wc -l <"$WORK/before")" -eq 14 ]'

# ---- refusal -------------------------------------------------------------------

cc -s "$S" rm "$saxpy_blob"
check "rm of a blob that a build and a group use is refused with its users named" \
    eval 'failure_with_message && out_empty && err_has "blob $saxpy_blob is used by build $saxpy_build \(and 1 more\)" && err_has "nothing removed" && err_has "--cascade"'
snapshot "$S" >"$WORK/after"
check "a refused rm removes nothing" cmp -s "$WORK/before" "$WORK/after"

cc -s "$S" rm "$b64"
check "rm of a build that a tuning names is refused" \
    eval 'failure_with_message && err_has "build $b64 is used by tuning $tuning"'
cc -s "$S" rm "$bs_build" "$b64"
check "one refused key among several removes none of them" \
    eval 'failure_with_message && out_empty && [ "$(snapshot "$S")" = "$(cat "$WORK/before")" ]'

cc -s "$S" --json rm "$saxpy_blob"
check "a refused rm --json prints a JSON error naming the users, exit 1" \
    eval 'status_is 1 && json_ok '"'"'d["error"]["code"] == "KC_EBUSY" and "nothing removed" in d["error"]["message"] and sorted((u["kind"], u["key"], u["uses"]["key"]) for u in d["error"]["dependants"]) == sorted([("build", "'"$saxpy_build"'", "'"$saxpy_blob"'"), ("group", "'"$group"'", "'"$saxpy_blob"'")])'"'"
check "a refused rm --json removes nothing" eval '[ "$(snapshot "$S")" = "$(cat "$WORK/before")" ]'

# ---- cascade -------------------------------------------------------------------

cc -s "$S" --json rm --cascade "$saxpy_blob"
check "rm --cascade of a blob removes it, its build with its binmeta, and the group" \
    json_ok 'sorted((r["kind"], r["key"]) for r in d["removed"]) == sorted([("blob", "'"$saxpy_blob"'"), ("build", "'"$saxpy_build"'"), ("binmeta", "'"$saxpy_build"'"), ("group", "'"$group"'")]) and d["removed"][0] == {"kind": "blob", "key": "'"$saxpy_blob"'"}'
snapshot "$S" >"$WORK/after"
check "exactly those four records are gone" \
    eval '[ "$(comm -23 "$WORK/before" "$WORK/after" | sort)" = "$(printf "%s\n" "binmeta $saxpy_build" "blob $saxpy_blob" "build $saxpy_build" "group $group" | sort)" ] && [ -z "$(comm -13 "$WORK/before" "$WORK/after")" ]'

cc -s "$S" rm --cascade "${blob64:0:12}"
check "rm --cascade is transitive: a blob's build and the tuning that names the build" \
    eval 'status_is 0 && out_has "^removed blob $blob64$" && out_has "^removed build $b64$" && out_has "^removed tuning $tuning$" && [ "$(wc -l <"$OUT")" -eq 3 ]'
cc -s "$S" verify
check "the store verifies clean after the cascades" eval 'status_is 0 && out_has "0 problems"'
check "the store holds 7 records" eval '[ "$(snapshot "$S" | wc -l)" -eq 7 ]'

# ---- a record nothing uses -----------------------------------------------------

S2=$WORK/store2
cp -r "$WORK/pristine" "$S2"
cc -s "$S2" rm "$tuning"
check "rm of a tuning removes only the tuning" \
    eval 'status_is 0 && [ "$(cat "$OUT")" = "removed tuning $tuning" ] && [ "$(snapshot "$S2" | wc -l)" -eq 13 ]'
cc -s "$S2" rm "$b64"
check "a build no tuning names any more is removed, its blob stays" \
    eval 'status_is 0 && [ "$(cat "$OUT")" = "removed build $b64" ] && snapshot "$S2" | grep "^blob $blob64$" >/dev/null'

# ---- layers ----------------------------------------------------------------------

# The top layer lacks block_sum; the lower one (the pristine copy) has it.
TOP=$WORK/top
cp -r "$S2" "$TOP"
"$CACHECTL" -s "$TOP" rm --cascade "$bs_blob" >/dev/null
snapshot "$TOP" >"$WORK/top.before"
snapshot "$WORK/pristine" >"$WORK/low.before"
rc=0
KCACHE_PATH="$TOP:$WORK/pristine" "$CACHECTL" rm "$bs_build" >"$OUT" 2>"$ERR" || rc=$?
check "rm of a key only in a lower layer is refused, naming that layer" \
    eval 'failure_with_message && out_empty && err_has "build $bs_build is in layer 1 \($WORK/pristine\), not in the writable layer \($TOP\)"'
check "a key only in a lower layer is removed from no layer" \
    eval '[ "$(snapshot "$TOP")" = "$(cat "$WORK/top.before")" ] && [ "$(snapshot "$WORK/pristine")" = "$(cat "$WORK/low.before")" ]'
rc=0
KCACHE_PATH="$TOP:$WORK/pristine" "$CACHECTL" --json rm "$bs_build" >"$OUT" 2>"$ERR" || rc=$?
check "with --json, the lower-layer refusal is a JSON error" \
    eval 'status_is 1 && json_ok '"'"'d["error"]["code"] == "KC_EREADONLY" and "not in the writable layer" in d["error"]["message"]'"'"
rc=0
KCACHE_PATH="$TOP:$WORK/pristine" "$CACHECTL" rm "$saxpy_build" >"$OUT" 2>"$ERR" || rc=$?
check "rm of a key in the writable layer removes it there only" \
    eval 'status_is 0 && out_has "^removed build $saxpy_build$" && ! snapshot "$TOP" | grep "^build $saxpy_build$" >/dev/null && [ "$(snapshot "$WORK/pristine")" = "$(cat "$WORK/low.before")" ]'

# ---- JSON errors of every command ----------------------------------------------

cc -s "$S" --json rm 00000000
check "rm --json of a key that matches nothing is a KC_ENOTFOUND JSON error" \
    eval 'status_is 1 && json_ok '"'"'d["error"]["code"] == "KC_ENOTFOUND" and "no record matches" in d["error"]["message"]'"'"
cc -s "$S" --json show 00000000
check "show --json of a missing key is a JSON error too" \
    eval 'status_is 1 && json_ok '"'"'d["error"]["code"] == "KC_ENOTFOUND"'"'"
cc -s "$WORK/nonexistent" --json stats
check "a missing store with --json is a JSON error" \
    eval 'status_is 1 && json_ok '"'"'d["error"]["code"] == "KC_ENOTFOUND" and "no store" in d["error"]["message"]'"'"

cli_finish
