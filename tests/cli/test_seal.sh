#!/usr/bin/env bash
# cachectl seal / unseal: a sealed store refuses every write, for root too.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cli_init seal

S=$WORK/store
"$FILL" -s "$S" --count 1 >"$WORK/keys"
tuning=$(awk '$1 == "tuning" {print $2; exit}' "$WORK/keys")

cc -s "$S" seal
check "seal says so" eval 'status_is 0 && out_has "^sealed $S"'

cc -s "$S" rm "${tuning:0:12}"
check "a sealed store refuses rm, naming the seal" \
    eval 'status_is 1 && err_has "sealed"'

cc -s "$S" gc --max-size 1
check "and gc" eval 'status_is 1 && err_has "sealed"'

cc -s "$S" ls --kind tuning
check "and still serves reads" eval 'status_is 0 && out_has "$tuning"'

cc -s "$S" --json unseal
check "unseal lifts it (--json)" json_ok "d['sealed'] is False"

cc -s "$S" rm "${tuning:0:12}"
check "an unsealed store takes writes again" eval 'status_is 0'

cli_finish
