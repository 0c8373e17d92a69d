#!/usr/bin/env bash
# cachectl import-triton on caches written by real Triton (3.9 in .venv,
# 3.6 in .venv-triton3.6, made by scripts/venv.sh): every cubin lands in the
# store byte for byte with metadata that matches Triton's json; importing
# again finds everything present; a truncated cubin or a corrupt json fails
# the import, names the file and leaves the store as it was; a missing cubin
# is skipped; --spec-out writes the kernels with their builds and arg types.
# Without any of the venvs (or KC_TRITON_PYTHONS) it is skipped (77).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cli_init import_triton
SRC=$(cd "$(dirname "$0")/../.." && pwd)

pythons=()
if [ -n "${KC_TRITON_PYTHONS:-}" ]; then
    read -r -a pythons <<<"$KC_TRITON_PYTHONS"
else
    for v in .venv .venv-triton3.6; do
        [ -x "$SRC/$v/bin/python" ] && pythons+=("$SRC/$v/bin/python")
    done
fi
if [ ${#pythons[@]} -eq 0 ]; then
    echo "SKIP: no Triton venv (run scripts/venv.sh, or set KC_TRITON_PYTHONS)"
    exit 77
fi

cc import-triton --help
check "'import-triton --help' describes --spec-out and --grid on stdout" \
    eval 'status_is 0 && out_has "--spec-out" && out_has "--grid" && err_empty'
cc import-triton
check "import-triton without DIR is a usage error" usage_error
cc import-triton --grid nonsense "$WORK"
check "a --grid without NAME=EXPR is a usage error" usage_error

# check_store STORE CACHE REPORT: every imported entry's cubin and metadata
# in STORE equal the files of CACHE (REPORT: import-triton --json).
check_store() {
    python3 - "$CACHECTL" "$1" "$2" "$3" <<'PY'
import json, os, subprocess, sys
cachectl, store, cache, report = sys.argv[1:]
rep = json.load(open(report))
bad = 0
def run(*args):
    return subprocess.run([cachectl, "-s", store, *args], check=True,
                          capture_output=True, text=True).stdout
for e in rep["entries"]:
    d = os.path.join(cache, e["dir"])
    meta = json.load(open(os.path.join(d, e["kernel"] + ".json")))
    show = json.loads(run("show", e["build"], "--json"))
    bm = show["binmeta"]
    want = {"num_warps": meta["num_warps"], "num_ctas": meta["num_ctas"],
            "dyn_smem": meta["shared"], "compiler_version": meta["triton_version"],
            "entry": meta["name"]}
    got = {k: bm[k] for k in want}
    if got != want or not bm["arch"].startswith("sm_%d" % meta["target"]["arch"]):
        print("metadata of", e["dir"], "differs:", got, want, bm["arch"]); bad += 1
    if show["preimage"]["source_kind"] != "prebuilt" or \
       show["preimage"]["options"] != ["triton-hash=" + meta["hash"]]:
        print("preimage of", e["dir"], "is", show["preimage"]); bad += 1
    out = os.path.join(os.path.dirname(report), "got.cubin")
    run("get", e["build"], "-o", out)
    if open(out, "rb").read() != open(os.path.join(d, e["kernel"] + ".cubin"), "rb").read():
        print("cubin of", e["dir"], "differs"); bad += 1
binmeta = json.loads(run("ls", "--kind", "binmeta", "--json"))
if binmeta["count"] < len(rep["entries"]):
    print("ls --kind binmeta lists", binmeta["count"]); bad += 1
sys.exit(1 if bad else 0)
PY
}

# check_stripped STORE CACHE REPORT: each entry of REPORT (import-triton
# --strip-debug --json into STORE) is stored without the debug sections of
# CACHE's cubin and with every other section's and segment's bytes.
check_stripped() {
    python3 - "$CACHECTL" "$1" "$2" "$3" <<'PY'
import json, os, struct, subprocess, sys
cachectl, store, cache, report = sys.argv[1:]
def run(*args):
    return subprocess.run([cachectl, "-s", store, *args], check=True,
                          capture_output=True, text=True).stdout
debug = (".debug_", ".nv_debug_", ".rel.debug_", ".rel.nv_debug_", ".rela.debug_",
         ".rela.nv_debug_")
def elf(d):
    """Sections by name (a symbol table's entries with their section's
    name for its index), and each segment's bytes."""
    phoff, shoff = struct.unpack_from("<QQ", d, 0x20)
    phnum, _, shnum, shstrndx = struct.unpack_from("<HHHH", d, 0x38)
    sh = [struct.unpack_from("<IIQQQQIIQQ", d, shoff + 64 * i) for i in range(shnum)]
    names = sh[shstrndx][4]
    def nm(s):
        return d[names + s[0]:d.index(b"\0", names + s[0])].decode()
    secs = {}
    for s in sh[1:]:
        body = d[s[4]:s[4] + s[5]] if s[1] != 8 else s[5]
        if s[1] == 2:
            syms = []
            for k in range(s[5] // 24):
                e = bytearray(body[24 * k:24 * k + 24])
                ndx = struct.unpack_from("<H", e, 6)[0]
                e[6:8] = b"\0\0"
                target = nm(sh[ndx]) if 0 < ndx < shnum else ndx
                # a symbol of a dropped section loses its index (0)
                syms.append((bytes(e), None if target == 0 or str(target).startswith(debug)
                             else target))
            body = syms
        secs[nm(s)] = body
    segs = []
    for j in range(phnum):
        t, _, off, _, _, filesz = struct.unpack_from("<IIQQQQ", d, phoff + 56 * j)
        in_table = t == 6 or (filesz and phoff <= off < phoff + 56 * phnum)
        segs.append(None if in_table else d[off:off + filesz])
    return secs, segs
bad = stripped = 0
for e in json.load(open(report))["entries"]:
    d = os.path.join(cache, e["dir"])
    orig = open(os.path.join(d, e["kernel"] + ".cubin"), "rb").read()
    out = os.path.join(os.path.dirname(report), "got.cubin")
    run("get", e["build"], "-o", out)
    got = open(out, "rb").read()
    show = json.loads(run("show", e["build"], "--json"))
    s0, g0 = elf(orig)
    s1, g1 = elf(got)
    had = [n for n in s0 if n.startswith(debug)]
    if not had:
        if got != orig:
            print(e["dir"], "had no debug section but changed"); bad += 1
        continue
    stripped += 1
    want = {n: v for n, v in s0.items() if not n.startswith(debug)}
    if s1 != want:
        print(e["dir"], "sections differ:", [n for n in set(s1) | set(want) if s1.get(n) != want.get(n)]); bad += 1
    if g1 != g0:
        print(e["dir"], "segment bytes differ"); bad += 1
    if len(got) >= len(orig):
        print(e["dir"], "is not smaller:", len(got), len(orig)); bad += 1
    if e["cubin_bytes"] != len(got):
        print(e["dir"], "report says", e["cubin_bytes"], "bytes, got", len(got)); bad += 1
    if show["preimage"]["options"][1:] != ["strip=debug"]:
        print(e["dir"], "options", show["preimage"]["options"]); bad += 1
print("stripped", stripped, "of", len(json.load(open(report))["entries"]))
sys.exit(1 if bad or not stripped else 0)
PY
}

n=0
for py in "${pythons[@]}"; do
    n=$((n + 1))
    ver=$("$py" -c 'import triton; print(triton.__version__)')
    C=$WORK/cache$n
    S=$WORK/store$n
    if ! "$py" "$SRC/tests/triton/make_cache.py" "$C" 80 90 >"$WORK/gen$n.log" 2>&1; then
        cat "$WORK/gen$n.log"
        fail "Triton $ver compiles the test kernels"
        continue
    fi
    entries=$(find "$C" -name '__grp__*.json' | wc -l)

    cc -s "$S" import-triton "$C" --json
    cp "$OUT" "$WORK/report$n.json"
    check "Triton $ver: all $entries entries are imported" \
        eval 'status_is 0 && json_ok "d[\"imported\"] == $entries and d[\"skipped\"] == 0"'
    check "Triton $ver: cubins equal Triton's byte for byte, metadata its json" \
        check_store "$S" "$C" "$WORK/report$n.json"
    cc -s "$S" show "$(jget 'd["entries"][0]["build"]')"
    check "Triton $ver: the build shows as prebuilt with its launch metadata" \
        eval 'status_is 0 && out_has "prebuilt" && out_has "launch metadata +triton '"$ver"'"'
    check "Triton $ver: a kernel using tl.dot has dynamic shared memory" \
        python3 -c "import json,sys; sys.exit(0 if any(json.load(open(f))['shared'] > 0 for f in sys.argv[1:]) else 1)" \
        $(find "$C" -name 'dot_kernel.json')

    cc -s "$S" import-triton "$C"
    check "Triton $ver: importing again finds all $entries present" \
        eval 'status_is 0 && out_has "imported 0, already present $entries, skipped 0"'

    cc -s "$S" import-triton "$C" --strip-debug --json
    cp "$OUT" "$WORK/strip$n.json"
    check "Triton $ver: --strip-debug imports all $entries again, as new builds" \
        eval 'status_is 0 && json_ok "d[\"imported\"] == $entries and d[\"strip_debug\"]"'
    check "Triton $ver: stripped cubins keep every other section and segment byte for byte" \
        check_stripped "$S" "$C" "$WORK/strip$n.json"
    cc -s "$S" import-triton "$C" --strip-debug
    check "Triton $ver: importing stripped again finds all $entries present" \
        eval 'status_is 0 && out_has "imported 0, already present $entries, skipped 0"'

    cc -s "$S" ls --json
    cp "$OUT" "$WORK/before$n.json"
    # A copy with one cubin truncated, then one with a corrupt json: on the
    # same store, holding everything already, plus a new kernel to import.
    for damage in cubin json; do
        D=$WORK/damaged-$damage$n
        cp -r "$C" "$D"
        victim=$(find "$D" -name "copy_kernel.$damage" | sort | head -1)
        if [ $damage = cubin ]; then
            head -c $(($(stat -c %s "$victim") / 2)) "$victim" >"$victim.t"
            mv "$victim.t" "$victim"
        else
            echo '{"hash": "broken", "num_warps": ' >"$victim"
        fi
        "$py" "$SRC/tests/triton/make_cache.py" "$D" 75 >/dev/null 2>&1 || true
        cc -s "$S" import-triton "$D"
        check "Triton $ver: a damaged $damage fails the import, naming the file" \
            eval 'failure_with_message && err_has "$(basename "$(dirname "$victim")")/copy_kernel.$damage" && err_has "nothing was imported"'
        cc -s "$S" ls --json
        check "Triton $ver: after the damaged $damage the store is unchanged" \
            cmp -s "$OUT" "$WORK/before$n.json"
    done

    D=$WORK/missing$n
    cp -r "$C" "$D"
    victim=$(find "$D" -name 'scale_kernel.cubin' | sort | head -1)
    rm "$victim"
    cc -s "$WORK/fresh$n" import-triton "$D" --json
    check "Triton $ver: an entry without its cubin is skipped, the rest imported" \
        eval 'status_is 0 && json_ok "d[\"skipped\"] == 1 and d[\"imported\"] == $entries - 1 and [e for e in d[\"entries\"] if e[\"status\"] == \"skipped\" and \"scale_kernel.cubin\" in e[\"reason\"]]"'

    cc -s "$S" import-triton "$C" --dry-run --spec-out "$WORK/spec$n.json" \
        --grid 'add_kernel=cdiv(n, 1024)' --grid 'dot_kernel=1;1'
    check "Triton $ver: --dry-run --spec-out reports and writes the spec" \
        eval 'status_is 0 && [ -s "$WORK/spec$n.json" ]'
    check "Triton $ver: the spec lists every build as a candidate with kcache arg types" \
        python3 - "$WORK/spec$n.json" "$WORK/report$n.json" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1])); rep = json.load(open(sys.argv[2]))
assert spec["version"] == 1
ks = spec["kernels"]
names = [k["name"] for k in ks]
assert len(set(names)) == len(names), names
builds = sorted(c["build"] for k in ks for c in k["candidates"])
assert builds == sorted(e["build"] for e in rep["entries"]), "candidates differ"
for k in ks:
    assert k["source_kind"] == "prebuilt"
    types = [a["type"] for a in k["args"]]
    if k["name"].startswith("add_kernel"):
        assert types == ["f32*", "f32*", "f32*", "i32"], types
        assert k["grid"] == ["cdiv(n, 1024)"], k
    elif k["name"].startswith("scale_kernel"):
        assert types == ["f16*", "f16*", "i64", "i32", "f32"], types
        assert "grid" not in k
    elif k["name"].startswith("dot_kernel"):
        assert k["grid"] == ["1", "1"], k
    for a in k["args"]:
        assert ("access" in a) == a["type"].endswith("*"), a
    for c in k["candidates"]:
        assert c["config"]["num_warps"] in (4, 8) and "num_stages" in c["config"]
PY
done
cli_finish
