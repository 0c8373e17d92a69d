#!/usr/bin/env bash
# The README's second command: build and run every test.
#   0. lint: clang-format (scripts/check-format.sh);
#   1. a normal build: unit, CLI and integration tests (the Triton import
#      test with the venvs of scripts/venv.sh), fuzz corpus replays,
#      the layer and export checks, the installed-package test, the Python
#      package's tests (label python; only here: the sanitizer and fuzz
#      builds do not register them, as an instrumented libkcache.so cannot be
#      loaded into Python);
#   2. the same suite built with AddressSanitizer + UndefinedBehaviorSanitizer;
#   3. the tests labelled `threaded`, built with ThreadSanitizer;
#   4. each libFuzzer target for a short bounded time (clang);
#   5. the README's Dockerfile (scripts/docker-build-check.sh: with Docker if
#      an engine runs here, else its steps on this machine).
# Every build uses -Werror (KC_WERROR). GPU tests (ctest label `gpu`) are
# skipped, visibly, without a device. KC_TEST_QUICK=1 runs steps 0 and 1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="$(nproc)"

scripts/deps.sh
# Real Triton for cli_test_import_triton; without it (offline) that test
# is skipped, visibly.
scripts/venv.sh || echo "kcache: warning: scripts/venv.sh failed; the Triton import test will be skipped" >&2

status=0
echo "== lint: clang-format =="
scripts/check-format.sh || status=1

run_suite() {
  local dir="$1"; shift
  cmake -S . -B "$dir" -DKC_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j"$jobs"
  ctest --test-dir "$dir" --output-on-failure -j"$jobs" || status=1
}

echo "== tests: default build =="
run_suite build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo

if [ "${KC_TEST_QUICK:-0}" != 1 ]; then
  echo "== tests: ASan + UBSan build =="
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    run_suite build-asan -DCMAKE_BUILD_TYPE=Debug -DKC_SANITIZE=address,undefined

  echo "== tests: ThreadSanitizer build, tests labelled threaded =="
  cmake -S . -B build-tsan -DKC_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DKC_SANITIZE=thread >/dev/null
  cmake --build build-tsan -j"$jobs" --target kc_threaded_tests
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    ctest --test-dir build-tsan --output-on-failure -L threaded || status=1

  echo "== fuzz: each target for ${KC_FUZZ_SECONDS:-20} s =="
  cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DKC_BUILD_FUZZ=ON -DKC_BUILD_TESTS=OFF \
    -DKC_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build-fuzz -j"$jobs"
  scripts/fuzz.sh build-fuzz "${KC_FUZZ_SECONDS:-20}" || status=1

  echo "== the README's Dockerfile =="
  scripts/docker-build-check.sh || status=1
fi

exit $status
