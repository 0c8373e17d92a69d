"""kcache as Triton's cache manager under torch.compile, on a real GPU.

Run on the GPU machine (PyTorch and Triton installed there), with the kcache
package importable (PYTHONPATH=python, KCACHE_LIBRARY=the built library):
    python3 tests/gpu/torch_cache_manager.py BUILD_DIR OUT_DIR

Part 1: torch.compile of real models (timm's when timm is installed, else
torchvision's, else small ones defined here), each run in a fresh process
with a fresh Inductor cache (so Inductor asks Triton for every kernel) and
TORCHINDUCTOR_COMPILE_THREADS=1 (so Triton compiles in the process and its
compilation listener counts compiles and cache hits):
  default_cold / default_warm   Triton's own file cache, empty then filled
  kcache_cold / kcache_warm     TRITON_CACHE_MANAGER=kcache.triton:CacheManager
                                on one store, warm with nothing materialized
  kcache_bundle                 that store exported as a bundle and imported
                                into an empty store
Outputs of every run must equal default_cold's exactly; kcache_warm and
kcache_bundle must compile no Triton kernel. Times side by side.

Part 2: host overhead per call of one Triton kernel launched from Python
through kcache (kcache.Launcher, the binary imported by the cache manager)
vs through Triton's launcher (kernel[grid](...)), interleaved rounds.

Prints one JSON line; exits non-zero on a mismatch.
"""
import json
import os
import shutil
import subprocess
import sys
import time

CHILD = r'''
import json, os, sys, time
import torch, triton
events = []
def listener(*, src, metadata, metadata_group, times, cache_hit, **kw):
    events.append(bool(cache_hit))
triton.knobs.compilation.listener = listener

def models():
    out = []
    try:
        import timm
        for name, shape in (("resnet18", (8, 3, 224, 224)),
                            ("vit_tiny_patch16_224", (8, 3, 224, 224)),
                            ("mobilenetv3_small_100", (8, 3, 224, 224))):
            torch.manual_seed(0)
            out.append(("timm/" + name, timm.create_model(name, pretrained=False), shape))
        return out
    except Exception:
        pass
    try:
        import torchvision
        torch.manual_seed(0)
        out.append(("torchvision/resnet18", torchvision.models.resnet18(weights=None),
                    (8, 3, 224, 224)))
    except Exception:
        pass
    torch.manual_seed(0)
    out.append(("mlp", torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.GELU(),
                                          torch.nn.LayerNorm(1024), torch.nn.Linear(1024, 256)),
                (64, 256)))
    return out

results, names = [], []
t0 = time.perf_counter()
with torch.no_grad():
    for name, m, shape in models():
        torch.manual_seed(1)
        x = torch.randn(*shape, device="cuda")
        y = torch.compile(m.cuda().eval())(x)
        results.append(y.float().cpu())
        names.append(name)
torch.cuda.synchronize()
elapsed = time.perf_counter() - t0
torch.save(results, sys.argv[1])
print(json.dumps({"seconds": round(elapsed, 2), "compiles": events.count(False),
                  "cache_hits": events.count(True), "models": names}))
'''

