#!/usr/bin/env bash
# cachectl on a real store filled with real NVRTC-compiled cubins: listing,
# filtering, decoding, extracting cubins, removing, verifying a store whose
# data.mdb was damaged on disk, JSON output, exit codes and store selection.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cli_init cachectl
S=$WORK/store

# ---- help, version, usage errors (no store needed) -------------------------

cc --help
check "--help prints usage on stdout and exits 0" \
    eval 'status_is 0 && out_has "^Usage: cachectl" && out_has "verify" && err_empty'
cc ls --help
check "'ls --help' describes the filters on stdout" \
    eval 'status_is 0 && out_has "--arch" && out_has "--name" && err_empty'
cc version
check "version prints the version" eval 'status_is 0 && out_has "^cachectl [0-9]"'
cc --json version
check "version --json is one JSON document with the format versions" \
    json_ok '"cachectl" in d and d["store_format"] >= 1 and d["key_schema"] >= 1'

cc -s "$WORK/nonexistent/x" stats
check "stats on a missing store fails with a message and creates nothing" \
    eval 'failure_with_message && out_empty && err_has "no store" && [ ! -e "$WORK/nonexistent" ]'
cc -s "$WORK/nonexistent/x" verify --repair
check "verify --repair on a missing store fails and creates nothing" \
    eval 'failure_with_message && [ ! -e "$WORK/nonexistent" ]'

# ---- fill a store with real cubins -------------------------------------------

mkdir -p "$WORK/dump"
if ! "$FILL" -s "$S" --arch sm_90 --count 3 --dump "$WORK/dump" >"$WORK/keys" 2>"$WORK/fill.err"; then
    cat "$WORK/fill.err"
    echo "kc_testfill failed: cannot run the CLI tests"
    echo "0 passed, 1 failed"
    exit 1
fi
n_blob=$(grep -c '^blob ' "$WORK/keys" || true)
n_build=$(grep -c '^build ' "$WORK/keys" || true)
n_tuning=$(grep -c '^tuning ' "$WORK/keys" || true)
check "kc_testfill wrote 5 blobs, 5 builds and 1 tuning" \
    eval '[ "$n_blob" -eq 5 ] && [ "$n_build" -eq 5 ] && [ "$n_tuning" -eq 1 ]'
tuning_key=$(awk '$1 == "tuning" { print $2 }' "$WORK/keys")

# ---- usage errors with a real store --------------------------------------------

cc -s "$S" frobnicate
check "an unknown command is a usage error" eval 'usage_error && err_has "unknown command"'
cc -s "$S" ls --frobnicate
check "an unknown flag is a usage error" eval 'usage_error && err_has "unknown option"'
cc --frobnicate -s "$S" stats
check "an unknown global flag is a usage error" eval 'usage_error'
cc -s "$S" show
check "show without a key is a usage error" eval 'usage_error && err_has "KEY"'
cc -s "$S" show "${tuning_key:0:5}"
check "a 5-digit key prefix is a usage error" eval 'usage_error && err_has "8"'
cc -s "$S" show "zzzzzzzzzz"
check "a key that is not hex is a usage error" eval 'usage_error'
cc -s "$S" get "$tuning_key"
check "get without -o is a usage error" eval 'usage_error && err_has "-o"'
cc -s "$S" rm
check "rm without a key is a usage error" eval 'usage_error'
cc -s "$S" ls --kind gizmo
check "ls with an unknown kind is a usage error" eval 'usage_error'
cc
check "no command at all is a usage error" eval 'usage_error'

# ---- ls ------------------------------------------------------------------------

cc -s "$S" ls
listed_all=1
while read -r kind key; do
    grep -Eq "^$kind +$key " "$OUT" || listed_all=0
done <"$WORK/keys"
check "ls lists every blob, build and tuning that was published" \
    eval 'status_is 0 && [ "$listed_all" -eq 1 ] && out_has "^11 records"'

cc -s "$S" --json ls
python3 - "$OUT" "$WORK/keys" <<'EOF' && pass "ls --json holds exactly the published records" || fail "ls --json holds exactly the published records"
import json, sys
d = json.load(open(sys.argv[1]))
want = {tuple(l.split()) for l in open(sys.argv[2]) if l.strip()}
got = {(r["kind"], r["key"]) for r in d["records"]}
sys.exit(0 if got == want and d["count"] == len(want) else 1)
EOF

