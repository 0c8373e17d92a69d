#!/usr/bin/env bash
# cachectl export and import on real stores of NVRTC-compiled cubins: a pipe
# from one store to another, idempotence, a truncated bundle that fails and
# changes nothing, filters, --prefer, --json and usage errors.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cli_init bundle
A=$WORK/a
B=$WORK/b

# json_of FILE PYTHON-EXPR: FILE is one JSON document and the expression
# holds for it as `d`.
json_of() {
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if ($2) else 1)" "$1"
}

# The records of a store (every kind, usage stamps included), for "nothing
# changed" comparisons.
snapshot() {
    "$CACHECTL" -s "$1" --json ls --kind all
}
# The blob, build and tuning records' keys and sizes.
content() {
    "$CACHECTL" -s "$1" --json ls | python3 -c '
import json, sys
d = json.load(sys.stdin)
for r in sorted(d["records"], key=lambda r: r["key"]):
    print(r["kind"], r["key"], r.get("stored_bytes", r.get("size")))'
}

"$FILL" -s "$A" --count 4 >/dev/null
"$FILL" -s "$A" --count 2 --arch sm_80 >/dev/null

# ---- a pipe from one store into another -------------------------------------

rc=0
"$CACHECTL" -s "$A" export -o - 2>"$WORK/export.err" | "$CACHECTL" -s "$B" import - >"$OUT" 2>"$ERR" || rc=$?
check "export -o - | import - copies a store through a pipe" \
    eval 'status_is 0 && out_has "added" && grep -Eq "^exported [0-9]+ records" "$WORK/export.err"'
check "the copy holds the same blobs, builds and tunings" \
    eval '[ "$(content "$A")" = "$(content "$B")" ] && [ -n "$(content "$A")" ]'

cc -s "$A" export -o "$WORK/a.kcb"
check "export -o FILE writes the bundle and prints the summary on stdout" \
    eval 'status_is 0 && [ -s "$WORK/a.kcb" ] && out_has "^exported" && ! ls "$WORK"/a.kcb.tmp.* 2>/dev/null'

before=$(snapshot "$B")
cc -s "$B" import "$WORK/a.kcb"
check "importing the same bundle again adds nothing" \
    eval 'status_is 0 && out_has " 0 added" && [ "$(snapshot "$B")" = "$before" ]'

# ---- damage --------------------------------------------------------------------

size=$(stat -c %s "$WORK/a.kcb")
head -c $((size / 2)) "$WORK/a.kcb" >"$WORK/half.kcb"
C=$WORK/c
"$FILL" -s "$C" --count 1 >/dev/null
before=$(snapshot "$C")
cc -s "$C" import "$WORK/half.kcb"
check "a bundle cut by head -c fails with exit 1, saying where" \
    eval 'status_is 1 && err_has "half.kcb: truncated after [0-9]+ record" && out_empty'
check "the failed import changed nothing" eval '[ "$(snapshot "$C")" = "$before" ]'

rc=0
head -c $((size - 1)) "$WORK/a.kcb" | "$CACHECTL" -s "$C" import - >"$OUT" 2>"$ERR" || rc=$?
check "a bundle one byte short through a pipe fails too" \
    eval 'status_is 1 && err_has "truncated" && [ "$(snapshot "$C")" = "$before" ]'

