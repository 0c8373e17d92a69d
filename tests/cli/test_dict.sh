#!/usr/bin/env bash
# cachectl train-dict on a real store of NVRTC cubins: too few blobs is a
# clear error, --dry-run writes nothing, training shrinks the stored blobs
# and shows the ratio before and after, every cubin still comes out
# byte-identical, the dictionary is kept, and training again is safe.
#
# ctest sets CACHECTL (the binary), KC_TOOLS_DIR (where kc_testfill is built)
# and KC_TEST_TMP (scratch space).
set -euo pipefail

: "${CACHECTL:?CACHECTL must name the cachectl binary}"
: "${KC_TOOLS_DIR:?KC_TOOLS_DIR must name the test tools directory}"
: "${KC_TEST_TMP:?KC_TEST_TMP must name a scratch directory}"
FILL=$KC_TOOLS_DIR/kc_testfill
mkdir -p "$KC_TEST_TMP"
WORK=$(mktemp -d "$KC_TEST_TMP/dict.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
S=$WORK/store
OUT=$WORK/out
ERR=$WORK/err

passed=0
failed=0

pass() {
    passed=$((passed + 1))
    echo "ok   - $1"
}

fail() {
    failed=$((failed + 1))
    echo "FAIL - $1"
    echo "  exit status: ${rc:-?}"
    sed 's/^/  stdout: /' "$OUT" 2>/dev/null | head -20 || true
    sed 's/^/  stderr: /' "$ERR" 2>/dev/null | head -20 || true
}

# check DESCRIPTION COMMAND...: passes when COMMAND succeeds.
check() {
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}

# cc ARGS...: run cachectl; stdout in $OUT, stderr in $ERR, status in $rc.
cc() {
    rc=0
    "$CACHECTL" "$@" >"$OUT" 2>"$ERR" || rc=$?
}

# Assertions on the last cc run.
status_is() { [ "$rc" -eq "$1" ]; }
out_has() { grep -Eq -- "$1" "$OUT"; }
err_has() { grep -Eq -- "$1" "$ERR"; }
out_empty() { [ ! -s "$OUT" ]; }
err_empty() { [ ! -s "$ERR" ]; }
usage_error() { status_is 2 && out_empty && [ -s "$ERR" ]; }
failure_with_message() { status_is 1 && [ -s "$ERR" ]; }

# json_ok PYTHON-EXPR: stdout is one JSON document (python3 -m json.tool
# accepts it) and the expression holds for it as `d`.
json_ok() {
    python3 -m json.tool "$OUT" >/dev/null &&
        python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if ($1) else 1)" "$OUT"
}

# jget PYTHON-EXPR: print the expression over the JSON on stdout (as `d`),
# or nothing when it cannot be evaluated, so that later checks fail cleanly.
jget() {
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' \
        "$OUT" "$1" 2>/dev/null || true
}


# cubins DIR: every .cubin under DIR, in name order.
cubins() { find "$1" -name '*.cubin' | sort; }

# same_cubins: every dumped cubin comes out of the store byte for byte.
same_cubins() {
    local f key
    for f in $(cubins "$WORK/dump"); do
        key=$(basename "$f" .cubin)
        "$CACHECTL" -s "$S" get "$key" -o "$WORK/got.cubin" || return 1
        cmp -s "$f" "$WORK/got.cubin" || return 1
    done
}

stored_bytes() {
    "$CACHECTL" -s "$S" --json stats |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["blob_stored_bytes"])'
}

cc train-dict --help
check "'train-dict --help' describes --size and --dry-run" \
    eval 'status_is 0 && out_has "--size" && out_has "--dry-run" && err_empty'
cc train-dict --size lots
check "a size that is not one is a usage error" usage_error

# Three fills of up to 18 cubins, for three archs: well over 20 blobs.
mkdir -p "$WORK/dump"
"$FILL" -s "$S" --arch sm_90 --count 2 --dump "$WORK/dump" >/dev/null
cc -s "$S" train-dict
check "training on fewer than 10 blobs is a clear error" \
    eval 'failure_with_message && err_has "needs at least 10"'

"$FILL" -s "$S" --arch sm_90 --count 12 --dump "$WORK/dump" >/dev/null
"$FILL" -s "$S" --arch sm_80 --count 12 --dump "$WORK/dump" >/dev/null
"$FILL" -s "$S" --arch sm_89 --count 12 --dump "$WORK/dump" >/dev/null
n=$(cubins "$WORK/dump" | wc -l)
check "the store holds at least 20 distinct cubins ($n)" [ "$n" -ge 20 ]

before=$(stored_bytes)
cc -s "$S" train-dict --dry-run --size 32K
check "--dry-run shows the projected ratio" \
    eval 'status_is 0 && out_has "dry run: not stored" && out_has "^before .*ratio" && out_has "^after \(projected\) .*ratio"'
check "--dry-run leaves the blobs as they were" [ "$(stored_bytes)" -eq "$before" ]

cc -s "$S" train-dict --size 32K
check "train-dict recompresses and shows the ratio before and after" \
    eval 'status_is 0 && out_has "^dictionary +dict\.[0-9]+" && out_has "^recompressed +[1-9][0-9]* blobs" && out_has "^after .*ratio [0-9.]+x"'
cat "$OUT"
after=$(stored_bytes)
check "the stored blobs take less space ($before -> $after bytes)" [ "$after" -lt "$before" ]
check "every cubin still comes out byte for byte" same_cubins
cc -s "$S" verify
check "verify finds the recompressed store sound" eval 'status_is 0 && out_has " 0 problems"'

cc -s "$S" --json train-dict --size 16K
check "training again is safe and never grows the blobs" \
    json_ok 'd["stored_after"] <= d["stored_before"] == '"$after"
check "every cubin still comes out after the second training" same_cubins

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
