#!/usr/bin/env bash
# cachectl gc and compact on a real store of NVRTC-compiled cubins: dry runs
# change nothing, a size limit is met without breaking a reference, JSON
# output parses, compaction shrinks data.mdb, and bad sizes or durations
# are usage errors.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cli_init gc
S=$WORK/store

# A listing of every record (kind and key), to compare stores.
records() {
    "$CACHECTL" -s "$S" --json ls |
        python3 -c 'import json,sys; print("\n".join(sorted(r["kind"]+" "+r["key"] for r in json.load(sys.stdin)["records"])))'
}

# ---- usage errors (no store needed) ------------------------------------------

cc gc --help
check "'gc --help' describes the options on stdout" \
    eval 'status_is 0 && out_has "--max-size" && out_has "--older-than" && out_has "--dry-run"'
for bad in 1x 12Q -5 M ""; do
    cc -s "$S" gc --max-size "$bad"
    check "gc --max-size '$bad' is a usage error" eval 'usage_error && err_has "invalid size"'
done
cc help gc
cp "$OUT" "$WORK/help_gc"
check "'help gc' prints the gc help on stdout" \
    eval 'status_is 0 && err_empty && out_has "^Usage: cachectl .* gc " && out_has "--max-size" && out_has "--older-than"'
cc gc --help
check "'gc --help' prints the same help as 'help gc'" \
    eval 'status_is 0 && err_empty && cmp -s "$OUT" "$WORK/help_gc"'
cc help nosuch
check "'help nosuch' is a usage error" eval 'usage_error && err_has "unknown command"'
cc help
check "'help' alone lists the commands" eval 'status_is 0 && out_has "^Commands:" && out_has "train-dict"'
cc -s "$S" gc --older-than 3y
check "gc --older-than 3y is a usage error" eval 'usage_error && err_has "invalid duration"'
cc -s "$S" compact extra
check "compact takes no operand" usage_error

# ---- a real store ------------------------------------------------------------

if ! "$FILL" -s "$S" --arch sm_90 --count 8 >"$WORK/keys" 2>"$WORK/fill.err"; then
    cat "$WORK/fill.err"
    echo "kc_testfill failed: cannot run the gc CLI tests"
    echo "0 passed, 1 failed"
    exit 1
fi
records >"$WORK/before"
n_before=$(wc -l <"$WORK/before")

cc -s "$S" --json gc --dry-run
size=$(jget 'd["size_before"]')
check "gc --dry-run without a limit evicts nothing from a fresh store" \
    json_ok 'd["dry_run"] and d["evicted"] == [] and d["size_before"] > 10000'

for good in 1.5GiB 1G 5 0 500M 1Ti; do
    cc -s "$S" --json gc --dry-run --max-size "$good"
    check "gc --max-size $good --dry-run is a size (a limit above the store: nothing to evict)" \
        json_ok 'd["dry_run"] and d["evicted"] == []'
done
cc -s "$S" --json gc --dry-run --older-than 1.5h
check "gc --older-than 1.5h --dry-run is a duration (nothing that old)" \
    json_ok 'd["dry_run"] and d["evicted"] == []'
half=$((size / 2))
cc -s "$S" gc --dry-run --max-size "${half}B"
check "gc --dry-run --max-size lists what would go and the totals" \
    eval 'status_is 0 && out_has "^(tuning|build|blob) +[0-9a-f]{32}" && out_has "would evict" && out_has "size "'
records >"$WORK/after_dry"
check "gc --dry-run changes nothing" cmp -s "$WORK/before" "$WORK/after_dry"

cc -s "$S" --json gc --dry-run --max-size "${half}B"
planned=$(jget '" ".join(e["key"] for e in d["evicted"])')
check "gc --dry-run --json plans to get under the limit" \
    json_ok "d['dry_run'] and d['size_after'] <= $half and len(d['evicted']) > 0"

cc -s "$S" --json gc --max-size "${half}B"
evicted=$(jget '" ".join(e["key"] for e in d["evicted"])')
check "gc --max-size gets the store under the limit (JSON parses)" \
    json_ok "not d['dry_run'] and d['size_after'] <= $half and d['bytes_freed'] == d['size_before'] - d['size_after']"
check "gc evicts exactly what the dry run planned" eval '[ -n "$evicted" ] && [ "$evicted" = "$planned" ]'
records >"$WORK/after_gc"
n_after=$(wc -l <"$WORK/after_gc")
check "the evicted records are gone" eval '[ "$n_after" -lt "$n_before" ]'
gone=0
for key in $evicted; do
    if grep -q " $key\$" "$WORK/after_gc"; then gone=1; fi
done
check "no evicted key is still listed" eval '[ "$gone" -eq 0 ]'

cc -s "$S" verify
check "verify finds no build without its blob and no tuning without its build" \
    eval 'status_is 0 && out_has "0 problems"'

cc -s "$S" --json stats
n_evicted=$(echo $evicted | wc -w)
check "stats counts the evictions" json_ok "d['counters']['evictions'] == $n_evicted"

cc -s "$S" gc --older-than 30d
check "gc --older-than 30d keeps records used today" \
    eval 'status_is 0 && out_has "evicted 0 tunings, 0 builds, 0 blobs"'

# ---- compact -----------------------------------------------------------------

cc -s "$S" --json compact
check "compact --json reports a file no larger than before" \
    json_ok 'd["file_after"] <= d["file_before"] and d["file_after"] > 0'
cc -s "$S" compact
check "compact prints the sizes before and after" \
    eval 'status_is 0 && out_has "^data.mdb .* -> .* reclaimed"'
records >"$WORK/after_compact"
check "compact keeps every record" cmp -s "$WORK/after_gc" "$WORK/after_compact"
cc -s "$S" verify
check "the compacted store verifies" eval 'status_is 0 && out_has "0 problems"'

cc -s "$S" --json gc --max-size 1B
check "gc --max-size 1B empties the store" \
    json_ok 'd["size_after"] == 0 and d["counts"]["blobs"] > 0'
cc -s "$S" --json compact
check "compact of the emptied store shrinks data.mdb" \
    json_ok 'd["file_after"] < d["file_before"]'
cc -s "$S" --json stats
check "the empty store has no blob, build or tuning left" \
    json_ok 'sum(d["records"][k] for k in ("blob", "build", "tuning")) == 0'


# A size limit in the environment that does not parse is an error, for
# every command that opens the store, never a silently unlimited store.
for cmd in "ls" "gc" "stats"; do
    KCACHE_MAX_SIZE=lots cc -s "$S" $cmd
    check "KCACHE_MAX_SIZE=lots: $cmd fails naming the variable and the forms" \
        eval 'failure_with_message && err_has "KCACHE_MAX_SIZE=.lots.: not a size .*512M"'
done
KCACHE_MAX_SIZE=lots cc -s "$S" --json ls
check "and --json gives KC_EINVAL" json_ok "d['error']['code'] == 'KC_EINVAL'"

cli_finish
