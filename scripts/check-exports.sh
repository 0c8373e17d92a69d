#!/usr/bin/env bash
# Checks that a shared library exports the kc_ API and nothing else: no
# kc__ internal, no symbol of a library it links, no stray helper.
#   scripts/check-exports.sh build/libkcache.so
# Also checks that a few calls every user needs are there, so that an
# empty export list does not pass. ctest runs it as check_exports (lint).
set -euo pipefail

lib=${1:?usage: check-exports.sh LIBRARY}
[ -f "$lib" ] || { echo "check-exports: no such file: $lib" >&2; exit 1; }

syms=$(nm -D --defined-only "$lib" | awk 'NF >= 3 { print $3 }' | sort -u)
bad=$(printf '%s\n' "$syms" | grep -v -E '^kc_[a-z0-9]' || true)
internal=$(printf '%s\n' "$syms" | grep -E '^kc__' || true)
bad=$(printf '%s\n%s\n' "$bad" "$internal" | grep -v '^$' | sort -u || true)
status=0
if [ -n "$bad" ]; then
  echo "check-exports: $lib exports names outside the public kc_ API:" >&2
  printf '%s\n' "$bad" | sed 's/^/  /' >&2
  status=1
fi
for want in kc_version kc_version_number kc_strerror kc_store_open kc_store_close; do
  printf '%s\n' "$syms" | grep -x "$want" >/dev/null || {
    echo "check-exports: $lib does not export $want" >&2
    status=1
  }
done
n=$(printf '%s\n' "$syms" | grep -c . || true)
[ $status -eq 0 ] && echo "check-exports: $lib exports $n symbols, all kc_"
exit $status
