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
#
# With --objects LAYER FILE[:FILE...] for every layer (the compiled objects
# of kc_store_<layer>; ctest passes them), it also checks the calls: no
# object calls a function defined in a higher layer (a public header does
# not stop that), and no two files of the store call each other, directly or
# round a longer circle.
#
# Usage: scripts/check-layers.sh [repository root] [--objects LAYER FILES]...
# Exits 1 listing every offence, 0 if there is none. Registered as the ctest
# test check_layers (label lint).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ $# -gt 0 && $1 != --* ]]; then
    root=$1
    shift
fi
declare -A layer_objects=()
launcher_objects=""
while [[ $# -gt 0 ]]; do
    case $1 in
    --launcher-objects)
        [[ $# -ge 2 ]] || {
            echo "check-layers: --launcher-objects needs its objects" >&2
            exit 2
        }
        launcher_objects=$2
        shift 2
        ;;
    --objects)
        [[ $# -ge 3 ]] || {
            echo "check-layers: --objects needs a layer and its objects" >&2
            exit 2
        }
        layer_objects[$2]=$3
        shift 3
        ;;
    *)
        echo "usage: $0 [root] [--objects LAYER FILE[:FILE...]]..." >&2
        exit 2
        ;;
    esac
done
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

# The calls, from the objects' symbol tables.
if ((${#layer_objects[@]})); then
    declare -A sym_layer=() sym_file=() obj_file=() obj_layer=()
    objects=()
    for i in "${!LAYERS[@]}"; do
        list=${layer_objects[${LAYERS[$i]}]:-}
        if [[ -z $list ]]; then
            complain "--objects: no objects given for layer ${LAYERS[$i]}"
            continue
        fi
        IFS=: read -r -a objs <<<"$list"
        for o in "${objs[@]}"; do
            if [[ ! -f $o ]]; then
                complain "$o: no such object (build first)"
                continue
            fi
            name=${o##*/}
            obj_file[$o]=${LAYERS[$i]}/${name%.o}
            obj_layer[$o]=$i
            objects+=("$o")
            while read -r sym; do
                sym_layer[$sym]=$i
                sym_file[$sym]=${obj_file[$o]}
            done < <(nm -g --defined-only "$o" | awk 'NF == 3 { print $3 }')
        done
    done
    pairs=$(mktemp)
    loops=$(mktemp)
    trap 'rm -f "$unresolved" "$pairs" "$loops"' EXIT
    for o in "${objects[@]}"; do
        i=${obj_layer[$o]}
        while read -r sym; do
            [[ -n ${sym_layer[$sym]:-} ]] || continue
            m=${sym_layer[$sym]}
            if ((m > i)); then
                complain "${obj_file[$o]}: layer ${LAYERS[$i]} calls $sym of" \
                    "${sym_file[$sym]} (layer ${LAYERS[$m]})"
            fi
            echo "${sym_file[$sym]} ${obj_file[$o]}" >>"$pairs"
        done < <(nm -u "$o" | awk '{ print $NF }')
    done
    # tsort names every circle it meets on stderr.
    if ! tsort "$pairs" >/dev/null 2>"$loops" || [[ -s $loops ]]; then
        complain "files of the store call each other in a circle:"
        sed -E 's/^tsort: [^:]*: /    /; s/^tsort: /    /' "$loops" >&2
    fi
    checked_objects=${#objects[@]}
fi

# The launcher's files call each other in one direction only (the launch
# flow, kernel_int.h): no circle between its objects either.
if [[ -n $launcher_objects ]]; then
    declare -A lsym_file=()
    IFS=: read -r -a lobjs <<<"$launcher_objects"
    for o in "${lobjs[@]}"; do
        [[ -f $o ]] || { complain "$o: no such object (build first)"; continue; }
        name=${o##*/}
        while read -r sym; do
            lsym_file[$sym]=launcher/${name%.o}
        done < <(nm -g --defined-only "$o" | awk 'NF == 3 { print $3 }')
    done
    lpairs=$(mktemp)
    lloops=$(mktemp)
    for o in "${lobjs[@]}"; do
        [[ -f $o ]] || continue
        name=${o##*/}
        while read -r sym; do
            [[ -n ${lsym_file[$sym]:-} ]] || continue
            echo "${lsym_file[$sym]} launcher/${name%.o}" >>"$lpairs"
        done < <(nm -u "$o" | awk '{ print $NF }')
    done
    if ! tsort "$lpairs" >/dev/null 2>"$lloops" || [[ -s $lloops ]]; then
        complain "files of the launcher call each other in a circle:"
        sed -E 's/^tsort: [^:]*: /    /; s/^tsort: /    /' "$lloops" >&2
    fi
    rm -f "$lpairs" "$lloops"
    checked_objects=$((${checked_objects:-0} + ${#lobjs[@]}))
fi

if ((fail)); then
    echo "check-layers: FAILED (see docs/ARCHITECTURE.md, \"The direction rule\")" >&2
    exit 1
fi
echo "check-layers: OK, $checked files${checked_objects:+ and $checked_objects objects}" \
    "follow the layer order (${LAYERS[*]} <- launcher <- tools)"
