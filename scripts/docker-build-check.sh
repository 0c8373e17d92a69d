#!/usr/bin/env bash
# Checks that docker/Dockerfile builds an image that works.
#
# With a Docker engine (docker info answers): builds the image from a copy
# of the working tree plus a bundle (kernels.kcb), then runs cachectl in it.
#
# Without one: runs the same steps on this machine, in a temporary
# directory, parsed from the Dockerfile itself so that the two cannot drift:
#   - each stage's `apt-get install` package list: every package must be
#     installed (KC_DOCKER_CHECK_INSTALL=1 installs missing ones with
#     apt-get). A run-time library whose package name differs in this
#     distribution (the image is Ubuntu; libhiredis1.1.0 here may be
#     libhiredis0.14) is accepted when a package of the same name stem is
#     installed, and said so;
#   - every other RUN, COPY and ENV line, in order, with the image's paths
#     (/src/kcache, /build, /opt/kcache, /tmp, /var/cache/kcache) mapped into
#     the temporary directory (the sources are read where they are);
#   - then the image's check: cachectl reads the imported store through
#     KCACHE_PATH, whose image layer is read-only.
#
#   scripts/docker-build-check.sh [BUNDLE]
#
# BUNDLE is the kernels.kcb to bake in (default: a valid bundle from the
# fuzz corpus). KC_DOCKER_CHECK_LOCAL=1 skips Docker even if it runs.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
dockerfile=$src/docker/Dockerfile
bundle=${1:-$src/fuzz/corpus/bundle/valid-tuned}
[ -f "$bundle" ] || { echo "docker-build-check: no bundle $bundle" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kcache-docker.XXXXXX")
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT

say() { echo "docker-build-check: $*"; }
die() { echo "docker-build-check: $*" >&2; exit 1; }

# The Dockerfile as "STAGE<TAB>INSTRUCTION<TAB>ARGUMENTS", continuation lines
# joined, comments dropped; STAGE counts FROM lines from 1.
parse() {
  awk '
    /^[ \t]*#/ && cont == "" { next }
    {
      line = $0
      if (line ~ /\\[ \t]*$/) { sub(/\\[ \t]*$/, " ", line); cont = cont line; next }
      line = cont line; cont = ""
      if (line ~ /^[ \t]*$/) next
      sub(/^[ \t]+/, "", line)
      instr = toupper(line); sub(/[ \t].*/, "", instr)
      args = line; sub(/^[^ \t]+[ \t]+/, "", args); gsub(/[ \t]+/, " ", args)
      if (instr == "FROM") stage++
      printf "%d\t%s\t%s\n", stage, instr, args
    }' "$dockerfile"
}

# The README shows lines of the Dockerfile: they must be in it, as shown.
readme_lines=$(awk '/^```dockerfile/ { on = 1; next } /^```/ { on = 0 } on && !/^#/' "$src/README.md")
[ -n "$readme_lines" ] || die "README.md shows no dockerfile block"
while IFS= read -r line; do
  grep -qxF -- "$line" "$dockerfile" || die "README.md shows a line docker/Dockerfile lacks: $line"
done <<<"$readme_lines"

# ---- with a Docker engine ---------------------------------------------------
if [ "${KC_DOCKER_CHECK_LOCAL:-0}" != 1 ] && command -v docker >/dev/null &&
   docker info >/dev/null 2>&1; then
  say "building $dockerfile with docker"
  ctx=$tmp/context
  mkdir -p "$ctx"
  (cd "$src" && git ls-files -z --cached --others --exclude-standard |
     xargs -0 -I{} cp --parents {} "$ctx/" 2>/dev/null) || true
  cp "$bundle" "$ctx/kernels.kcb"
  tag=kcache-docker-check:$$
  docker build -f "$dockerfile" -t "$tag" "$ctx"
  docker run --rm "$tag" cachectl version
  docker run --rm "$tag" sh -c 'cachectl -s /opt/kcache/store verify && cachectl ls | grep "^tuning"'
  docker image rm "$tag" >/dev/null
  say "ok (docker)"
  exit 0
fi

# ---- without one: the same steps on this machine ---------------------------
say "no Docker engine here: running the Dockerfile's steps on this machine in $tmp"
# shellcheck disable=SC1091
. /etc/os-release 2>/dev/null || true
root=$tmp/root
mkdir -p "$root/build" "$root/opt/kcache" "$root/tmp" "$root/var/cache/kcache"
map_paths() { # the image's paths in a command -> this machine's (in two
  # passes, so that a mapped path is never mapped again)
  sed -E -e 's#(^|[ =:"])/src/kcache#\1@KC_SRC@#g' -e 's#(^|[ =:"])/opt/kcache#\1@KC_ROOT@/opt/kcache#g' \
      -e 's#(^|[ =:"])/build([/ "]|$)#\1@KC_ROOT@/build\2#g' -e 's#(^|[ =:"])/tmp/#\1@KC_ROOT@/tmp/#g' \
      -e 's#(^|[ =:"])/var/cache/kcache#\1@KC_ROOT@/var/cache/kcache#g' |
    sed -e "s#@KC_SRC@#$src#g" -e "s#@KC_ROOT@#$root#g"
}
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

check_packages() { # stage, apt-get command line
  local stage=$1 pkgs=() missing=() p stem other
  read -r -a words <<<"$(printf '%s\n' "$2" | sed -e 's/.*apt-get install//' -e 's/&&.*//')"
  for p in "${words[@]}"; do
    case $p in -*) ;; *) pkgs+=("$p") ;; esac
  done
  say "stage $stage packages: ${pkgs[*]}"
  for p in "${pkgs[@]}"; do
    installed "$p" && continue
    if apt-cache show "$p" >/dev/null 2>&1; then
      missing+=("$p")
      continue
    fi
    # Not in this distribution's archive: a library renamed by its soname.
    stem=$(printf '%s' "$p" | sed -E 's/[0-9][0-9.]*(t64)?$//')
    other=$(dpkg-query -W -f='${Package} ${Status}\n' "${stem}*" 2>/dev/null |
            awk '/install ok installed/ { print $1 }' | grep -E "^${stem}[0-9]" | head -n 1 || true)
    [ -n "$other" ] || die "package $p is not in ${PRETTY_NAME:-this system}'s archive and nothing like it is installed"
    say "  $p: not in ${PRETTY_NAME:-this system}'s archive; $other, installed, stands for it"
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "${KC_DOCKER_CHECK_INSTALL:-0}" = 1 ]; then
    apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"
  else
    die "missing packages: ${missing[*]} (apt-get install them, or set KC_DOCKER_CHECK_INSTALL=1)"
  fi
}

