#!/usr/bin/env bash
# cachectl why on a real store holding the same kernels built and tuned for
# two archs: a KEY names the nearest records and the field that differs, a
# NAME lists every record of the entry with its nearest neighbour, a key
# that is not stored is said to be missing, and --json parses.
#
# ctest sets CACHECTL (the binary), KC_TOOLS_DIR (where kc_testfill is built)
# and KC_TEST_TMP (scratch space).
set -euo pipefail

: "${CACHECTL:?CACHECTL must name the cachectl binary}"
: "${KC_TOOLS_DIR:?KC_TOOLS_DIR must name the test tools directory}"
: "${KC_TEST_TMP:?KC_TEST_TMP must name a scratch directory}"
FILL=$KC_TOOLS_DIR/kc_testfill
mkdir -p "$KC_TEST_TMP"
WORK=$(mktemp -d "$KC_TEST_TMP/why.XXXXXX")
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


# ---- usage ------------------------------------------------------------------

cc why --help
check "'why --help' describes NAME, KEY and --arch on stdout" \
    eval 'status_is 0 && out_has "NAME" && out_has "--arch" && err_empty'
cc why
check "why without NAME or KEY is a usage error" usage_error
cc why a b
check "why with two operands is a usage error" usage_error
cc why --limit 0 vec_add
check "a --limit of 0 is a usage error" usage_error

# ---- a store with vec_add built and tuned for sm_80 and sm_90 ----------------

"$FILL" -s "$S" --arch sm_90 --count 4 >"$WORK/k90"
"$FILL" -s "$S" --arch sm_80 --count 4 >"$WORK/k80"
t90=$(awk '$1 == "tuning" {print $2}' "$WORK/k90")
t80=$(awk '$1 == "tuning" {print $2}' "$WORK/k80")
b90=$(awk '$1 == "build" {print $2; exit}' "$WORK/k90")
b80=$(awk '$1 == "build" {print $2; exit}' "$WORK/k80")
blob90=$(awk '$1 == "blob" {print $2; exit}' "$WORK/k90")

cc -s "$S" why "${t90:0:12}"
check "why TUNING names the other arch's tuning as nearest, differing in arch" \
    eval 'status_is 0 && out_has "^tuning $t90" && out_has "nearest tuning ${t80:0:8} differs in: arch \(sm_90 vs sm_80\)$"'

cc -s "$S" why "${b90:0:12}"
check "why BUILD lists the nearest builds with the differing values" \
    eval 'status_is 0 && out_has "^build $b90" && out_has "differs in: params \(BLOCK=64 vs BLOCK=" && out_has "differs in: arch \(sm_90 vs sm_80\)$"'

cc -s "$S" why --limit 1 "${b90:0:12}"
check "--limit 1 shows only the nearest build" \
    eval 'status_is 0 && [ "$(grep -c "nearest build" "$OUT")" -eq 1 ]'

cc -s "$S" why "$blob90"
check "why BLOB lists the builds that produced it" \
    eval 'status_is 0 && out_has "^blob $blob90" && out_has "build $b90 \(vec_add\)"'

cc -s "$S" why vec_add
check "why NAME lists the tunings and builds of the entry with their nearest" \
    eval 'status_is 0 && out_has "2 tunings and 8 builds of .vec_add." && out_has "^${t90:0:8} +sm_90 .* ${t80:0:8} +arch$"'

cc -s "$S" why 'vec*' --arch sm_90
check "--arch keeps one arch: the lone tuning has no neighbour" \
    eval 'status_is 0 && out_has "1 tunings and 4 builds" && ! out_has "sm_80"'

cc -s "$S" why block_sum
check "two builds of block_sum for two archs differ in arch only" \
    eval 'status_is 0 && out_has "0 tunings and 2 builds" && [ "$(grep -c " arch$" "$OUT")" -eq 2 ]'

cc -s "$S" --json why "${t90:0:12}"
check "why --json KEY gives the target and its nearest with both values" \
    json_ok 'd["key"] == "'"$t90"'" and d["nearest"][0]["key"] == "'"$t80"'" and d["nearest"][0]["differs_in"] == ["arch"] and d["nearest"][0]["values"]["arch"] == ["sm_90", "sm_80"]'

cc -s "$S" --json why vec_add
check "why --json NAME gives every tuning and build with what differs" \
    json_ok 'len(d["tunings"]) == 2 and len(d["builds"]) == 8 and all(t["differs_in"] == ["arch"] for t in d["tunings"])'

cc -s "$S" why 0123456789abcdef
check "a key prefix that is not stored is said to be missing" \
    eval 'failure_with_message && err_has "no stored record has a key starting with 0123456789abcdef"'

cc -s "$S" why no_such_kernel
check "an entry with nothing stored is said to miss" \
    eval 'failure_with_message && err_has "no stored build or tuning of entry .no_such_kernel."'

cc -s "$WORK/nothing" why vec_add
check "why on a missing store fails with a message" failure_with_message

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
