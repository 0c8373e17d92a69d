#!/usr/bin/env bash
# The installed package, as a user gets it: install a build into a
# temporary prefix, then build and run tests/install/consumer.c against it
#   (a) with pkg-config: kcache (the shared library, run with
#       LD_LIBRARY_PATH) and kcache-static (the archives), also after the
#       prefix is moved (the .pc files are relocatable);
#   (b) with find_package(kcache): kcache::launch + kcache::store (static)
#       and kcache::kcache (shared);
#   (c) with dlopen("PREFIX/LIBDIR/libkcache.so.0") and dlsym("kc_version").
#
#   scripts/test-install.sh BUILD_DIR
#
# ctest runs it as install_package (label install). LIBDIR is whatever
# GNUInstallDirs chose (lib, lib64 or lib/x86_64-linux-gnu): it is found.
# KC_CONSUMER_FLAGS: extra compile and link flags for the programs (the
# -fsanitize=... of a sanitizer build).
set -euo pipefail

build=$(cd "${1:?usage: test-install.sh BUILD_DIR}" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
cc=${CC:-cc}
root=${KC_TEST_TMP:-${TMPDIR:-/tmp}}
mkdir -p "$root"
tmp=$(mktemp -d "$root/install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

step() { echo "== $*"; }
die() { echo "test-install: $*" >&2; exit 1; }

step "cmake --install $build --prefix $tmp/prefix"
cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" ||
  { cat "$tmp/install.log" >&2; die "install failed"; }
so=$(find "$tmp/prefix" -name libkcache.so.0 | head -n 1)
[ -n "$so" ] || die "no libkcache.so.0 under the prefix"
libdir=$(dirname "$so")
rel_libdir=${libdir#"$tmp/prefix/"}
echo "libdir: $rel_libdir"
for f in libkcache.so libkcache.so.0 libkcache_store.a pkgconfig/kcache.pc \
         pkgconfig/kcache-static.pc cmake/kcache/kcacheConfig.cmake; do
  [ -e "$libdir/$f" ] || die "$rel_libdir/$f is not installed"
done
[ -e "$tmp/prefix/include/kcache/version.h" ] || die "include/kcache/version.h is not installed"
[ -e "$tmp/prefix/include/kcache/api.h" ] || die "include/kcache/api.h is not installed"
# the soname carries the major version
objdump -p "$so" | grep "SONAME *libkcache.so.0$" >/dev/null || die "the soname is not libkcache.so.0"

export PKG_CONFIG_PATH="$libdir/pkgconfig"
want=$(pkg-config --modversion kcache)
expect="kcache $want ok"
cflags=(-std=c11 -Wall -Wextra -Wpedantic -Werror)
# A sanitizer build's libraries need the programs built with the same
# sanitizers (ctest passes them in KC_CONSUMER_FLAGS).
read -r -a extra <<<"${KC_CONSUMER_FLAGS:-}"
cflags+=("${extra[@]}")
# A build without the launcher (KC_BUILD_LAUNCHER=OFF) installs the store only.
if [ ! -e "$tmp/prefix/include/kcache/launch.h" ]; then
  echo "no launcher installed: the consumer uses the store only"
  cflags+=(-DKC_CONSUMER_STORE_ONLY)
fi
check_run() { # name, command...: the program must print "kcache VERSION ok"
  local name=$1 out
  shift
  out=$("$@") || die "$name failed"
  printf '%s\n' "$out" | grep "^$expect" >/dev/null || die "$name printed '$out', not '$expect ...'"
  echo "$name: $out"
}

step "(a) pkg-config --cflags --libs kcache (shared)"
# shellcheck disable=SC2046
$cc "${cflags[@]}" "$src/tests/install/consumer.c" -o "$tmp/pc_shared" \
  $(pkg-config --cflags --libs kcache)
LD_LIBRARY_PATH="$libdir" ldd "$tmp/pc_shared" | grep "libkcache.so.0 => $libdir/" >/dev/null ||
  die "pc_shared does not load the installed libkcache.so.0"
LD_LIBRARY_PATH="$libdir" check_run pc_shared "$tmp/pc_shared" "$tmp/store_a"

step "(a) pkg-config --cflags --libs kcache-static (archives)"
# shellcheck disable=SC2046
$cc "${cflags[@]}" "$src/tests/install/consumer.c" -o "$tmp/pc_static" \
  $(pkg-config --cflags --libs kcache-static)
if ldd "$tmp/pc_static" | grep libkcache >/dev/null; then die "pc_static loads a libkcache"; fi
check_run pc_static "$tmp/pc_static" "$tmp/store_a2"

step "(a) the .pc files are relocatable: the prefix moved"
mv "$tmp/prefix" "$tmp/moved"
moved_libdir="$tmp/moved/$rel_libdir"
got=$(PKG_CONFIG_PATH="$moved_libdir/pkgconfig" pkg-config --libs-only-L kcache | tr -d " ")
[ "$(cd "${got#-L}" && pwd)" = "$moved_libdir" ] || die "moved prefix: libdir is $got"
# shellcheck disable=SC2046
$cc "${cflags[@]}" "$src/tests/install/consumer.c" -o "$tmp/pc_moved" \
  $(PKG_CONFIG_PATH="$moved_libdir/pkgconfig" pkg-config --cflags --libs kcache)
LD_LIBRARY_PATH="$moved_libdir" check_run pc_moved "$tmp/pc_moved" "$tmp/store_a3"
mv "$tmp/moved" "$tmp/prefix"

step "(b) find_package(kcache): kcache::launch, kcache::store, kcache::kcache"
cmake -S "$src/tests/install" -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
  -DCMAKE_C_FLAGS="${cflags[*]}" -DCMAKE_EXE_LINKER_FLAGS="${extra[*]}" \
  >"$tmp/cmake.log" 2>&1 ||
  { cat "$tmp/cmake.log" >&2; die "configuring the consumer project failed"; }
cmake --build "$tmp/cmake" >>"$tmp/cmake.log" 2>&1 ||
  { cat "$tmp/cmake.log" >&2; die "building the consumer project failed"; }
if ldd "$tmp/cmake/consumer_static" | grep libkcache >/dev/null; then
  die "consumer_static (kcache::launch, kcache::store) loads a libkcache"
fi
check_run cmake_static "$tmp/cmake/consumer_static" "$tmp/store_b1"
# the imported target carries the library's full path: no LD_LIBRARY_PATH
ldd "$tmp/cmake/consumer_shared" | grep "libkcache.so.0 => $libdir/" >/dev/null ||
  die "consumer_shared (kcache::kcache) does not load the installed libkcache.so.0"
check_run cmake_shared "$tmp/cmake/consumer_shared" "$tmp/store_b2"

step "(c) dlopen($rel_libdir/libkcache.so.0), dlsym(kc_version)"
$cc "${cflags[@]}" "$src/tests/install/dlopen_version.c" -o "$tmp/dl" -ldl
out=$("$tmp/dl" "$libdir/libkcache.so.0") || die "dlopen_version failed"
printf '%s\n' "$out" | grep "^kcache $want (" >/dev/null || die "dlopen_version printed '$out'"
echo "dlopen: $out"

echo "test-install: ok"
