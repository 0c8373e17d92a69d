#!/usr/bin/env bash
# GPU: every demo kernel matches its CPU reference after a cold run (compile,
# tune, publish) and after a warm run in a fresh process, and the warm run
# compiles nothing and tunes nothing (--expect-warm fails otherwise).
# Exits 77 (skipped) when there is no CUDA driver or device.
set -uo pipefail
demo="${KC_DEMO:?KC_DEMO must point to kcache_demo}"
tmp="$(mktemp -d "${KC_TEST_TMP:-/tmp}/gpu-demo.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

"$demo" --probe-device >/dev/null 2>&1
case $? in
  0) ;;
  77) echo "SKIP: no CUDA driver or device"; exit 77 ;;
  *) echo "demo --probe-device failed"; exit 1 ;;
esac

echo "== cold run =="
"$demo" --store "$tmp/store" --check || { echo "FAIL: cold run"; exit 1; }
echo "== warm run, fresh process =="
"$demo" --store "$tmp/store" --check --expect-warm || { echo "FAIL: warm run"; exit 1; }
echo "1 passed, 0 failed"
