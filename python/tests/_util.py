"""Shared helpers of the kcache Python tests."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from typing import Any, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_ROOT = os.path.dirname(HERE)
REPO = os.path.dirname(PKG_ROOT)
if PKG_ROOT not in sys.path:
    sys.path.insert(0, PKG_ROOT)

SCALE_SRC = (
    'extern "C" __global__ void scale(float *x, float s, int n)\n'
    "{\n    int i = blockIdx.x * BLOCK + threadIdx.x;\n    if (i < n)\n        x[i] *= s;\n}\n"
)
VADD_SRC = (
    'extern "C" __global__ void vadd(const float *a, const float *b, float *c, int n)\n'
    "{\n    int i = blockIdx.x * BLOCK + threadIdx.x;\n    if (i < n)\n        c[i] = a[i] + b[i];\n}\n"
)

SCALE_SPEC: Dict[str, Any] = {
    "name": "py.scale",
    "source": SCALE_SRC,
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

VADD_SPEC: Dict[str, Any] = {
    "name": "py.vadd",
    "source": VADD_SRC,
    "entry": "vadd",
    "params": {"BLOCK": [64, 128, 256]},
    "args": [
        {"name": "a", "type": "f32*", "access": "in"},
        {"name": "b", "type": "f32*", "access": "in"},
        {"name": "c", "type": "f32*", "access": "out"},
        {"name": "n", "type": "i32"},
    ],
    "grid": ["cdiv(n, BLOCK)"],
    "block": ["BLOCK"],
}


def cachectl() -> str:
    """The cachectl to populate stores with: $CACHECTL, else build/tools/cachectl."""
    path = os.environ.get("CACHECTL") or os.path.join(REPO, "build", "tools", "cachectl")
    if not os.access(path, os.X_OK):
        raise unittest.SkipTest("no cachectl at %s (set CACHECTL)" % path)
    return path


def run_cachectl(*args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run([cachectl(), *args], capture_output=True, text=True)


class TempDirCase(unittest.TestCase):
    """A test case with a scratch directory, self.tmp, removed afterwards."""

    def setUp(self) -> None:
        base = os.environ.get("KC_TEST_TMP")
        if base:
            os.makedirs(base, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix="kcache-py-", dir=base or None)
        self.addCleanup(shutil.rmtree, self.tmp, True)


def floats(values: List[float]) -> Any:
    """A ctypes float array holding values (host memory for the simulated device)."""
    return (ctypes.c_float * len(values))(*values)