BENCH = r'''
import json, os, sys, time
import torch, triton, triton.language as tl

@triton.jit
def scale_add(x_ptr, y_ptr, out_ptr, n, XBLOCK: tl.constexpr):
    offs = tl.program_id(0) * XBLOCK + tl.arange(0, XBLOCK)
    m = offs < n
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=m) * 3.0 + tl.load(y_ptr + offs, mask=m), mask=m)

n = 4096
x = torch.randn(n, device="cuda"); y = torch.randn(n, device="cuda")
o1 = torch.empty_like(x); o2 = torch.empty_like(x)
grid = (triton.cdiv(n, 1024),)
scale_add[grid](x, y, o1, n, XBLOCK=1024, num_warps=4)
torch.cuda.synchronize()
if sys.argv[2] == "populate":  # run under kcache's cache manager: imports the binary
    sys.exit(0)
import kcache
store = kcache.Store(sys.argv[1])  # one handle: the launcher shares it
builds = [e for e in store.ls(kind="binmeta") if e.name == "scale_add"]
assert builds, "the cache manager did not import scale_add"
spec = {"name": "scale_add", "source_kind": "prebuilt",
        "candidates": [{"build": builds[-1].key, "config": {"XBLOCK": 1024}}],
        "args": [{"name": "x", "type": "f32*", "access": "in"},
                 {"name": "y", "type": "f32*", "access": "in"},
                 {"name": "out", "type": "f32*", "access": "out"},
                 {"name": "n", "type": "i32"}],
        "grid": ["cdiv(n, XBLOCK)"]}
launcher = kcache.Launcher(device="cuda", store=store)
k = launcher.kernel(spec)
k(x, y, o2, n)
torch.cuda.synchronize()
same = torch.equal(o1, o2)
N = 20000
def triton_loop():
    for _ in range(N):
        scale_add[grid](x, y, o1, n, XBLOCK=1024, num_warps=4)
def kcache_loop():
    for _ in range(N):
        k(x, y, o2, n)
res = {"triton_us": [], "kcache_us": []}
for _ in range(5):
    for name, fn in (("triton_us", triton_loop), ("kcache_us", kcache_loop)):
        torch.cuda.synchronize()
        t0 = time.perf_counter(); fn(); t1 = time.perf_counter()
        torch.cuda.synchronize()
        res[name].append(round((t1 - t0) / N * 1e6, 2))
res["identical"] = same and torch.equal(o1, o2)
torch.save({"x": x.cpu(), "y": y.cpu(), "out": o1.cpu(), "key": builds[-1].key},
           os.path.join(os.path.dirname(sys.argv[1]), "scale_add_io.pt"))
res["ratio_triton_over_kcache"] = round(sorted(res["triton_us"])[2] / sorted(res["kcache_us"])[2], 2)
print(json.dumps(res))
'''

# A process that never imports Triton launches the imported kernel with
# torch tensors through kcache and checks Triton's result.
NO_TRITON = r'''
import json, os, sys
import torch
import kcache
io = torch.load(os.path.join(os.path.dirname(sys.argv[1]), "scale_add_io.pt"))
spec = {"name": "scale_add", "source_kind": "prebuilt",
        "candidates": [{"build": io["key"], "config": {"XBLOCK": 1024}}],
        "args": [{"name": "x", "type": "f32*", "access": "in"},
                 {"name": "y", "type": "f32*", "access": "in"},
                 {"name": "out", "type": "f32*", "access": "out"},
                 {"name": "n", "type": "i32"}],
        "grid": ["cdiv(n, XBLOCK)"]}
x, y = io["x"].cuda(), io["y"].cuda()
out = torch.empty_like(x)
with kcache.Launcher(device="cuda", store=sys.argv[1]) as launcher:
    launcher.kernel(spec)(x, y, out, x.numel())
    torch.cuda.synchronize()
print(json.dumps({"identical_to_triton": torch.equal(out.cpu(), io["out"]),
                  "triton_imported": "triton" in sys.modules}))
'''


