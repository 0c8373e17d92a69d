#!/usr/bin/env bash
# cachectl remote against a real redis-server on loopback (with a
# password): populate on a CPU-only "CI machine" pushes its builds with
# KCACHE_REMOTE set; `remote stats` and `remote ls` see them (filters);
# `remote pull` brings them into an empty store, checked; a value planted
# with redis-cli that is not a valid record is refused and nothing bad is
# stored; `remote push` copies a store under another prefix; a wrong
# password and rediss:// fail with messages that say so.
set -euo pipefail

source "$(dirname "$0")/lib.sh"
cli_init remote
unset KCACHE_REMOTE KCACHE_REMOTE_PREFIX KCACHE_REMOTE_TTL KCACHE_REMOTE_QUEUE

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
PW=fleet-secret
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
    --requirepass "$PW" --loglevel warning >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
trap 'kill $REDIS_PID 2>/dev/null || true; wait $REDIS_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do
    redis-cli -p "$PORT" -a "$PW" --no-auth-warning ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
done
URL="redis://:$PW@127.0.0.1:$PORT"
rcli() { redis-cli -p "$PORT" -a "$PW" --no-auth-warning "$@"; }

cat >"$WORK/manifest.json" <<'EOF'
{
  "version": 1,
  "kernels": [
    {
      "name": "rem.scale",
      "source": "extern \"C\" __global__ void scale(float *x, float s, int n)\n{\n    int i = blockIdx.x * BLOCK + threadIdx.x;\n    if (i < n)\n        x[i] *= s;\n}\n",
      "entry": "scale",
      "params": {"BLOCK": [128, 256, 512]},
      "args": [
        {"name": "x", "type": "f32*", "access": "inout"},
        {"name": "s", "type": "f32"},
        {"name": "n", "type": "i32"}
      ],
      "grid": ["cdiv(n, BLOCK)"],
      "block": ["BLOCK"]
    },
    {
      "name": "rem.add",
      "source": "extern \"C\" __global__ void add(const float *a, float *b, int n)\n{\n    int i = blockIdx.x * BLOCK + threadIdx.x;\n    if (i < n)\n        b[i] += a[i];\n}\n",
      "entry": "add",
      "params": {"BLOCK": [128, 256]},
      "args": [
        {"name": "a", "type": "f32*", "access": "in"},
        {"name": "b", "type": "f32*", "access": "inout"},
        {"name": "n", "type": "i32"}
      ],
      "grid": ["cdiv(n, BLOCK)"],
      "block": ["BLOCK"]
    }
  ]
}
EOF

# The CI machine: no GPU, KCACHE_REMOTE set.
rc=0
KCACHE_REMOTE=$URL "$CACHECTL" -s "$WORK/ci" populate --manifest "$WORK/manifest.json" \
    --arch sm_90 >"$OUT" 2>"$ERR" || rc=$?
check "populate with KCACHE_REMOTE succeeds" eval 'status_is 0 && out_has "5 compiled"'
cc -s "$WORK/ci" stats --json
check "the CI store counts 5 remote pushes and no drops" \
    eval 'json_ok "d[\"counters\"][\"remote_pushes\"] == 5 and d[\"counters\"][\"remote_drops\"] == 0"'
check "redis holds 5 builds and their 5 blobs" \
    eval '[ "$(rcli --scan --pattern "kcache:1:build:*" | wc -l)" -eq 5 ] && [ "$(rcli --scan --pattern "kcache:1:blob:*" | wc -l)" -eq 5 ]'

cc remote stats --url "$URL" --json
check "remote stats: the server is up, 5 builds and 5 blobs with their bytes" \
    eval 'json_ok "d[\"servers\"][0][\"up\"] and d[\"kinds\"][\"build\"][\"records\"] == 5 and d[\"kinds\"][\"blob\"][\"records\"] == 5 and d[\"kinds\"][\"blob\"][\"bytes\"] > 0"'
rc=0
KCACHE_REMOTE=$URL "$CACHECTL" remote stats >"$OUT" 2>"$ERR" || rc=$?
check "remote stats reads KCACHE_REMOTE and prints a line per kind" \
    eval 'status_is 0 && out_has "^build +5 records" && out_has "redis [0-9]"'

cc remote ls --url "$URL" --kind build --name scale --json
check "remote ls --kind build --name scale lists 3 builds for sm_90" \
    eval 'json_ok "len(d) == 3 and all(r[\"arch\"] == \"sm_90\" and r[\"name\"] == \"scale\" for r in d)"'
cc remote ls --url "$URL" --arch sm_80
check "remote ls --arch sm_80 lists nothing" eval 'status_is 0 && out_empty'

