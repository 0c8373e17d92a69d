#!/usr/bin/env bash
# Builds kcache here for the GPU machine (see docs/GPU.md).
#
# The GPU machine has the CUDA driver, gcc and CMake but not this project's
# Debian libraries (LMDB, cmocka, ...), and no network. So we build here, in
# build-gpu/, and copy the shared libraries it lacks into build-gpu/deps/.
# The device tool then carries build-gpu/ along with the working tree, and
# scripts/gpu-run.sh runs the `gpu` tests, the demo and the benchmarks there.
#
# Binaries keep their absolute paths (CTest files, test scripts), so
# gpu-run.sh links the checkout to the same path on the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-gpu -j"$(nproc)"
mkdir -p build-gpu/deps
for lib in liblmdb.so.0 libcmocka.so.0 libjansson.so.4 libxxhash.so.0 libzstd.so.1 \
           libsodium.so.23 libhiredis.so.0.14; do
  path="$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64/ && !f {print $NF; f = 1}')"
  [ -n "$path" ] && cp -L "$path" build-gpu/deps/
done
pwd > build-gpu/deps/SOURCE_DIR
du -sh build-gpu | awk '{print "build-gpu: " $1}'
