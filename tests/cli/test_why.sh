#!/usr/bin/env bash
# cachectl why on a real store holding the same kernels built and tuned for
# two archs: a KEY names the nearest records and the field that differs, a
# NAME lists every record of the entry with its nearest neighbour, a key
# that is not stored is said to be missing, and --json parses.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cli_init why
S=$WORK/store

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

cli_finish
