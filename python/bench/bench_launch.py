"""Host overhead of one kcache Kernel.__call__ (a hit: memoized config, launch only).

    python bench_launch.py --device sim [--store DIR] [--iters N]
    python bench_launch.py --device cuda           # needs torch with CUDA

On the simulation device the simulated kernel does nothing, so the time is
the binding's argument marshalling plus kc_kernel_launch's hot path. On a
GPU the launches are asynchronous; the loop is timed without synchronizing
inside it (as Triton's launcher is measured), then synchronized once.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import kcache  # noqa: E402

SPEC = {
    "name": "bench.scale",
    "source": 'extern "C" __global__ void scale(float *x, float s, int n)\n'
    "{ int i = blockIdx.x * BLOCK + threadIdx.x; if (i < n) x[i] *= s; }\n",
    "entry": "scale",
    "params": {"BLOCK": [128, 256]},
    "args": [
        {"name": "x", "type": "f32*", "access": "inout"},
        {"name": "s", "type": "f32"},
        {"name": "n", "type": "i32"},
    ],
    "grid": ["cdiv(n, BLOCK)"],
    "block": ["BLOCK"],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("sim", "cuda"), default="sim")
    ap.add_argument("--store", default=None, help="store directory (default: a temporary one)")
    ap.add_argument("--iters", type=int, default=100000)
    ap.add_argument("--n", type=int, default=4096, help="elements")
    a = ap.parse_args()
    store = a.store or tempfile.mkdtemp(prefix="kcache-bench-")

    sync = lambda: None  # noqa: E731
    if a.device == "sim":
        sim = kcache.Sim()
        sim.register("scale", lambda launch: None, cost=lambda launch: 1000)
        launcher = kcache.Launcher("sim", store=store, sim=sim, remote=False)
        buf = (ctypes.c_float * a.n)()
        x = kcache.Buffer(ctypes.addressof(buf), (a.n,), "f32")
    else:
        import torch

        launcher = kcache.Launcher("cuda", store=store, remote=False)
        x = torch.ones(a.n, device="cuda")
        sync = torch.cuda.synchronize
    k = launcher.kernel(SPEC)
    k(x, 1.0, a.n)  # compile and tune, or a store hit
    sync()
    for _ in range(1000):
        k(x, 1.0, a.n)
    sync()
    t0 = time.perf_counter()
    for _ in range(a.iters):
        k(x, 1.0, a.n)
    t1 = time.perf_counter()
    sync()
    us = (t1 - t0) / a.iters * 1e6
    print("device=%s iters=%d host overhead per call: %.2f us (config %s)"
          % (a.device, a.iters, us, k.last_config()))  # fmt: skip
    launcher.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
