#!/usr/bin/env bash
# cachectl snapshot: a consistent, compacted copy of a store in a new
# directory, refused onto an existing path.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cli_init snapshot

S=$WORK/store
"$FILL" -s "$S" --count 3 >"$WORK/keys"
build=$(awk '$1 == "build" {print $2; exit}' "$WORK/keys")

cc -s "$S" snapshot "$WORK/snap"
check "snapshot writes a new store and says its size" \
    eval 'status_is 0 && out_has "^snapshot $WORK/snap: data.mdb " && [ -f "$WORK/snap/data.mdb" ]'

cc -s "$WORK/snap" verify
check "the snapshot verifies" eval 'status_is 0'

cc -s "$S" --json ls --kind all
before=$(jget 'sorted((r["kind"], r["key"]) for r in d["records"] if r["kind"] != "usage")')
cc -s "$WORK/snap" --json ls --kind all
after=$(jget 'sorted((r["kind"], r["key"]) for r in d["records"] if r["kind"] != "usage")')
check "the snapshot holds the same records" eval '[ "$before" = "$after" ] && [ -n "$before" ]'

cc -s "$WORK/snap" get "${build:0:12}" -o "$WORK/b.cubin"
check "a cubin of the snapshot reads back" eval 'status_is 0 && [ -s "$WORK/b.cubin" ]'

cc -s "$S" snapshot "$WORK/snap"
check "an existing destination is refused" eval 'status_is 1 && err_has "exists"'

cc -s "$S" --json snapshot "$WORK/snap2"
check "snapshot --json" json_ok "d['snapshot'] == '$WORK/snap2' and d['bytes'] > 0"

cli_finish
