"""Triton's compiled kernels kept in a kcache store.

    TRITON_CACHE_MANAGER=kcache.triton:CacheManager

makes Triton keep every file of its cache (each kernel's metadata, cubin,
PTX and IRs, its launcher stubs, and with TRITON_CACHE_AUTOTUNING=1 its
autotuning results) in a kcache store instead of a directory of files:
published atomically, compressed, deduplicated, layered (KCACHE_PATH: an
image's read-only store under a writable one), exportable as bundles and
garbage-collected by `cachectl gc`. A kernel's group of files is one group
record (docs/FORMAT.md, kind 8) under Triton's cache key; when Triton
records a kernel's group, the kernel is also imported as a prebuilt build
with its launch metadata, so `cachectl ls --kind binmeta` lists it with its
name and arch, and kcache's launcher can run it without Triton.

Triton asks a cache manager for file paths. The files it reads are
materialized from the store under KCACHE_TRITON_DIR (default: a directory
per user in the system's temporary directory), each written to a temporary
name and renamed into place, so no partially written file is ever visible
and concurrent processes never collide.

The store is KCACHE_TRITON_STORE (a directory or a colon-separated list of
layers) if set, else kcache's default (KCACHE_PATH, KCACHE_DIR, then
$XDG_CACHE_HOME/kcache or ~/.cache/kcache). A store that cannot be opened
or is damaged never fails Triton: lookups miss (Triton compiles) and what
Triton writes is only materialized, with one warning.

With KCACHE_REMOTE=redis://host:port, kernels are also shared between
machines through kcache's Redis tier (README, "Sharing between machines
through a remote tier"): the process opens the remote once; a file that no
layer has makes it pull the kernel's group (every file checked against its
hash, then committed in one transaction into the writable layer) and look
again, once per group and process; a group Triton completes (put_group) is
pushed. A remote that is down or refuses never fails Triton: one warning,
and it is left alone for a while (kcache/remote.h).

With override=True or dump=True (TRITON_KERNEL_OVERRIDE, TRITON_KERNEL_DUMP)
Triton gets its own file cache manager, as without kcache.

    TRITON_REMOTE_CACHE_BACKEND=kcache.triton:RemoteCacheBackend

serves Triton's RemoteCacheManager from the same store instead.
"""
from __future__ import annotations

import ctypes
import json
import os
import tempfile
import threading
import uuid
import warnings
from typing import Dict, List, Optional

from . import _lib
from . import _structs as S

try:  # Triton's base class, when Triton is importable (it is, inside Triton)
    from triton.runtime.cache import CacheManager as _TritonCacheManager
    from triton.runtime.cache import FileCacheManager as _FileCacheManager
except ImportError:  # pragma: no cover - exercised without Triton only
    _TritonCacheManager = object  # type: ignore[misc,assignment]
    _FileCacheManager = None  # type: ignore[assignment]

__all__ = ["CacheManager", "RemoteCacheBackend", "materialize_dir"]

_GROUP_PREFIX = "__grp__"
_ENOTFOUND = -1  # KC_ENOTFOUND


