"""kcache: a cache of compiled and tuned GPU kernels (ctypes binding of libkcache.so).

Importing the package never loads the library: the first call that needs it
does (see :mod:`kcache._lib` for where it looks), and raises
:class:`kcache.Error` if it cannot. Nothing here imports torch or triton.
"""

from __future__ import annotations

from .errors import (
    ArgumentError,
    Error,
    LibraryNotFoundError,
    NotFoundError,
    ReadOnlyError,
    SpecError,
)
from .launch import Buffer, Kernel, KernelStats, Launcher, Sim, SimCounters, SimLaunch
from .store import (
    BundleStats,
    Entry,
    GcItem,
    GcReport,
    Layer,
    Problem,
    Store,
    StoreStats,
    VerifyReport,
    parse_duration,
    parse_size,
)

__version__ = "0.1.0"

__all__ = [
    "ArgumentError", "Buffer", "BundleStats", "Entry", "Error", "GcItem", "GcReport", "Kernel",
    "KernelStats", "Launcher", "Layer", "LibraryNotFoundError", "NotFoundError", "Problem",
    "ReadOnlyError", "Sim", "SimCounters", "SimLaunch", "SpecError", "Store", "StoreStats",
    "VerifyReport", "library_path", "parse_duration", "parse_size", "version",
]  # fmt: skip


def library_path() -> str:
    """The path of the libkcache.so this process loaded (loading it if needed)."""
    from . import _lib

    return _lib.library_path()


def version() -> str:
    """The loaded C library's version (``kc_version()``), e.g. ``"0.1.0"``."""
    import ctypes

    from . import _lib

    return _lib.decode(_lib.declare("kc_version", ctypes.c_char_p, [])())