cc -s "$S" ls --kind build --arch sm_90 --name 'vec_*'
rows=$(grep -Ec '^build +[0-9a-f]{32} +sm_90 +vec_add ' "$OUT" || true)
check "ls --kind build --arch sm_90 --name 'vec_*' lists the 3 vec_add builds only" \
    eval 'status_is 0 && [ "$rows" -eq 3 ] && ! out_has "saxpy|block_sum|^blob|^tuning"'
cc -s "$S" --json ls --kind build --arch sm_90 --name 'vec_*'
check "the same filter in JSON gives 3 vec_add builds for sm_90" \
    json_ok 'd["count"] == 3 and all(r["kind"] == "build" and r["name"] == "vec_add" and r["arch"] == "sm_90" for r in d["records"])'
cc -s "$S" --json ls --arch sm_80
check "ls --arch sm_80 finds nothing in an sm_90 store" json_ok 'd["count"] == 0'
cc -s "$S" ls --limit 3
check "ls --limit 3 streams three rows, builds first, and says the limit was reached" \
    eval 'status_is 0 && [ "$(grep -Ec "^build +[0-9a-f]{32} " "$OUT")" -eq 3 ] && [ "$(grep -Ec "^(blob|tuning) " "$OUT")" -eq 0 ] && out_has "^3 records, .*limit reached"'
cc -s "$S" --json ls --limit 4
check "ls --json --limit 4 holds four records" json_ok 'd["count"] == 4 and len(d["records"]) == 4'
cc -s "$S" --json ls --kind blob
largest=$(jget 'min(d["records"], key=lambda r: (-r["stored_bytes"], r["key"]))["key"]')
cc -s "$S" ls --kind blob --sort size
first_key=$(awk 'NR == 2 {print $2}' "$OUT")
check "ls --sort size puts the largest blob first" \
    eval 'status_is 0 && [ "$first_key" = "$largest" ] && [ "$(grep -Ec "^blob " "$OUT")" -eq 5 ] && out_has "^5 records"'
cc -s "$S" ls --sort color
check "ls --sort with an unknown field is a usage error" eval 'usage_error'
cc -s "$S" ls --limit 0
check "ls --limit 0 is a usage error" eval 'usage_error'

cc -s "$S" --json ls --kind build --name saxpy
saxpy_build=$(jget 'd["records"][0]["key"]')
saxpy_blob=$(jget 'd["records"][0]["blob"]')
cc -s "$S" --json ls --kind blob --name saxpy
check "ls --kind blob --name saxpy finds saxpy's blob through its build" \
    json_ok 'd["count"] == 1 and d["records"][0]["key"] == "'"$saxpy_blob"'"'

# ---- show ----------------------------------------------------------------------

cc -s "$S" --json ls --kind build --name vec_add
b128=$(jget '[r["key"] for r in d["records"] if r["params"] == {"BLOCK": 128}][0]')
b64=$(jget '[r["key"] for r in d["records"] if r["params"] == {"BLOCK": 64}][0]')
blob128=$(jget '[r["blob"] for r in d["records"] if r["params"] == {"BLOCK": 128}][0]')
size128=$(stat -c %s "$WORK/dump/$blob128.cubin" 2>/dev/null || echo 0)

cc -s "$S" show "$b128"
check "show on a build decodes its preimage" \
    eval 'status_is 0 && out_has "^kind +build" && out_has "^entry +vec_add$" && out_has "^arch +sm_90$" && out_has "^options +-std=c\+\+17 -lineinfo$" && out_has "^params +BLOCK=128$" && out_has "^toolchain +nvrtc-[0-9]+\.[0-9]+$" && out_has "^source digest +[0-9a-f]{32}$"'
check "show on a build gives its blob with raw size, stored size and ratio" \
    eval 'out_has "^blob +$blob128$" && out_has "raw [0-9.]+ KiB, stored [0-9.]+ (B|KiB), ratio [0-9.]+x"'
check "show on a build gives its resources and times" \
    eval 'out_has "^registers +[1-9]" && out_has "^max threads +128$" && out_has "^compile time" && out_has "^created +20[0-9]{2}-"'

