"""kcache.triton.CacheManager with real Triton from PyPI, without a GPU.

Triton compiles kernels for sm_90 (triton.compile with a GPUTarget needs no
driver) in child processes whose TRITON_CACHE_MANAGER is kcache's; Triton's
compilation listener counts cache hits and misses. Skipped, visibly, when
Triton is not importable.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_ROOT = os.path.dirname(HERE)

try:
    import triton  # noqa: F401
    HAVE_TRITON = True
except ImportError:
    HAVE_TRITON = False

# Three kernels; prints {"hits": h, "misses": m, "names": [...]}.
CHILD = r'''
import json, sys
import triton, triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

events = []
def listener(*, src, metadata, metadata_group, times, cache_hit, **kw):
    events.append(bool(cache_hit))
triton.knobs.compilation.listener = listener

@triton.jit
def add(x, y, o, n, B: tl.constexpr):
    i = tl.program_id(0) * B + tl.arange(0, B)
    tl.store(o + i, tl.load(x + i, mask=i < n) + tl.load(y + i, mask=i < n), mask=i < n)

@triton.jit
def scale(x, o, n, s, B: tl.constexpr):
    i = tl.program_id(0) * B + tl.arange(0, B)
    tl.store(o + i, tl.load(x + i, mask=i < n) * s, mask=i < n)

@triton.jit
def rowsum(x, o, n, B: tl.constexpr):
    r = tl.program_id(0)
    c = tl.arange(0, B)
    tl.store(o + r, tl.sum(tl.load(x + r * n + c, mask=c < n), axis=0))

target = GPUTarget("cuda", 90, 32)
div = {(0,): [["tt.divisibility", 16]], (1,): [["tt.divisibility", 16]]}
names = []
for fn, sig, const in (
        (add, {"x": "*fp32", "y": "*fp32", "o": "*fp32", "n": "i32", "B": "constexpr"}, {"B": 1024}),
        (scale, {"x": "*fp32", "o": "*fp32", "n": "i32", "s": "fp32", "B": "constexpr"}, {"B": 256}),
        (rowsum, {"x": "*fp32", "o": "*fp32", "n": "i32", "B": "constexpr"}, {"B": 128})):
    k = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=const, attrs=div),
                       target=target, options={"num_warps": 4})
    assert k.asm["cubin"][:4] == b"\x7fELF", "not a cubin"
    names.append(k.metadata.name)
print(json.dumps({"hits": sum(events), "misses": len(events) - sum(events), "names": names}))
'''


def cachectl():
    return os.environ.get("CACHECTL", "cachectl")


@unittest.skipUnless(HAVE_TRITON, "SKIP: Triton is not importable in this Python")
class TritonCacheManagerTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="kcache-triton-test.")
        self.store = os.path.join(self.tmp, "store")
        # @triton.jit reads its function's source: the child is a file.
        self.child = os.path.join(self.tmp, "compile_kernels.py")
        with open(self.child, "w") as f:
            f.write(CHILD)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def env(self, mat="mat"):
        e = dict(os.environ)
        e["TRITON_CACHE_MANAGER"] = "kcache.triton:CacheManager"
        e["KCACHE_TRITON_STORE"] = self.store
        e["KCACHE_TRITON_DIR"] = os.path.join(self.tmp, mat)
        e["TRITON_CACHE_DIR"] = os.path.join(self.tmp, "triton-own-cache")
        e["PYTHONPATH"] = PKG_ROOT + os.pathsep + e.get("PYTHONPATH", "")
        e.pop("KCACHE_PATH", None)
        return e

    def run_child(self, mat="mat", check=True):
        p = subprocess.run([sys.executable, self.child], env=self.env(mat),
                           capture_output=True, text=True, timeout=600)
        if check:
            self.assertEqual(p.returncode, 0, p.stderr[-3000:])
            return json.loads(p.stdout.strip().splitlines()[-1])
        return p

    def ls(self, kind):
        p = subprocess.run([cachectl(), "-s", self.store, "ls", "--kind", kind, "--json"],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        doc = json.loads(p.stdout)
        return doc if isinstance(doc, list) else doc.get("records", doc.get("items", []))

    def test_a_second_process_compiles_nothing(self):
        first = self.run_child("mat1")
        self.assertEqual(first, {"hits": 0, "misses": 3, "names": ["add", "scale", "rowsum"]})
        # Nothing went to Triton's own cache directory.
        own = os.path.join(self.tmp, "triton-own-cache")
        kept = [f for _, _, fs in os.walk(own) for f in fs] if os.path.isdir(own) else []
        self.assertEqual([f for f in kept if f.endswith((".cubin", ".json"))], [])
        # Visible as Triton kernels, with name and arch.
        metas = self.ls("binmeta")
        self.assertEqual(len(metas), 3, metas)
        text = json.dumps(metas)
        for name in ("add", "scale", "rowsum"):
            self.assertIn('"%s"' % name, text)
        self.assertIn("sm_90", text)
        # A fresh process, with nothing materialized yet: every kernel from
        # the store.
        second = self.run_child("mat2")
        self.assertEqual(second["hits"], 3)
        self.assertEqual(second["misses"], 0)
        p = subprocess.run([cachectl(), "-s", self.store, "verify"], capture_output=True,
                           text=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_eight_processes_at_once(self):
        procs = [subprocess.Popen([sys.executable, self.child], env=self.env("mat%d" % (i % 2)),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(8)]
        for p in procs:
            out, err = p.communicate(timeout=900)
            self.assertEqual(p.returncode, 0, err[-3000:])
            self.assertEqual(json.loads(out.strip().splitlines()[-1])["names"],
                             ["add", "scale", "rowsum"])
        self.assertEqual(len(self.ls("binmeta")), 3)  # no duplicate
        p = subprocess.run([cachectl(), "-s", self.store, "verify"], capture_output=True,
                           text=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        # No torn file: every materialized file is whole (json parses, cubins
        # are ELF, temporary names are gone).
        for i in range(2):
            for root, _, files in os.walk(os.path.join(self.tmp, "mat%d" % i)):
                for f in files:
                    self.assertNotIn(".tmp.", f)
                    path = os.path.join(root, f)
                    if f.endswith(".json"):
                        with open(path) as fh:
                            json.load(fh)
                    if f.endswith(".cubin"):
                        with open(path, "rb") as fh:
                            self.assertEqual(fh.read(4), b"\x7fELF")
        # And a later process compiles nothing.
        self.assertEqual(self.run_child("mat9")["misses"], 0)

    def test_a_damaged_record_makes_triton_compile_again(self):
        self.run_child("mat1")
        data = os.path.join(self.store, "data.mdb")
        with open(data, "r+b") as f:
            blob = bytearray(f.read())
            # Flip a byte inside add's group record: file names are stored in
            # the clear, and the record checksum no longer matches. Every
            # copy: LMDB's free pages keep older versions of the record.
            at, flipped = blob.find(b"__grp__add.json"), 0
            while at >= 0:
                blob[at + 3] ^= 0xFF
                flipped += 1
                at = blob.find(b"__grp__add.json", at + 1)
            self.assertGreater(flipped, 0)
            f.seek(0)
            f.write(blob)
        again = self.run_child("mat2")
        self.assertGreaterEqual(again["misses"], 1)
        self.assertEqual(again["names"], ["add", "scale", "rowsum"])

    def test_a_store_that_is_not_a_store_is_ignored(self):
        os.makedirs(self.store)
        with open(os.path.join(self.store, "data.mdb"), "wb") as f:
            f.write(os.urandom(64 * 1024))
        p = self.run_child("mat1", check=False)
        self.assertEqual(p.returncode, 0, p.stderr[-3000:])
        self.assertEqual(json.loads(p.stdout.strip().splitlines()[-1])["misses"], 3)

    def test_a_lower_layer_serves_and_writes_go_above(self):
        self.run_child("mat1")  # fills self.store
        upper = os.path.join(self.tmp, "upper")
        e = self.env("mat2")
        e["KCACHE_TRITON_STORE"] = upper + ":" + self.store
        p = subprocess.run([sys.executable, self.child], env=e, capture_output=True, text=True,
                           timeout=600)
        self.assertEqual(p.returncode, 0, p.stderr[-3000:])
        self.assertEqual(json.loads(p.stdout.strip().splitlines()[-1])["misses"], 0)
        q = subprocess.run([cachectl(), "-s", upper, "ls", "--kind", "group"],
                           capture_output=True, text=True)
        self.assertEqual(q.returncode, 0, q.stderr)
        self.assertEqual([l for l in q.stdout.splitlines()[1:] if l.strip()], [])

    def test_the_remote_cache_backend_serves_tritons_remote_manager(self):
        e = self.env("mat1")
        e["TRITON_CACHE_MANAGER"] = "triton.runtime.cache:RemoteCacheManager"
        e["TRITON_REMOTE_CACHE_BACKEND"] = "kcache.triton:RemoteCacheBackend"
        for i, want in ((1, 3), (2, 0)):  # a fresh local file cache the second time
            e["TRITON_CACHE_DIR"] = os.path.join(self.tmp, "files%d" % i)
            p = subprocess.run([sys.executable, self.child], env=e, capture_output=True,
                               text=True, timeout=600)
            self.assertEqual(p.returncode, 0, p.stderr[-3000:])
            self.assertEqual(json.loads(p.stdout.strip().splitlines()[-1])["misses"], want)
        self.assertGreaterEqual(len(self.ls("group")), 3)

    @unittest.skipUnless(shutil.which("redis-server"),
                         "SKIP: redis-server is not on PATH (the remote tier needs one)")
    def test_an_empty_store_gets_every_kernel_through_the_remote(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    self.assertLess(time.time(), deadline, "redis-server did not start")
                    time.sleep(0.05)
            runs = []
            for store, mat in (("storeA", "matA"), ("storeB", "matB")):
                e = self.env(mat)
                e["KCACHE_TRITON_STORE"] = os.path.join(self.tmp, store)
                e["KCACHE_REMOTE"] = "redis://127.0.0.1:%d" % port
                p = subprocess.run([sys.executable, self.child], env=e, capture_output=True,
                                   text=True, timeout=600)
                self.assertEqual(p.returncode, 0, p.stderr[-3000:])
                self.assertNotIn("KCACHE_REMOTE", p.stderr)  # no warning
                runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
            self.assertEqual(runs[0]["misses"], 3)
            # Store B started empty: every kernel came from the remote.
            self.assertEqual(runs[1]["misses"], 0)
            self.assertEqual(runs[1]["hits"], 3)
            self.store = os.path.join(self.tmp, "storeB")
            self.assertGreaterEqual(len(self.ls("group")), 3)
            # And recorded as kernels there, as on the machine that compiled them.
            self.assertEqual(len(self.ls("binmeta")), 3)
        finally:
            redis.terminate()
            redis.wait(timeout=30)

    def test_dumps_go_to_tritons_own_manager(self):
        e = self.env("mat1")
        e["TRITON_KERNEL_DUMP"] = "1"
        e["TRITON_DUMP_DIR"] = os.path.join(self.tmp, "dump")
        p = subprocess.run([sys.executable, self.child], env=e, capture_output=True, text=True,
                           timeout=600)
        self.assertEqual(p.returncode, 0, p.stderr[-3000:])
        dumped = [f for _, _, fs in os.walk(os.path.join(self.tmp, "dump")) for f in fs]
        self.assertTrue(any(f.endswith(".ttir") for f in dumped), dumped)
        self.assertTrue(any(f.endswith(".ptx") for f in dumped), dumped)

    def test_autotuning_results_are_kept_as_tritons_autotuner_keeps_them(self):
        # Triton's autotuner (runtime/autotuner.py, cache_results) stores its
        # timings through get_cache_manager(key).put(json, "<fn>.autotune.json",
        # binary=False) and reads them back with get_file. Running it needs a
        # GPU; the calls it makes are made here, in two processes.
        script = os.path.join(self.tmp, "autotune_calls.py")
        with open(script, "w") as f:
            f.write("""
import hashlib, json, sys
from triton.runtime.cache import get_cache_manager
key = hashlib.sha256(b"kcache-autotune-test").hexdigest()
cache = get_cache_manager(key)
name = "matmul_kernel.autotune.json"
if sys.argv[1] == "put":
    assert cache.get_file(name) is None
    doc = {"key": [1024, 1024], "configs_timings": [[{"kwargs": {"BLOCK": 64}}, [0.5]]]}
    cache.put(json.dumps(doc), name, binary=False)
else:
    path = cache.get_file(name)
    print(open(path).read())
""")
        for step in ("put", "get"):
            p = subprocess.run([sys.executable, script, step],
                               env=self.env("mat-" + step), capture_output=True, text=True,
                               timeout=300)
            self.assertEqual(p.returncode, 0, p.stderr[-3000:])
        self.assertEqual(json.loads(p.stdout)["configs_timings"][0][1], [0.5])
        groups = self.ls("group")
        self.assertEqual(len(groups), 1, groups)


if __name__ == "__main__":
    unittest.main()