class _Backend:
    """The store the process's Triton files go to: one per process, opened
    on first use, shared by every cache manager instance (Triton makes one
    per kernel)."""

    _lock = threading.Lock()
    _instance: Optional["_Backend"] = None

    def __init__(self) -> None:
        self.lib = _lib.lib()  # prototypes: kcache._lib
        self.layers = ctypes.c_void_p()
        self.warned = False
        where = os.environ.get("KCACHE_TRITON_STORE")
        if where:
            rc = self.lib.kc_layers_open(where.encode(), None, ctypes.byref(self.layers))
        else:
            rc = self.lib.kc_layers_open_default(None, ctypes.byref(self.layers))
        if rc != 0:
            self.layers = ctypes.c_void_p()
            self.warn("kcache: no store for Triton's cache (%s: %s); Triton will compile "
                      "and nothing is kept" % (self.strerror(rc), self.open_errmsg()))
        self.remote = ctypes.c_void_p()
        self.pulled = set()  # groups asked of the remote already
        self.arrived = set()  # groups pulled: their kernels not imported yet
        url = os.environ.get("KCACHE_REMOTE")
        if url and self.layers:
            rc = self.lib.kc_remote_open(url.encode(), None, ctypes.byref(self.remote))
            if rc != 0:
                self.remote = ctypes.c_void_p()
                self.warn("kcache: KCACHE_REMOTE=%s ignored (%s: %s)" % (
                    url, self.strerror(rc), _lib.decode(self.lib.kc_remote_errmsg(None))))

    @classmethod
    def get(cls) -> "_Backend":
        with cls._lock:
            if cls._instance is None:
                cls._instance = _Backend()
            return cls._instance

    def strerror(self, rc: int) -> str:
        return _lib.strerror(rc)

    def open_errmsg(self) -> str:
        return _lib.open_msg()

    def warn(self, msg: str) -> None:
        if not self.warned:
            self.warned = True
            warnings.warn(msg, RuntimeWarning, stacklevel=3)

    def read(self, group: str, fname: str) -> Optional[bytes]:
        """A file of a group from the first layer that has it; on a miss,
        once, the group pulled from the remote; else None."""
        data = self.read_local(group, fname)
        if data is None and self.pull(group):
            data = self.read_local(group, fname)
        return data

    def read_local(self, group: str, fname: str) -> Optional[bytes]:
        if not self.layers:
            return None
        data, size = ctypes.c_void_p(), ctypes.c_size_t()
        for i in range(self.lib.kc_layers_count(self.layers)):
            st = self.lib.kc_layers_store(self.layers, i)
            rc = self.lib.kc_store_group_read(st, group.encode(), fname.encode(),
                                              ctypes.byref(data), ctypes.byref(size))
            if rc == 0:
                try:
                    return ctypes.string_at(data, size.value) if size.value else b""
                finally:
                    self.lib.kc_free(data)
        return None

    def write(self, group: str, files: Dict[str, bytes]) -> bool:
        """Add files to a group of the writable layer, in one transaction."""
        st = self.lib.kc_layers_writable(self.layers) if self.layers else None
        if not st:
            return False
        arr = (S.GroupFile * len(files))()
        keep = []
        for i, (name, data) in enumerate(files.items()):
            buf = ctypes.create_string_buffer(data, len(data))
            keep.append(buf)
            arr[i] = S.GroupFile(name.encode(), ctypes.cast(buf, ctypes.c_void_p), len(data))
        rc = self.lib.kc_store_group_put(st, group.encode(), arr, len(files), 1)
        if rc != 0:
            self.warn("kcache: keeping Triton's files in %s failed: %s (%s)" % (
                "the store", self.strerror(rc),
                _lib.store_msg(st)()))
            return False
        return True

    def pull(self, group: str) -> bool:
        """Pull group from the remote into the writable layer (once per
        process): whether it came."""
        st = self.lib.kc_layers_writable(self.layers) if self.remote else None
        with self._lock:
            if not st or group in self.pulled:
                return False
            self.pulled.add(group)
        rc = self.lib.kc_remote_pull_group(self.remote, st, group.encode())
        if rc not in (0, _ENOTFOUND):
            self.remote_failed("pulling", rc)
        if rc == 0:
            with self._lock:
                self.arrived.add(group)
        return rc == 0

    def take_arrived(self, group: str) -> bool:
        """Whether group was pulled in this process and not yet imported
        (and mark it imported)."""
        with self._lock:
            if group in self.arrived:
                self.arrived.discard(group)
                return True
            return False

    def push(self, group: str) -> None:
        """Push group from the writable layer to the remote."""
        st = self.lib.kc_layers_writable(self.layers) if self.remote else None
        if st:
            rc = self.lib.kc_remote_push_group(self.remote, st, group.encode())
            if rc != 0:
                self.remote_failed("pushing", rc)

    def remote_failed(self, what: str, rc: int) -> None:
        self.warn("kcache: %s Triton's files through KCACHE_REMOTE failed: %s (%s)" % (
            what, self.strerror(rc), _lib.decode(self.lib.kc_remote_errmsg(self.remote))))

    def import_kernel(self, key_dir: str) -> None:
        """Record a kernel's cubin with its launch metadata (prebuilt build,
        binmeta) from its materialized Triton directory. Kernels kcache
        cannot launch (TMA, other backends) are skipped by the importer."""
        st = self.lib.kc_layers_writable(self.layers) if self.layers else None
        if not st:
            return
        report = ctypes.c_void_p()
        self.lib.kc_triton_import(st, key_dir.encode(), None, ctypes.byref(report))
        if report:
            self.lib.kc_triton_report_free(report)


def _backend_after_fork_in_child() -> None:
    # A forked child goes on with the parent's backend (the store handles
    # are opened afresh under it at their first use there), but a thread of
    # the parent may have held the lock at the fork: the child gets a new one.
    _Backend._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_backend_after_fork_in_child)


def materialize_dir() -> str:
    """Where Triton's files are materialized (KCACHE_TRITON_DIR, else a
    directory per user under the system's temporary directory)."""
    d = os.environ.get("KCACHE_TRITON_DIR")
    if not d:
        d = os.path.join(tempfile.gettempdir(), "kcache-triton-%d" % os.getuid())
    return d


def _materialize(directory: str, filename: str, data: bytes) -> str:
    """directory/filename holding data, written under a temporary name and
    renamed into place (atomic on POSIX); an existing file with the same
    bytes is left as it is."""
    path = os.path.join(directory, filename)
    try:
        if os.path.getsize(path) == len(data):
            with open(path, "rb") as f:
                if f.read() == data:
                    return path
    except OSError:
        pass
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, ".%s.tmp.%d.%s" % (filename, os.getpid(), uuid.uuid4().hex))
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path


