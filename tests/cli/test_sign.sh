#!/usr/bin/env bash
# Signed bundles through cachectl: keygen and its key files, export --sign
# piped into import --trust, and the refusals under a trusted key (an
# unsigned bundle, another key's), by option and by KCACHE_TRUST.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cli_init sign
unset KCACHE_TRUST

SRC=$WORK/src
"$FILL" -s "$SRC" --count 2 >"$WORK/src.keys"
build=$(awk '$1 == "build" {print $2; exit}' "$WORK/src.keys")
mode() { stat -c %a "$1"; }

cc keygen -o "$WORK/alice"
check "keygen writes NAME.key with mode 600 and NAME.pub with mode 644" \
    eval 'status_is 0 && [ "$(mode "$WORK/alice.key")" = 600 ] && [ "$(mode "$WORK/alice.pub")" = 644 ]'
check "the key files are one line each in the documented format" \
    eval 'grep -Eq "^kcache-ed25519-secret-v1 [A-Za-z0-9+/]{86}==$" "$WORK/alice.key" &&
          grep -Eq "^kcache-ed25519-public-v1 [A-Za-z0-9+/]{43}=$" "$WORK/alice.pub"'
cp "$WORK/alice.key" "$WORK/alice.key.orig"
cc keygen -o "$WORK/alice"
check "keygen refuses to overwrite an existing key and leaves it as it was" \
    eval 'failure_with_message && err_has "already exists" && cmp -s "$WORK/alice.key" "$WORK/alice.key.orig"'
cc keygen
check "keygen without -o is a usage error" usage_error
cc keygen -o "$WORK/bob"

pipe_rc=0
"$CACHECTL" -s "$SRC" export --sign "$WORK/alice.key" 2>"$WORK/export.err" |
    "$CACHECTL" -s "$WORK/dst" import --trust "$WORK/alice.pub" - >"$OUT" 2>"$ERR" || pipe_rc=$?
rc=$pipe_rc
check "export --sign piped into import --trust imports every record" \
    eval 'status_is 0 && out_has "9 added" && out_has "signed by key [0-9a-f]{16}, the trusted key" &&
          grep -q "signed with key" "$WORK/export.err"'
cc -s "$WORK/dst" show "${build:0:12}"
check "the imported build is in the target store" status_is 0

cc -s "$SRC" export -o "$WORK/unsigned.kcb"
cc -s "$SRC" export --sign "$WORK/bob.key" -o "$WORK/bob.kcb"
cc -s "$WORK/refused1" import --trust "$WORK/alice.pub" "$WORK/unsigned.kcb"
check "import --trust refuses an unsigned bundle with a message" \
    eval 'failure_with_message && err_has "not signed" && err_has "nothing was imported"'
cc -s "$WORK/refused1" show "${build:0:12}"
check "nothing of the refused bundle is in the store" eval 'status_is 1'
cc -s "$WORK/refused2" import --trust "$WORK/alice.pub" "$WORK/bob.kcb"
check "import --trust refuses a bundle signed by another key" \
    eval 'failure_with_message && err_has "not the trusted key"'

KCACHE_TRUST=$WORK/alice.pub cc -s "$WORK/refused3" import "$WORK/unsigned.kcb"
check "KCACHE_TRUST is honoured when --trust is not given" \
    eval 'failure_with_message && err_has "not signed" && err_has "KCACHE_TRUST"'
KCACHE_TRUST=$WORK/alice.pub cc -s "$WORK/refused4" import "$WORK/bob.kcb"
check "KCACHE_TRUST refuses another key's bundle" \
    eval 'failure_with_message && err_has "not the trusted key"'
KCACHE_TRUST=$WORK/absent.pub cc -s "$WORK/refused5" import "$WORK/unsigned.kcb"
check "an unreadable trusted key refuses the import instead of trusting nothing" \
    eval 'failure_with_message && err_has "cannot read key file"'
KCACHE_TRUST=$WORK/alice.pub cc -s "$WORK/dst2" --json import "$WORK/bob.kcb" --trust "$WORK/bob.pub"
check "--trust takes precedence over KCACHE_TRUST" \
    eval 'status_is 0 && json_ok "d[\"added\"] == 9 and d[\"trusted\"] and len(d[\"signed_by\"]) == 16"'

cc -s "$WORK/refused6" import --trust "$WORK/alice.key" "$WORK/unsigned.kcb"
check "import --trust refuses a secret key file, saying so and where the public one is" \
    eval 'failure_with_message && err_has "alice.key is a SECRET key; trust takes the public key, NAME.pub" && err_has "keygen" && [ ! -e "$WORK/refused6/data.mdb" ]'
KCACHE_TRUST=$WORK/alice.key cc -s "$WORK/refused7" --json import "$WORK/unsigned.kcb"
check "and so does KCACHE_TRUST (--json: the error document)" \
    eval 'status_is 1 && json_ok "\"SECRET key\" in d[\"error\"][\"message\"] and \"KCACHE_TRUST\" in d[\"error\"][\"message\"]"'

cc -s "$WORK/dst3" import "$WORK/bob.kcb"
check "a signed bundle imports without a trusted key, its signature checked" \
    eval 'status_is 0 && out_has "verified; no trusted key configured"'

cc -s "$SRC" export --sign "$WORK/alice.pub" -o "$WORK/x.kcb"
check "export --sign refuses a public key" \
    eval 'failure_with_message && err_has "holds a public key" && [ ! -e "$WORK/x.kcb" ]'
chmod 644 "$WORK/alice.key"
cc -s "$SRC" export --sign "$WORK/alice.key" -o "$WORK/x.kcb"
check "export --sign refuses a secret key that others can read" \
    eval 'failure_with_message && err_has "chmod 600"'
cc -s "$WORK/refused8" import --trust "$WORK/alice.key" "$WORK/unsigned.kcb"
check "import --trust of a secret key that others can read: still 'a SECRET key'" \
    eval 'failure_with_message && err_has "is a SECRET key"'

cli_finish