steps=0
while IFS=$'\t' read -r stage instr args; do
  case $instr in
    FROM) say "stage $stage: FROM $args" ;;
    RUN)
      if [[ $args == *"apt-get install"* ]]; then
        check_packages "$stage" "$args"
      else
        cmd=$(printf '%s\n' "$args" | map_paths)
        say "RUN $cmd"
        (cd "$tmp" && bash -euo pipefail -c "$cmd") || die "RUN failed: $args"
      fi
      steps=$((steps + 1))
      ;;
    COPY)
      case $args in
        --from=*) say "COPY $args: the same directory here" ;;
        ". /src/kcache") say "COPY $args: the sources are read in place" ;;
        "kernels.kcb "*)
          dst=$(printf '%s\n' "${args#kernels.kcb }" | map_paths)
          cp "$bundle" "$dst"
          say "COPY $bundle -> $dst"
          ;;
        *) die "COPY $args: this check does not know how to run it; teach it" ;;
      esac
      ;;
    ENV)
      kv=$(printf '%s\n' "$args" | map_paths)
      name=${kv%%=*}
      value=$(eval "printf '%s' \"${kv#*=}\"")
      export "$name=$value"
      say "ENV $name=$value"
      ;;
    *) die "$instr: this check does not know how to run it; teach it" ;;
  esac
done < <(parse)
[ "$steps" -ge 4 ] || die "only $steps RUN steps found in $dockerfile"

# What the image does when it runs: hits come through KCACHE_PATH, whose
# image layer is read-only; the writable layer is created on first use.
say "the image's check: cachectl through KCACHE_PATH=$KCACHE_PATH"
[ "$(command -v cachectl)" = "$root/opt/kcache/bin/cachectl" ] || die "cachectl is not the installed one"
cachectl version
cachectl -s "$root/opt/kcache/store" verify
ls_out=$(cachectl ls) # the layers of KCACHE_PATH
printf '%s\n' "$ls_out"
printf '%s\n' "$ls_out" | grep -q '^tuning' || die "the image's store holds no tuning"
[ ! -w "$root/opt/kcache/store" ] || [ "$(id -u)" = 0 ] || die "the image's store is writable"
missing_libs=$(ldd "$root/opt/kcache/bin/cachectl" "$root"/opt/kcache/lib*/libkcache.so.0 2>&1 | grep "not found" || true)
[ -z "$missing_libs" ] || die "unresolved libraries: $missing_libs"
say "ok (on this machine, ${PRETTY_NAME:-unknown system}, as the image's steps)"
