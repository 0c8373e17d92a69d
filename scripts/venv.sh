#!/usr/bin/env bash
# Creates the Python environments the Triton import test compiles real
# kernels with (tests/cli/test_import_triton.sh; no GPU needed):
#   .venv             triton 3.9.0
#   .venv-triton3.6   triton 3.6.0
# and installs the Python package (python/, with the libkcache.so it builds)
# into .venv for the Python tests (tests/python/run.sh).
# Safe to run again: an environment that already has its version is left
# alone, and the package is reinstalled only when its sources or the C
# sources changed (a hash of them is kept in .venv/.kcache-stamp). Needs
# python3-venv (scripts/deps.sh) and access to PyPI.
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

# The kcache package, built against this tree. --no-build-isolation: the
# build uses .venv's own setuptools and wheel, so a reinstall needs no
# network, and the CMake tree (build-python/) is kept, so it only rebuilds
# what changed.
install_kcache() {
  local stamp=.venv/.kcache-stamp hash
  hash="$(find CMakeLists.txt cmake store launcher python/kcache python/setup.py \
            python/pyproject.toml -type f ! -name '*.pyc' -print0 |
          sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ] &&
     .venv/bin/python -c 'import kcache' 2>/dev/null; then
    return 0
  fi
  echo "kcache: installing the Python package into .venv" >&2
  .venv/bin/python -c 'import setuptools, wheel' 2>/dev/null ||
    .venv/bin/python -m pip install -q --disable-pip-version-check setuptools wheel
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-build-isolation \
    --no-deps --force-reinstall ./python
  echo "$hash" >"$stamp"
}

install_kcache
