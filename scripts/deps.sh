#!/usr/bin/env bash
# Installs the Debian packages kcache needs to build and test, if any are
# missing. Safe to run again: it does nothing when everything is there.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  liblmdb-dev libzstd-dev libxxhash-dev libcmocka-dev libjansson-dev
  libsodium-dev libhiredis-dev
  clang libclang-rt-14-dev    # libFuzzer targets and sanitizer builds
  clang-format                # scripts/check-format.sh (CI fails on a diff)
  python3                     # CLI tests parse --json output with it
  python3-venv                # scripts/venv.sh: Triton for the import test
  lmdb-utils redis-server
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "kcache: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# The CUDA toolkit (NVRTC and headers) is not a Debian package here: it is
# expected in /usr/local/cuda (or $CUDA_HOME).
cuda="${CUDA_HOME:-/usr/local/cuda}"
if [ ! -e "$cuda/include/nvrtc.h" ]; then
  echo "kcache: warning: no CUDA toolkit in $cuda; the launcher will not build" >&2
fi
