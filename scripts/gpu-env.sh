# Sourced by the scripts that run on the GPU machine (gpu-run.sh,
# gpu-firstcall-ab.sh, gpu-firstcall-profile.sh, gpu-scaling.sh,
# gpu-resident.sh), from the
# carried working tree's root: the build in
# build-gpu/ has absolute paths, so the checkout is made reachable at the
# path it was built in and entered; its copied libraries and CUDA's are put
# on the library path, and the default store is a fresh directory.
src="$(cat build-gpu/deps/SOURCE_DIR)"
if [ "$PWD" != "$src" ]; then
  mkdir -p "$(dirname "$src")"
  [ -e "$src" ] || ln -s "$PWD" "$src"
fi
cd "$src" || exit 1
export LD_LIBRARY_PATH="$src/build-gpu/deps:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export KCACHE_DIR="$(mktemp -d)/kcache"

# kc_gpu_log NAME: the rest of the script's output also goes to
# $OUT/NAME (OUT: the device tool's folder; ./gpu-out elsewhere), headed by
# the date, the commit, the GPU, the CPU count and model, the kernel and its
# transparent huge page mode (with "always", a process's first touch of a
# fresh 2 MiB-aligned heap or stack region zeroes 2 MiB: a host fact that
# could make a first call's CPU parts slower there than on the CPU box,
# which runs "madvise").
kc_gpu_log() {
  out="${OUT:-$PWD/gpu-out}"
  mkdir -p "$out"
  exec > >(tee -a "$out/$1") 2>&1
  echo "date $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git rev-parse --short HEAD 2>/dev/null)"
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  nproc
  lscpu 2>/dev/null | grep -E '^Model name' || true
  echo "kernel $(uname -r); THP $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)"
}
