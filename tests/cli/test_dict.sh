#!/usr/bin/env bash
# cachectl train-dict on a real store of NVRTC cubins: too few blobs is a
# clear error, --dry-run writes nothing, training shrinks the stored blobs
# and shows the ratio before and after, every cubin still comes out
# byte-identical, the dictionary is kept, and training again is safe.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cli_init dict
S=$WORK/store

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

cc -s "$S" train-dict --dry-run --size 1G
check "train-dict --size 1G is read as a size (the store then refuses 1 GB as too large)" \
    eval 'failure_with_message && err_has "out of range" && ! err_has "not a size"'
cc -s "$S" train-dict --dry-run --size 0.0625Mi
check "train-dict --size takes the size grammar (0.0625Mi = 64 KiB)" \
    eval 'status_is 0 && out_has "dry run: not stored"'
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

cli_finish
