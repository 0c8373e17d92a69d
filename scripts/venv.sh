#!/usr/bin/env bash
# Creates the Python environments the Triton import test compiles real
# kernels with (tests/cli/test_import_triton.sh; no GPU needed):
#   .venv             triton 3.9.0
#   .venv-triton3.6   triton 3.6.0
# Safe to run again: an environment that already has its version is left
# alone. Needs python3-venv (scripts/deps.sh) and access to PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

make_venv() {
  local dir="$1" version="$2" have
  have="$("$dir/bin/python" -c 'import triton; print(triton.__version__)' 2>/dev/null || true)"
  if [ "$have" = "$version" ]; then
    return 0
  fi
  echo "kcache: creating $dir with triton==$version" >&2
  [ -x "$dir/bin/python" ] || python3 -m venv "$dir"
  "$dir/bin/python" -m pip install -q --disable-pip-version-check "triton==$version"
}

make_venv .venv 3.9.0
make_venv .venv-triton3.6 3.6.0
