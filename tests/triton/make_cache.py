#!/usr/bin/env python3
"""Compile a few real Triton kernels into a Triton cache, with no GPU.

    make_cache.py OUTDIR ARCH...      e.g. make_cache.py /tmp/cache 80 90

Each kernel is compiled with triton.compile(ASTSource(...),
target=GPUTarget("cuda", ARCH, 32)) into OUTDIR ($TRITON_CACHE_DIR), one
hash directory per (kernel, arch): the input of cachectl import-triton
(tests/cli/test_import_triton.sh). A kernel that this Triton refuses for an
arch (num_ctas=2 before sm_90) is reported and left out.
"""
import os
import sys

out = os.path.abspath(sys.argv[1])
os.environ["TRITON_CACHE_DIR"] = out
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # quiet 3.9's warning
os.makedirs(out, exist_ok=True)

import triton  # noqa: E402  (after TRITON_CACHE_DIR is set)
import triton.language as tl  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402


@triton.jit
def add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    x = tl.load(x_ptr + offs, mask=m)
    y = tl.load(y_ptr + offs, mask=m)
    tl.store(out_ptr + offs, x + y, mask=m)


@triton.jit
def scale_kernel(x_ptr, out_ptr, n, stride, alpha, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    x = tl.load(x_ptr + offs * stride, mask=m)
    tl.store(out_ptr + offs, x * alpha, mask=m)


@triton.jit
def copy_kernel(src_ptr, dst_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    tl.store(dst_ptr + offs, tl.load(src_ptr + offs, mask=m), mask=m)


@triton.jit
def dot_kernel(a_ptr, b_ptr, c_ptr, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    rm = tl.arange(0, BM)
    rn = tl.arange(0, BN)
    rk = tl.arange(0, BK)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k in range(0, K, BK):
        a = tl.load(a_ptr + rm[:, None] * K + (k + rk)[None, :])
        b = tl.load(b_ptr + (k + rk)[:, None] * BN + rn[None, :])
        acc += tl.dot(a, b)
    tl.store(c_ptr + rm[:, None] * BN + rn[None, :], acc)


D16 = [["tt.divisibility", 16]]

KERNELS = [
    # pointers and an i32 with divisibility
    ("add_kernel", add_kernel,
     {"x_ptr": "*fp32", "y_ptr": "*fp32", "out_ptr": "*fp32", "n": "i32", "BLOCK": "constexpr"},
     {"BLOCK": 1024}, {(0,): D16, (1,): D16, (2,): D16, (3,): D16}, {"num_warps": 4}),
    # an i64, a float scalar and an int without divisibility
    ("scale_kernel", scale_kernel,
     {"x_ptr": "*fp16", "out_ptr": "*fp16", "n": "i64", "stride": "i32", "alpha": "fp32",
      "BLOCK": "constexpr"},
     {"BLOCK": 256}, {(0,): D16, (1,): D16}, {"num_warps": 4}),
    # num_warps=8
    ("copy_kernel", copy_kernel,
     {"src_ptr": "*i32", "dst_ptr": "*i32", "n": "i32", "BLOCK": "constexpr"},
     {"BLOCK": 2048}, {(0,): D16, (1,): D16}, {"num_warps": 8}),
    # tl.dot of 32x32 tiles: shared memory
    ("dot_kernel", dot_kernel,
     {"a_ptr": "*fp16", "b_ptr": "*fp16", "c_ptr": "*fp32", "K": "i32", "BM": "constexpr",
      "BN": "constexpr", "BK": "constexpr"},
     {"BM": 32, "BN": 32, "BK": 32}, {(0,): D16, (1,): D16, (2,): D16, (3,): D16},
     {"num_warps": 4, "num_stages": 3}),
]


def compile_one(fn, sig, constexprs, attrs, options, arch):
    src = ASTSource(fn=fn, signature=sig, constexprs=constexprs, attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)


for arch in [int(a) for a in sys.argv[2:]]:
    for name, fn, sig, consts, attrs, options in KERNELS:
        k = compile_one(fn, sig, consts, attrs, options, arch)
        print(f"sm_{arch} {name}: shared={k.metadata.shared} num_warps={k.metadata.num_warps}")
    if arch >= 90:
        # A cluster of two CTAs, where this Triton allows it.
        name, fn, sig, consts, attrs, _ = KERNELS[0]
        try:
            compile_one(fn, sig, {"BLOCK": 512}, attrs, {"num_warps": 4, "num_ctas": 2}, arch)
            print(f"sm_{arch} {name}: num_ctas=2")
        except Exception as e:  # noqa: BLE001  (any refusal: leave it out)
            print(f"sm_{arch} {name}: num_ctas=2 refused ({type(e).__name__}), left out")