# Invert the byte a third of the way in: whatever it was, it changes.
python3 -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[len(b) // 3] ^= 0xff; open(sys.argv[2], "wb").write(b)' \
    "$WORK/a.kcb" "$WORK/flip.kcb"
cc -s "$C" import "$WORK/flip.kcb"
check "a damaged byte is reported with its frame and offset, and changes nothing" \
    eval 'status_is 1 && err_has "flip.kcb: frame [0-9]+.*checksum mismatch at byte offset [0-9]+" && [ "$(snapshot "$C")" = "$before" ]'

cc -s "$C" import --max-size 1K "$WORK/a.kcb"
check "--max-size refuses a larger bundle" \
    eval 'status_is 1 && err_has "limit" && [ "$(snapshot "$C")" = "$before" ]'

# ---- JSON ------------------------------------------------------------------------

rc=0
"$CACHECTL" -s "$A" --json export -o - >"$WORK/j.kcb" 2>"$ERR" || rc=$?
check "export --json -o - puts JSON on stderr and keeps stdout a bundle" \
    eval 'status_is 0 && json_of "$ERR" "d[\"records\"] > 0 and d[\"bytes\"] == $(stat -c %s "$WORK/j.kcb")" && [ "$(head -c 3 "$WORK/j.kcb")" = KCB ]'

D=$WORK/d
cc -s "$D" --json import "$WORK/j.kcb"
check "import --json parses and counts what it added" \
    eval 'status_is 0 && json_of "$OUT" "d[\"added\"] == d[\"records\"] > 0 and d[\"already_present\"] == 0"'
cc -s "$D" import --json "$WORK/j.kcb"
check "a second import --json reports every record already present" \
    eval 'status_is 0 && json_of "$OUT" "d[\"added\"] == 0 and d[\"already_present\"] == d[\"records\"]"'

# ---- filters ------------------------------------------------------------------------

cc -s "$A" --json export --arch sm_80 -o "$WORK/sm80.kcb"
check "--arch sm_80 exports only sm_80 builds with their blobs" \
    eval 'status_is 0 && json_of "$OUT" "d[\"builds\"] == 4 and d[\"blobs\"] == 4 and d[\"tunings\"] == 1"'
cp "$OUT" "$WORK/sm80.json"
cc -s "$A" --json export --arch 80 -o "$WORK/80.kcb"
check "--arch 80 means sm_80, as populate reads it: the same records" \
    eval 'status_is 0 && python3 -c "import json,sys; a,b=(json.load(open(f)) for f in sys.argv[1:]); del a[\"output\"], b[\"output\"]; sys.exit(a != b)" "$OUT" "$WORK/sm80.json"'
for bad in sm80 compute_80 gfx90a 8; do
    cc -s "$A" export --arch "$bad" -o "$WORK/bad.kcb"
    check "export --arch $bad is a usage error listing the accepted forms, nothing written" \
        eval 'usage_error && err_has "bad arch .$bad. \(expected sm_NN, .* or NN" && [ ! -e "$WORK/bad.kcb" ]'
done
cc -s "$A" ls --arch 80 --kind build --json
check "ls --arch 80 reads it the same way" eval 'status_is 0 && json_ok "d[\"count\"] == 4"'
cc -s "$A" ls --arch sm80
check "and ls --arch sm80 is a usage error" eval 'usage_error && err_has "bad arch"'
cc -s "$A" why vec_add --arch compute_80
check "and why --arch compute_80" eval 'usage_error && err_has "bad arch"'
cc -s "$A" --json export --name 'sax*' -o "$WORK/saxpy.kcb"
check "--name selects by kernel entry" \
    eval 'status_is 0 && json_of "$OUT" "d[\"builds\"] == 2 and d[\"tunings\"] == 0"'
cc -s "$A" --json export --tuned-only -o "$WORK/tuned.kcb"
check "--tuned-only exports the tunings and their winners' builds and blobs" \
    eval 'status_is 0 && json_of "$OUT" "d[\"tunings\"] == 2 and d[\"builds\"] == 2 and d[\"blobs\"] == 2"'
cc -s "$A" --json export --since 1h -o "$WORK/recent.kcb"
check "--since 1h exports what was just made" \
    eval 'status_is 0 && json_of "$OUT" "d[\"builds\"] == 10"'
cc -s "$A" --json export --since 2100-01-01 -o "$WORK/none.kcb"
check "--since a future date exports nothing, as a valid empty bundle" \
    eval 'status_is 0 && json_of "$OUT" "d[\"records\"] == 0"'
E=$WORK/e
cc -s "$E" import "$WORK/none.kcb"
check "an empty bundle imports" eval 'status_is 0 && out_has " 0 added"'

# ---- usage errors ------------------------------------------------------------------------

cc -s "$A" export --since yesterday -o "$WORK/x.kcb"
check "a bad --since is a usage error" eval 'status_is 2 && err_has "since"'
cc -s "$B" import --prefer newest "$WORK/a.kcb"
check "a bad --prefer is a usage error" eval 'status_is 2 && err_has "prefer"'
cc -s "$B" import
check "import without FILE is a usage error" eval 'status_is 2'
cc -s "$B" import "$WORK/missing.kcb"
check "a missing bundle file fails with exit 1" eval 'status_is 1 && err_has "missing.kcb"'
cc export --help
check "export --help lists the filters" eval 'status_is 0 && out_has "--tuned-only" && out_has "--since"'
cc import --help
check "import --help describes --prefer" eval 'status_is 0 && out_has "--prefer" && out_has "faster"'

cli_finish