# What Triton's compile() puts before it records the kernel's group: these
# wait for put_group. Anything else (launcher stubs, autotuning results) is
# written when it is put. A process that dies in between loses only files
# Triton will make again.
_KERNEL_EXTS = (".source", ".ttir", ".ttgir", ".llir", ".ptx", ".cubin", ".amdgcn", ".hsaco",
                ".json")


def _is_kernel_file(filename: str) -> bool:
    return (filename.endswith(_KERNEL_EXTS) and not filename.endswith(".autotune.json") and
            not filename.startswith(_GROUP_PREFIX))


def _as_bytes(data) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    return str(data).encode("utf-8")


class CacheManager(_TritonCacheManager):  # type: ignore[misc,valid-type]
    """Triton's CacheManager over a kcache store (see the module's doc)."""

    def __init__(self, key: str, override: bool = False, dump: bool = False) -> None:
        self.key = key
        self._files = None
        if override or dump:
            if _FileCacheManager is None:
                raise RuntimeError("kcache.triton: override/dump need Triton's FileCacheManager")
            self._files = _FileCacheManager(key, override=override, dump=dump)
            return
        self._backend = _Backend.get()
        self._dir = os.path.join(materialize_dir(), key)
        # A kernel's files (its IRs, cubin and metadata), held until
        # put_group writes them with the group file in one transaction:
        # one commit per kernel, not one per file.
        self._held: Dict[str, bytes] = {}

    def get_file(self, filename: str) -> Optional[str]:
        """The path of a file Triton stored under this key, or None."""
        if self._files is not None:
            return self._files.get_file(filename)
        data = self._backend.read(self.key, filename)
        if data is None:
            return None
        return _materialize(self._dir, filename, data)

    def put(self, data, filename: str, binary: bool = True) -> str:
        """Keep a file in the store; returns its materialized path."""
        if self._files is not None:
            return self._files.put(data, filename, binary=binary)
        raw = _as_bytes(data)
        if _is_kernel_file(filename):
            self._held[filename] = raw  # written by put_group
        else:
            self._backend.write(self.key, {filename: raw})
        return _materialize(self._dir, filename, raw)

    def get_group(self, filename: str) -> Optional[Dict[str, str]]:
        """The paths of a kernel's files, or None if any of them is missing
        (then Triton compiles it again)."""
        if self._files is not None:
            return self._files.get_group(filename)
        raw = self._backend.read(self.key, _GROUP_PREFIX + filename)
        if raw is None:
            return None
        try:
            children = json.loads(raw)["child_paths"]
        except (ValueError, KeyError, TypeError):
            return None
        result = {}
        for name in children:
            data = self._backend.read(self.key, name)
            if data is None:
                return None
            result[name] = _materialize(self._dir, name, data)
        # A kernel pulled from the remote is recorded here too (prebuilt
        # build and binmeta), as on the machine that compiled it.
        if self._backend.take_arrived(self.key) and filename.endswith(".json") and any(
                n.endswith(".cubin") for n in children):
            _materialize(self._dir, _GROUP_PREFIX + filename, raw)  # the importer reads it
            self._backend.import_kernel(self._dir)
        return result

    def put_group(self, filename: str, group: Dict[str, str]) -> str:
        """Record a kernel's group of files; import the kernel's cubin and
        launch metadata as a prebuilt build."""
        if self._files is not None:
            return self._files.put_group(filename, group)
        # Names only: paths are this machine's. {name: name} keeps the shape
        # of Triton's own group files.
        names = {os.path.basename(n): os.path.basename(n) for n in group}
        grp = json.dumps({"child_paths": names}).encode()
        files = dict(self._held)
        files[_GROUP_PREFIX + filename] = grp
        self._held.clear()
        self._backend.write(self.key, files)
        path = _materialize(self._dir, _GROUP_PREFIX + filename, grp)
        if filename.endswith(".json") and any(n.endswith(".cubin") for n in names):
            self._backend.import_kernel(self._dir)
        self._backend.push(self.key)
        return path


class RemoteCacheBackend:
    """Triton's RemoteCacheBackend over the same store: with
    TRITON_CACHE_MANAGER=triton.runtime.cache:RemoteCacheManager and
    TRITON_REMOTE_CACHE_BACKEND=kcache.triton:RemoteCacheBackend, Triton's
    remote cache manager keeps its files in kcache (and, through kcache's
    remote tier, on other machines)."""

    def __init__(self, key: str) -> None:
        self.key = key
        self._backend = _Backend.get()

    def get(self, filenames: List[str]) -> Dict[str, bytes]:
        out = {}
        for name in filenames:
            data = self._backend.read(self.key, name)
            if data is not None:
                out[name] = data
        return out

    def put(self, filename: str, data: bytes) -> None:
        self._backend.write(self.key, {filename: _as_bytes(data)})
