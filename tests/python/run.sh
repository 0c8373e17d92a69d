#!/usr/bin/env bash
# The Python package's tests (ctest label `python`).
#   run.sh unit PYTHON     python -m unittest over python/tests with PYTHON (the
#                          source tree's .venv by default), against the library
#                          of this build (KCACHE_LIBRARY, CACHECTL and KC_SIZES
#                          come from ctest)
#   run.sh install PYTHON  pip install ./python into a clean virtualenv made by
#                          PYTHON, offline, then import it and open a store with
#                          the library the package carries
# Exits 77 (skipped, with a SKIP line) without a Python to run them with.
set -euo pipefail
mode="$1" py="$2"
src="$(cd "$(dirname "$0")/../.." && pwd)"

if [ ! -x "$py" ]; then
  echo "SKIP: no Python at $py (run scripts/venv.sh, or set KC_VENV_PYTHON)"
  exit 77
fi

case "$mode" in
unit)
  cd "$src"
  exec "$py" -m unittest discover -s python/tests -t python/tests -v
  ;;
install)
  work="${KC_TEST_TMP:-/tmp}/python-install"
  mkdir -p "$work"
  # One run at a time in this directory (two ctest runs of one build tree
  # share it): the venv is remade and the CMake tree reused.
  exec 9>"$work/lock"
  flock 9
  rm -rf "$work/venv" "$work/store"
  "$py" -m venv "$work/venv"
  vpy="$work/venv/bin/python"
  # Building the wheel needs setuptools with bdist_wheel (setuptools 70.1 or
  # later, or the wheel package); a fresh venv of Python 3.11 has an older
  # setuptools alone. Take them from PyPI if they are missing, else skip.
  if ! "$vpy" -c 'import setuptools, wheel' 2>/dev/null &&
     ! "$vpy" -c 'import setuptools.command.bdist_wheel' 2>/dev/null; then
    if ! "$vpy" -m pip install -q --disable-pip-version-check --timeout 30 setuptools wheel; then
      echo "SKIP: the clean venv has no setuptools with bdist_wheel and PyPI is unreachable"
      exit 77
    fi
  fi
  # Offline from here on; the CMake tree is kept between runs.
  KCACHE_BUILD_DIR="$work/cmake" "$vpy" -m pip install -q --disable-pip-version-check \
    --no-index --no-build-isolation "$src/python"
  cd "$work"
  env -u KCACHE_LIBRARY -u PYTHONPATH "$vpy" - <<'PY'
import os
import kcache

lib = kcache.library_path()
assert lib.endswith(os.path.join("site-packages", "kcache", "libkcache.so.0")), lib
with kcache.Store("store") as s:
    assert s.stats().format_version == 1
    assert s.ls() == []
print("installed kcache opens a store with its own library:", lib)
PY
  ;;
*)
  echo "usage: run.sh unit|install PYTHON" >&2
  exit 2
  ;;
esac
