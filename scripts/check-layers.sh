#!/usr/bin/env bash
# Check the dependency direction of the source tree from its #include "..."
# lines (docs/ARCHITECTURE.md):
#
#   store:  common <- codec <- core <- ops <- share
#   above:  store <- launcher <- tools
#
# - A file in store/src/<layer>/ may include the headers of its own layer and
#   of the layers below it, and the store's public headers (kcache/*.h in
#   store/include). Nothing else: no higher layer, no launcher or tool header.
#   Every file of store/src lies in a layer folder, and no header name is
#   used by two layers.
# - launcher/src may include its own headers, public kcache/*.h, and the
#   store's internal headers up to LAUNCHER_MAX_LAYER; never a tool's header.
# - tools/ may include their own headers, public kcache/*.h, the launcher's
#   internal headers, and the store's internal headers up to TOOLS_MAX_LAYER.
#
# Usage: scripts/check-layers.sh [repository root]. Exits 1 listing every
# offending line, 0 if there is none. Registered as the ctest test
# check_layers (label lint).
set -euo pipefail

root=${1:-"$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"}
cd "$root"

LAYERS=(common codec core ops share)
LAUNCHER_MAX_LAYER=common # wire.h: the launcher encodes its keys with it
TOOLS_MAX_LAYER=none      # cachectl and the benchmarks use the public API

fail=0
checked=0

complain() {
    echo "check-layers: $*" >&2
    fail=1
}

# The index of a layer name, -1 for "none".
layer_index() {
    local i
    for i in "${!LAYERS[@]}"; do
        if [[ ${LAYERS[$i]} == "$1" ]]; then
            echo "$i"
            return
        fi
    done
    echo -1
}

# header name -> index of the store layer that holds it.
declare -A header_layer=()
for i in "${!LAYERS[@]}"; do
    dir=store/src/${LAYERS[$i]}
    if [[ ! -d $dir ]]; then
        complain "$dir: missing layer folder"
        continue
    fi
    while IFS= read -r h; do
        name=${h#"$dir"/}
        if [[ -n ${header_layer[$name]:-} ]]; then
            complain "$h: header name also used by layer ${LAYERS[${header_layer[$name]}]}"
        fi
        header_layer[$name]=$i
    done < <(find "$dir" -name '*.h' | sort)
done

# Files of store/src outside every layer folder.
while IFS= read -r f; do
    complain "$f: not in a layer folder (store/src/{${LAYERS[*]}})"
done < <(find store/src -type f \( -name '*.c' -o -name '*.h' \) | grep -Ev "^store/src/($(
    IFS='|'
    echo "${LAYERS[*]}"
))/" || true)

# Print "line<TAB>header" for every #include "header" of file $1.
includes() {
    grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[^"]+"' "$1" |
        sed -E 's/^([0-9]+):[^"]*"([^"]+)".*/\1\t\2/' || true
}

# Check one file against the store layers: $1 file, $2 the highest layer
# index it may include, $3 what it is (for messages), $4 whether a header
# outside the store is an error (1) or someone else's business (0).
check_file() {
    local f=$1 max=$2 what=$3 strict=$4 dir line h m
    dir=$(dirname "$f")
    checked=$((checked + 1))
    while IFS=$'\t' read -r line h; do
        [[ -z $h ]] && continue
        if [[ $h == kcache/* ]]; then
            if [[ -f store/include/$h ]]; then
                continue
            fi
            if [[ $strict == 1 ]]; then
                complain "$f:$line: includes \"$h\", not a public header of the store"
            fi
            continue
        fi
        if [[ $h != */* && -n ${header_layer[$h]:-} ]]; then
            m=${header_layer[$h]}
            # A same-named header beside the file wins for non-store code.
            if [[ $strict == 0 && -f $dir/$h ]]; then
                continue
            fi
            if ((m > max)); then
                complain "$f:$line: $what includes \"$h\" of store layer ${LAYERS[$m]}" \
                    "(allowed: $(allowed "$max"))"
            fi
            continue
        fi
        if [[ -f $dir/$h ]]; then
            # A header reached by a relative path: judge it by where it is.
            local real rel
            real=$(realpath -m "$dir/$h")
            rel=${real#"$PWD"/}
            if [[ $rel == store/src/*/* ]]; then
                m=$(layer_index "$(echo "$rel" | cut -d/ -f3)")
                if ((m < 0 || m > max)); then
                    complain "$f:$line: $what includes \"$h\" ($rel)" \
                        "(allowed: $(allowed "$max"))"
                fi
            elif [[ $strict == 1 ]]; then
                complain "$f:$line: includes \"$h\" ($rel), outside the store's layers"
            fi
            continue
        fi
        if [[ $strict == 1 ]]; then
            complain "$f:$line: includes \"$h\", not a header of the store's layers" \
                "(allowed: $(allowed "$max"))"
        fi
        echo "$f:$line:$h" >>"$unresolved"
    done < <(includes "$f")
}

allowed() {
    if (($1 < 0)); then
        echo "no store internal header"
    else
        echo "store layers ${LAYERS[*]:0:$(($1 + 1))} and public kcache/*.h"
    fi
}

unresolved=$(mktemp)
trap 'rm -f "$unresolved"' EXIT

# The store.
for i in "${!LAYERS[@]}"; do
    while IFS= read -r f; do
        check_file "$f" "$i" "layer ${LAYERS[$i]}" 1
    done < <(find "store/src/${LAYERS[$i]}" -type f \( -name '*.c' -o -name '*.h' \) | sort)
done

# The launcher: below the tools, above the store.
launcher_max=$(layer_index "$LAUNCHER_MAX_LAYER")
if [[ -d launcher/src ]]; then
    while IFS= read -r f; do
        check_file "$f" "$launcher_max" "the launcher" 0
    done < <(find launcher/src -type f \( -name '*.c' -o -name '*.h' \) | sort)
fi
# Headers the launcher could not find beside it must not be the tools'.
while IFS=: read -r f line h; do
    [[ $f == launcher/* ]] || continue
    if [[ -n $(find tools -name "$(basename "$h")" -print -quit) ]]; then
        complain "$f:$line: the launcher includes \"$h\" of tools/ (tools sit above it)"
    fi
done <"$unresolved"

# The tools.
tools_max=$(layer_index "$TOOLS_MAX_LAYER")
if [[ -d tools ]]; then
    while IFS= read -r f; do
        check_file "$f" "$tools_max" "a tool" 0
    done < <(find tools -type f \( -name '*.c' -o -name '*.h' \) | sort)
fi

if ((fail)); then
    echo "check-layers: FAILED (see docs/ARCHITECTURE.md, \"The direction rule\")" >&2
    exit 1
fi
echo "check-layers: OK, $checked files follow the layer order (${LAYERS[*]} <- launcher <- tools)"