cc -s "$S" show "${blob128:0:8}"
check "show on a blob by an 8-digit prefix gives raw size, stored size and ratio" \
    eval 'status_is 0 && out_has "^kind +blob" && out_has "^raw size .*\($size128 bytes\)" && out_has "^stored size" && out_has "^ratio +[0-9.]+x" && out_has "^used by +build $b128"'

cc -s "$S" --json show "$b128"
check "show --json on a build has every decoded field" \
    json_ok 'd["kind"] == "build" and d["preimage"]["entry"] == "vec_add" and d["preimage"]["arch"] == "sm_90" and d["preimage"]["params"] == {"BLOCK": 128} and d["preimage"]["toolchain"].startswith("nvrtc-") and d["blob"]["key"] == "'"$blob128"'" and d["blob"]["raw_bytes"] == '"$size128"' and d["blob"]["stored_bytes"] > 0'
cc -s "$S" --json show "$blob128"
check "show --json on a blob has sizes and ratio" \
    json_ok 'd["raw_bytes"] == '"$size128"' and d["stored_bytes"] < d["raw_bytes"] and abs(d["ratio"] - d["raw_bytes"] / d["stored_bytes"]) < 1e-9'

cc -s "$S" show "$tuning_key"
check "show on a tuning gives the winner, the shape and every candidate" \
    eval 'status_is 0 && out_has "^winner +BLOCK=" && out_has "^shape +" && [ "$(grep -Ec "^BLOCK=[0-9]+ +ok " "$OUT")" -eq 3 ]'
cc -s "$S" --json show "$tuning_key"
check "show --json on a tuning lists 3 candidates" \
    json_ok 'd["kind"] == "tuning" and len(d["candidates"]) == 3 and d["preimage"]["entry"] == "vec_add"'

# ---- get -----------------------------------------------------------------------

cc -s "$S" get "${blob128:0:10}" -o "$WORK/blob.cubin"
check "get KEY -o FILE writes exactly the cubin that was compiled" \
    eval 'status_is 0 && cmp -s "$WORK/blob.cubin" "$WORK/dump/$blob128.cubin"'
check "the extracted cubin starts with the ELF magic" \
    eval '[ "$(head -c 4 "$WORK/blob.cubin" | od -An -tx1 | tr -d " \n")" = "7f454c46" ]'
cc -s "$S" get "$b128" -o "$WORK/build.cubin"
check "get on a build writes its blob's cubin" \
    eval 'status_is 0 && cmp -s "$WORK/build.cubin" "$WORK/dump/$blob128.cubin"'
if command -v cuobjdump >/dev/null 2>&1; then
    check "cuobjdump reads the extracted cubin" \
        eval 'cuobjdump -elf "$WORK/blob.cubin" >/dev/null 2>&1 || cuobjdump --dump-resource-usage "$WORK/blob.cubin" >/dev/null 2>&1'
else
    echo "skip - cuobjdump is not on PATH"
fi
if command -v readelf >/dev/null 2>&1; then
    check "readelf sees an NVIDIA CUDA ELF with vec_add's code" \
        eval 'elf=$(readelf -hS "$WORK/blob.cubin" 2>/dev/null); grep -q "NVIDIA CUDA" <<<"$elf" && grep -q "\.text\.vec_add" <<<"$elf"'
fi

# ---- stats and store selection ------------------------------------------------

cc -s "$S" stats
check "stats counts records by kind and reports the compression ratio" \
    eval 'status_is 0 && out_has "^blob +5$" && out_has "^build +5$" && out_has "^tuning +1$" && out_has "ratio [0-9.]+x"'
cc -s "$S" --json stats
check "stats --json has counts, sizes and the ratio" \
    json_ok 'd["records"]["blob"] == 5 and d["records"]["build"] == 5 and d["records"]["tuning"] == 1 and d["blob_stored_bytes"] < d["blob_raw_bytes"] and d["compression_ratio"] > 1'
check "stats --json has the records' bytes and the on-disk ratio, from kept totals" \
    json_ok 'd["record_bytes"] > d["blob_stored_bytes"] and abs(d["disk_ratio"] - d["file_bytes"] / d["record_bytes"]) < 1e-9 and d["totals_scanned"] is False'

