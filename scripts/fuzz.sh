#!/usr/bin/env bash
# Runs every libFuzzer target in BUILD_DIR for SECONDS each, on a scratch
# copy of its seed corpus, and prints one line per target with its
# executions. Exits non-zero if any target finds a crash.
#   scripts/fuzz.sh build-fuzz 20
set -uo pipefail
cd "$(dirname "$0")/.."
build="${1:-build-fuzz}"
seconds="${2:-20}"
status=0
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for bin in "$build"/fuzz/fuzz_*; do
  [ -x "$bin" ] || continue
  name="$(basename "$bin")"
  short="${name#fuzz_}"
  mkdir -p "$work/$short"
  cp -r "fuzz/corpus/$short/." "$work/$short/" 2>/dev/null || true
  log="$work/$short.log"
  if "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
       -print_final_stats=1 -artifact_prefix="$work/$short-" "$work/$short" >"$log" 2>&1; then
    execs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)"
    [ -n "$execs" ] || execs="$(grep -oE '#[0-9]+' "$log" | tail -1 | tr -d '#')"
    cov="$(grep -oE 'cov: [0-9]+' "$log" | tail -1)"
    echo "fuzz $short: ok, ${execs:-?} executions, ${cov:-cov: ?}"
  else
    echo "fuzz $short: FAILED (artifact and log below)"
    tail -40 "$log"
    mkdir -p fuzz-findings && cp "$work/$short"-* fuzz-findings/ 2>/dev/null || true
    status=1
  fi
done
exit $status
