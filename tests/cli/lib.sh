# Shared by the CLI tests: source it, then call cli_init NAME.
#
# ctest sets CACHECTL (the binary), KC_TOOLS_DIR (where the test tools such
# as kc_testfill are built) and KC_TEST_TMP (scratch space). cli_init makes
# $WORK (removed on exit), $OUT and $ERR, and $FILL (kc_testfill). Each
# check prints "ok - ..." or "FAIL - ..." with the last run's output;
# cli_finish prints the "N passed, N failed" line and sets the status.

: "${CACHECTL:?CACHECTL must name the cachectl binary}"
: "${KC_TOOLS_DIR:?KC_TOOLS_DIR must name the test tools directory}"
: "${KC_TEST_TMP:?KC_TEST_TMP must name a scratch directory}"

cli_init() {
    FILL=$KC_TOOLS_DIR/kc_testfill
    mkdir -p "$KC_TEST_TMP"
    WORK=$(mktemp -d "$KC_TEST_TMP/$1.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
    OUT=$WORK/out
    ERR=$WORK/err
    passed=0
    failed=0
    # The environment must not choose stores or limits behind a test's back.
    unset KCACHE_DIR KCACHE_PATH KCACHE_MAX_SIZE
}

cli_finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}

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

# json_ok PYTHON-EXPR: stdout is one JSON document and the expression holds
# for it as `d`.
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
