#!/usr/bin/env bash
# The README's second command: build and run every test.
#   1. a normal build: unit, CLI and integration tests, fuzz corpus replays;
#   2. the same suite built with AddressSanitizer + UndefinedBehaviorSanitizer;
#   3. the threaded tests built with ThreadSanitizer;
#   4. each libFuzzer target for a short bounded time (clang).
# GPU tests (ctest label `gpu`) are skipped, visibly, without a device.
# Set KC_TEST_QUICK=1 to run step 1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="$(nproc)"

scripts/deps.sh

status=0
run_suite() {
  local dir="$1"; shift
  cmake -S . -B "$dir" "$@" >/dev/null
  cmake --build "$dir" -j"$jobs"
  ctest --test-dir "$dir" --output-on-failure -j"$jobs" || status=1
}

echo "== tests: default build =="
run_suite build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo

if [ "${KC_TEST_QUICK:-0}" != 1 ]; then
  echo "== tests: ASan + UBSan build =="
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    run_suite build-asan -DCMAKE_BUILD_TYPE=Debug -DKC_SANITIZE=address,undefined

  echo "== tests: ThreadSanitizer build, threaded tests =="
  cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKC_SANITIZE=thread >/dev/null
  cmake --build build-tsan -j"$jobs" --target test_store test_blob test_launch_device \
    test_launch_flow test_launch_race test_remote test_launch_remote
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    ctest --test-dir build-tsan --output-on-failure \
    -R '^(test_store|test_blob|test_launch_device|test_launch_flow|test_launch_race|test_remote|test_launch_remote)$' || status=1

  echo "== fuzz: each target for ${KC_FUZZ_SECONDS:-20} s =="
  cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DKC_BUILD_FUZZ=ON -DKC_BUILD_TESTS=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build-fuzz -j"$jobs"
  scripts/fuzz.sh build-fuzz "${KC_FUZZ_SECONDS:-20}" || status=1
fi

exit $status