# A GPU machine: an empty store pulls everything, checked.
cc -s "$WORK/gpu" remote pull --url "$URL" --json
check "remote pull brings the 5 builds in" \
    eval 'status_is 0 && json_ok "d[\"pulled\"] == 5 and d[\"refused\"] == 0"'
cc -s "$WORK/gpu" ls --kind build --json
check "the pulled store lists 5 builds" eval 'json_ok "d[\"count\"] == 5"'
cc -s "$WORK/gpu" verify
check "the pulled store verifies" eval 'status_is 0'

# An untrusted or broken writer: a build key whose value is not a record,
# and another build's blob replaced by a third build's blob.
KEYS=($(rcli --scan --pattern "kcache:1:build:*" | sort))
rcli set "${KEYS[0]}" "not a record" >/dev/null
cc -s "$WORK/ci" show "${KEYS[1]##*:}" --json
B1=$(jget 'd["blob"]["key"]')
cc -s "$WORK/ci" show "${KEYS[2]##*:}" --json
B2=$(jget 'd["blob"]["key"]')
rcli copy "kcache:1:blob:$B2" "kcache:1:blob:$B1" replace >/dev/null
cc -s "$WORK/fresh" remote pull --url "$URL" --json
check "remote pull refuses the 2 damaged builds, pulls the 3 others, and fails" \
    eval 'status_is 1 && json_ok "d[\"refused\"] == 2 and d[\"pulled\"] == 3"'
check "the refusals name the builds and say why" \
    eval 'err_has "${KEYS[0]##*:}.*does not decode" && err_has "${KEYS[1]##*:}.*failed its checks"'
cc -s "$WORK/fresh" verify
check "nothing damaged was stored" eval 'status_is 0'

# push: from the CI store, under another prefix.
rc=0
KCACHE_REMOTE_PREFIX=p2: "$CACHECTL" -s "$WORK/ci" remote push --url "$URL" --kind build \
    --name add >"$OUT" 2>"$ERR" || rc=$?
check "remote push --name add pushes 2 builds" eval 'status_is 0 && out_has "^pushed 2 records"'
check "they are under the prefix" \
    eval '[ "$(rcli --scan --pattern "p2:kcache:1:build:*" | wc -l)" -eq 2 ]'

# Signatures: with KCACHE_TRUST, unsigned values are refused; a push signed
# with KCACHE_REMOTE_SIGN_KEY (under its own prefix) pulls, and ls names
# the signer.
cc keygen -o "$WORK/fleet"
check "keygen makes the fleet's key pair" eval 'status_is 0'
rc=0
KCACHE_TRUST=$WORK/fleet.pub "$CACHECTL" -s "$WORK/trusting" remote pull --url "$URL" \
    --kind build --name add --json >"$OUT" 2>"$ERR" || rc=$?
# (An untrusted value is not looked at, so --name cannot select among them.)
check "with KCACHE_TRUST the unsigned builds are refused as untrusted" \
    eval 'status_is 1 && json_ok "d[\"refused\"] == 5 and d[\"pulled\"] == 0" && err_has "unsigned, and a trust key is set"'
rc=0
KCACHE_REMOTE_PREFIX=signed: KCACHE_REMOTE_SIGN_KEY=$WORK/fleet.key "$CACHECTL" -s "$WORK/ci" \
    remote push --url "$URL" >"$OUT" 2>"$ERR" || rc=$?
check "a signed push of the CI store" eval 'status_is 0 && out_has "^pushed 5 records"'
rc=0
KCACHE_REMOTE_PREFIX=signed: KCACHE_TRUST=$WORK/fleet.pub "$CACHECTL" -s "$WORK/trusting" \
    remote pull --url "$URL" --json >"$OUT" 2>"$ERR" || rc=$?
check "with KCACHE_TRUST the signed builds pull" \
    eval 'status_is 0 && json_ok "d[\"pulled\"] == 5 and d[\"refused\"] == 0"'
rc=0
KCACHE_REMOTE_PREFIX=signed: "$CACHECTL" remote ls --url "$URL" --json >"$OUT" 2>"$ERR" || rc=$?
check "remote ls names the signer of every build" \
    eval 'json_ok "len(d) == 5 and all(r[\"signer\"] and len(r[\"signer\"]) == 16 for r in d)"'

cc remote stats --url "redis://:wrong@127.0.0.1:$PORT"
check "a wrong password: AUTH failed" eval 'status_is 1 && out_has "AUTH failed"'
cc remote stats --url "rediss://127.0.0.1:$PORT"
check "rediss:// is refused with a message about TLS" eval 'failure_with_message && err_has TLS'
cc remote ls
check "no remote is a usage error" eval 'usage_error'

cli_finish