rc=0
KCACHE_DIR=$S "$CACHECTL" --json stats >"$OUT" 2>"$ERR" || rc=$?
check "KCACHE_DIR selects the store" \
    eval 'status_is 0 && json_ok "d[\"path\"] == \"$S\""'
rc=0
env -u KCACHE_DIR XDG_CACHE_HOME="$WORK/xdg" "$CACHECTL" stats >"$OUT" 2>"$ERR" || rc=$?
check "without KCACHE_DIR the store is \$XDG_CACHE_HOME/kcache, and is not created" \
    eval 'failure_with_message && err_has "$WORK/xdg/kcache" && [ ! -e "$WORK/xdg" ]'
rc=0
env -u KCACHE_DIR -u XDG_CACHE_HOME HOME="$WORK/home" "$CACHECTL" stats >"$OUT" 2>"$ERR" || rc=$?
check "without XDG_CACHE_HOME the store is \$HOME/.cache/kcache" \
    eval 'failure_with_message && err_has "$WORK/home/.cache/kcache"'

# ---- verify, rm ----------------------------------------------------------------

cc -s "$S" verify
check "verify on a clean store exits 0" eval 'status_is 0 && out_has "0 problems"'
cc -s "$S" --json verify
check "verify --json on a clean store reports no problems" \
    json_ok 'd["ok"] is True and d["problems"] == [] and d["checked"] >= 11'

cc -s "$S" rm 00000000
check "rm of a key that matches nothing fails and removes nothing" \
    eval 'failure_with_message && err_has "no record matches"'
cc -s "$S" rm "$b64"
check "rm of a build a tuning names is refused and names the tuning" \
    eval 'failure_with_message && out_empty && err_has "build $b64 is used by tuning $tuning_key" && err_has "nothing removed" && err_has "--cascade"'
cc -s "$S" rm --cascade "$b64"
check "rm --cascade KEY removes the build and the tuning that names it" \
    eval 'status_is 0 && out_has "^removed build $b64$" && out_has "^removed tuning $tuning_key$" && [ "$(wc -l <"$OUT")" -eq 2 ]'
cc -s "$S" show "$b64"
check "a removed record is gone" eval 'failure_with_message && err_has "no record matches"'
cc -s "$S" --json ls
check "ls no longer lists the removed records" \
    json_ok 'd["count"] == 9 and not {"'"$b64"'", "'"$tuning_key"'"} & {r["key"] for r in d["records"]}'
cc -s "$S" --json rm "${b128:0:12}"
check "rm --json reports what it removed" \
    json_ok 'd["removed"] == [{"kind": "build", "key": "'"$b128"'"}]'

# ---- damage data.mdb on disk ---------------------------------------------------

# No process has the store open now. Flip one byte inside the payload of
# saxpy's build record and inside the zstd frame of block_sum's blob, in
# every copy LMDB left in the file (old page versions may hold copies).
cc -s "$S" --json ls --kind build --name block_sum
bs_build=$(jget 'd["records"][0]["key"]')
bs_blob=$(jget 'd["records"][0]["blob"]')
bs_size=$(stat -c %s "$WORK/dump/$bs_blob.cubin" 2>/dev/null || echo 0)
# The blob is found by its raw size, so that size must be unique here.
same_size=$(find "$WORK/dump" -name '*.cubin' -size "${bs_size}c" | wc -l)
check "block_sum's cubin has a size no other cubin has" eval '[ "$same_size" -eq 1 ]'

python3 - "$S/data.mdb" "$bs_size" >"$WORK/flips" <<'EOF' || echo "0 0" >"$WORK/flips"
import struct, sys
path, raw_size = sys.argv[1], int(sys.argv[2])
data = bytearray(open(path, "rb").read())
flipped_build = flipped_blob = 0
i = data.find(b"KCR\x00")
while i >= 0:
    kind = data[i + 4]
    if kind == 2:
        # A build record: damage the entry name inside its preimage.
        j = data.find(b"saxpy", i + 12, i + 400)
        if j >= 0:
            data[j] ^= 0x20
            flipped_build += 1
    elif kind == 1 and struct.pack("<Q", raw_size) in data[i + 12:i + 48]:
        # A blob record: damage a byte well inside the compressed frame.
        data[i + 12 + 64] ^= 0xFF
        flipped_blob += 1
    i = data.find(b"KCR\x00", i + 4)