def main():
    build, out = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    base = dict(os.environ)
    base["PYTHONPATH"] = os.path.join(repo, "python") + os.pathsep + base.get("PYTHONPATH", "")
    base["TORCHINDUCTOR_FX_GRAPH_CACHE"] = "0"
    base["TORCHINDUCTOR_AUTOGRAD_CACHE"] = "0"
    base["TORCHINDUCTOR_COMPILE_THREADS"] = "1"
    for k in ("TRITON_CACHE_MANAGER", "KCACHE_PATH", "KCACHE_TRITON_STORE"):
        base.pop(k, None)
    cachectl = os.path.join(build, "tools", "cachectl")
    result, failures = {}, []
    child_py = os.path.join(out, "compile_models.py")
    with open(child_py, "w") as f:
        f.write(CHILD)

    def child(mode, **env):
        e = dict(base)
        e["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(out, "inductor-" + mode)
        e.update(env)
        p = subprocess.run([sys.executable, child_py, os.path.join(out, mode + ".pt")],
                           env=e, capture_output=True, text=True)
        if p.returncode != 0:
            failures.append("%s: %s" % (mode, p.stderr[-2000:]))
            return None
        r = json.loads(p.stdout.strip().splitlines()[-1])
        result[mode] = r
        return r

    bench_only = "--bench-only" in sys.argv
    tdef = os.path.join(out, "triton-default")
    km = "kcache.triton:CacheManager"
    store, store2 = os.path.join(out, "store"), os.path.join(out, "store2")
    if bench_only:
        return bench_part(out, base, km, result, failures)
    child("default_cold", TRITON_CACHE_DIR=tdef)
    child("default_warm", TRITON_CACHE_DIR=tdef)
    child("kcache_cold", TRITON_CACHE_MANAGER=km, KCACHE_TRITON_STORE=store,
          KCACHE_TRITON_DIR=os.path.join(out, "mat1"),
          TRITON_CACHE_DIR=os.path.join(out, "triton-unused"))
    child("kcache_warm", TRITON_CACHE_MANAGER=km, KCACHE_TRITON_STORE=store,
          KCACHE_TRITON_DIR=os.path.join(out, "mat2"),
          TRITON_CACHE_DIR=os.path.join(out, "triton-unused"))
    bundle = os.path.join(out, "store.kcb")
    for cmd in ([cachectl, "-s", store, "export", "-o", bundle],
                [cachectl, "-s", store2, "import", bundle]):
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            failures.append("%s: %s" % (" ".join(cmd[3:5]), p.stderr.strip()))
    child("kcache_bundle", TRITON_CACHE_MANAGER=km, KCACHE_TRITON_STORE=store2,
          KCACHE_TRITON_DIR=os.path.join(out, "mat3"),
          TRITON_CACHE_DIR=os.path.join(out, "triton-unused"))
    unused = os.path.join(out, "triton-unused")
    result["files_in_tritons_own_dir_under_kcache"] = sum(
        1 for _, _, fs in os.walk(unused) for f in fs if f.endswith((".cubin", ".json")))

    import torch
    ref = os.path.join(out, "default_cold.pt")
    if os.path.exists(ref):
        want = torch.load(ref)
        for mode in ("default_warm", "kcache_cold", "kcache_warm", "kcache_bundle"):
            path = os.path.join(out, mode + ".pt")
            if not os.path.exists(path):
                continue
            got = torch.load(path)
            same = len(got) == len(want) and all(torch.equal(a, b) for a, b in zip(got, want))
            result[mode]["identical_to_default_cold"] = same
            if not same:
                failures.append("%s: outputs differ from default_cold" % mode)
    for mode in ("kcache_warm", "kcache_bundle"):
        if mode in result and result[mode]["compiles"] != 0:
            failures.append("%s compiled %d Triton kernels" % (mode, result[mode]["compiles"]))
    p = subprocess.run([cachectl, "-s", store, "stats"], capture_output=True, text=True)
    result["store_stats"] = p.stdout.strip().splitlines()[:12]

    bench_part(out, base, km, result, failures)


def bench_part(out, base, km, result, failures):
    bench = os.path.join(out, "bench_launch.py")
    with open(bench, "w") as f:
        f.write(BENCH)
    sb = os.path.join(out, "store-bench")
    e = dict(base)
    e.update(TRITON_CACHE_MANAGER=km, KCACHE_TRITON_STORE=sb,
             KCACHE_TRITON_DIR=os.path.join(out, "mat-bench"))
    p = subprocess.run([sys.executable, bench, sb, "populate"], env=e, capture_output=True,
                       text=True)
    if p.returncode != 0:
        failures.append("launch overhead, populate: " + p.stderr[-2000:])
    e = dict(base, TRITON_CACHE_DIR=os.path.join(out, "triton-bench"))
    p = subprocess.run([sys.executable, bench, sb, "measure"], env=e, capture_output=True,
                       text=True)
    if p.returncode != 0:
        failures.append("launch overhead: " + p.stderr[-2000:])
    else:
        result["launch_overhead"] = json.loads(p.stdout.strip().splitlines()[-1])
        if not result["launch_overhead"]["identical"]:
            failures.append("kcache's launch of scale_add differs from Triton's")
        nt = os.path.join(out, "no_triton.py")
        with open(nt, "w") as f:
            f.write(NO_TRITON)
        p = subprocess.run([sys.executable, nt, sb], env=dict(base), capture_output=True,
                           text=True)
        if p.returncode != 0:
            failures.append("launch without Triton: " + p.stderr[-2000:])
        else:
            r = json.loads(p.stdout.strip().splitlines()[-1])
            result["launch_without_triton"] = r
            if not r["identical_to_triton"] or r["triton_imported"]:
                failures.append("launch without Triton: %s" % r)
    result["failures"] = failures
    print(json.dumps(result))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
