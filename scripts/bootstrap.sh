#!/usr/bin/env bash
# The README's first command: install what is needed, build, and run the
# main job (the demo) on the default local store ($KCACHE_DIR, else
# $XDG_CACHE_HOME/kcache, else ~/.cache/kcache).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"

echo
echo "== kcache demo (first run compiles; run it again to see hits) =="
build/tools/kcache_demo "$@"
echo
build/tools/cachectl stats