with open(path, "r+b") as f:
    f.write(data)
print(flipped_build, flipped_blob)
EOF
read -r nb_flip nblob_flip <"$WORK/flips"
check "the damage landed in at least one copy of each record" \
    eval '[ "$nb_flip" -ge 1 ] && [ "$nblob_flip" -ge 1 ]'

cc -s "$S" verify
check "verify on the damaged store exits 1" eval 'failure_with_message'
check "verify names the damaged build" eval 'out_has "^build +$saxpy_build +damaged record"'
check "verify names the damaged blob and the build that needs it" \
    eval 'out_has "^blob +$bs_blob " && out_has "^build +$bs_build +its blob $bs_blob is damaged"'
cc -s "$S" --json verify
check "verify --json lists exactly the three bad records" \
    json_ok 'd["ok"] is False and sorted((p["kind"], p["key"]) for p in d["problems"]) == sorted([("build", "'"$saxpy_build"'"), ("blob", "'"$bs_blob"'"), ("build", "'"$bs_build"'")])'
cc -s "$S" get "$bs_blob" -o "$WORK/bad.cubin"
check "get refuses a damaged blob and writes no file" \
    eval 'failure_with_message && [ ! -e "$WORK/bad.cubin" ]'
cc -s "$S" ls
check "ls still lists the store and warns about damage on stderr" \
    eval 'status_is 0 && out_has "DAMAGED" && err_has "verify"'

cc -s "$S" verify --repair
check "verify --repair removes the bad records and exits 0" \
    eval 'status_is 0 && [ "$(grep -Ec "^(blob|build) .* removed$" "$OUT")" -eq 3 ] && out_has "3 removed"'
cc -s "$S" verify
check "a second verify finds nothing wrong" eval 'status_is 0 && out_has "0 problems"'
cc -s "$S" --json ls
check "the repaired store keeps every sound record" \
    json_ok 'd["count"] == 5 and not {"'"$saxpy_build"'", "'"$bs_blob"'", "'"$bs_build"'"} & {r["key"] for r in d["records"]}'

# ---- binmeta: launch metadata of a binary kcache did not compile ------------

B=$WORK/binmeta-store
if ! "$FILL" -s "$B" --arch sm_90 --count 1 --binmeta >"$WORK/bkeys" 2>"$WORK/bfill.err"; then
    cat "$WORK/bfill.err"
fi
bm_key=$(awk '$1 == "binmeta" {print $2}' "$WORK/bkeys")
check "kc_testfill --binmeta wrote one binmeta record" eval '[ -n "$bm_key" ]'
cc -s "$B" ls --kind binmeta
check "ls --kind binmeta lists it with its entry, arch and compiler" \
    eval 'status_is 0 && out_has "^binmeta +${bm_key:0:16}" && out_has "saxpy" && out_has "sm_90" && out_has "triton 3.6.0, 4 warps"'
cc -s "$B" ls
check "ls lists binmeta records by default" eval 'status_is 0 && out_has "^binmeta "'
cc -s "$B" --json ls --kind all
check "ls --json --kind all has the binmeta record with its metadata" \
    json_ok '[r for r in d["records"] if r["kind"] == "binmeta" and r["key"] == "'"$bm_key"'" and r["compiler"] == "triton" and r["num_warps"] == 4 and r["args"] == 4]'
cc -s "$B" show "$bm_key"
check "show of the build prints its launch metadata and specialization" \
    eval 'status_is 0 && out_has "^kind +build" && out_has "^launch metadata +triton 3.6.0, sm_90" && out_has "x_ptr: \*fp32 \[align16\]" && out_has "n: i32 \[div16\]"'
cc -s "$B" --json show "$bm_key"
check "show --json of the build has a binmeta object" \
    json_ok 'd["binmeta"]["num_warps"] == 4 and d["binmeta"]["compiler"] == "triton"'
cc -s "$B" verify
check "verify finds the store with binmeta clean" eval 'status_is 0'
cc -s "$B" export -o "$WORK/bm.kcb"
check "export writes a bundle" eval 'status_is 0 && [ -s "$WORK/bm.kcb" ]'
cc -s "$WORK/bm-import" import "$WORK/bm.kcb"
cc -s "$WORK/bm-import" ls --kind binmeta
check "the bundle carries the binmeta record into another store" \
    eval 'status_is 0 && out_has "^binmeta +${bm_key:0:16}"'

# ---- groups: named files stored together (Triton's cache entries) ----------

G=$WORK/group-store
if ! "$FILL" -s "$G" --arch sm_90 --count 1 --group abc123def >"$WORK/gkeys" 2>"$WORK/gfill.err"; then
    cat "$WORK/gfill.err"
fi
g_key=$(awk '$1 == "group" {print $2}' "$WORK/gkeys")
check "kc_testfill --group wrote one group" eval '[ -n "$g_key" ]'
cc -s "$G" ls --kind group
check "ls --kind group lists it with its name, files and total size" \
    eval 'status_is 0 && out_has "^group +${g_key:0:16}" && out_has "abc123def" && out_has "4 files"'
cc -s "$G" ls --kind group --name 'abc*'
check "ls --name matches a group's name" eval 'status_is 0 && out_has "^group +${g_key:0:16}"'
cc -s "$G" ls --kind group --arch sm_90
check "ls --arch lists no group (a group has no arch)" eval 'status_is 0 && out_has "^no records"'
cc -s "$G" ls
check "ls lists groups by default, and a group file's blob by its file name" \
    eval 'status_is 0 && out_has "^group " && out_has "add_kernel.json"'
cc -s "$G" --json ls --kind group
check "ls --json has the group's files, total size and times" \
    json_ok '[r for r in d["records"] if r["kind"] == "group" and r["key"] == "'"$g_key"'" and r["name"] == "abc123def" and r["files"] == 4 and r["updated"] >= r["created"] > 0]'
cc -s "$G" show "$g_key"
check "show of a group prints its name and every file" \
    eval 'status_is 0 && out_has "^kind +group" && out_has "^name +abc123def" && out_has "^add_kernel.cubin " && out_has "^empty.txt +0 B"'
cc -s "$G" --json show "$g_key"
check "show --json of a group lists its files with sizes and blobs" \
    json_ok 'd["name"] == "abc123def" and [f["name"] for f in d["files"]] == ["add_kernel.cubin", "add_kernel.json", "add_kernel.ptx", "empty.txt"] and d["files"][3]["size"] == 0'
cc -s "$G" stats
check "stats counts the group" eval 'status_is 0 && out_has "^group +1$"'
cc -s "$G" verify
check "verify finds the store with a group clean" eval 'status_is 0'
cc -s "$G" export -o "$WORK/g.kcb"
check "export carries the group" eval 'status_is 0 && [ -s "$WORK/g.kcb" ]'
cc -s "$WORK/g-import" import "$WORK/g.kcb"
check "import says it took the group" eval 'status_is 0 && out_has "with 1 group"'
cc -s "$WORK/g-import" ls --kind group
check "the bundle carries the group into another store" \
    eval 'status_is 0 && out_has "^group +${g_key:0:16}"'
cc -s "$WORK/g-import" verify
check "the imported store verifies clean" eval 'status_is 0'
cc -s "$G" get "$g_key" --file add_kernel.ptx -o "$WORK/g.ptx"
check "get --file writes a group's file" \
    eval 'status_is 0 && [ "$(head -c 12 "$WORK/g.ptx")" = ".version 8.4" ]'
cc -s "$G" get "$g_key" --file empty.txt -o "$WORK/g.empty"
check "get --file writes an empty file" eval 'status_is 0 && [ -f "$WORK/g.empty" ] && [ ! -s "$WORK/g.empty" ]'
cc -s "$G" get "$g_key" --file nope -o "$WORK/g.nope"
check "get --file of a missing file fails" eval 'status_is 1'
cc -s "$G" rm "$g_key"
check "rm removes a group" eval 'status_is 0 && out_has "^removed group ${g_key}"'
cc -s "$G" ls --kind group
check "the group is gone" eval 'status_is 0 && out_has "^no records"'

cli_finish
