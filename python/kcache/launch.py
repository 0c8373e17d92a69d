"""The launcher: register kernels from JSON specs and launch them.

A :class:`Launcher` wraps ``kc_launcher_t``: the first call of a kernel for
a shape signature looks its tuning up in the store, and on a miss compiles
the candidates, times them on the real arguments and publishes the winner;
later calls only evaluate the launch geometry and launch.

Arguments of :meth:`Kernel.__call__` are, in the spec's order: for pointer
arguments a torch tensor, an object with ``__cuda_array_interface__``
(CuPy, Numba), a :class:`Buffer` (a raw device address with a shape), or on
the simulation device an object with ``__array_interface__`` (numpy); for
scalars a Python int, float or bool.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import threading
from ctypes import POINTER, byref, c_int64, c_size_t, c_void_p
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from . import _lib
from . import _structs as S
from .errors import ArgumentError, Error, SpecError
from .store import Store

__all__ = ["Launcher", "Kernel", "KernelStats", "Buffer", "Sim", "SimLaunch", "SimCounters"]

KC_EINVAL = -2
_DEVICES = {"cuda": 0, "sim": 1, "none": 2}
_CONTENTION = {"wait": 0, "untuned": 1}
_MODULES_UNBOUNDED = 0xFFFFFFFF  # KC_MODULES_UNBOUNDED
_SIGNED = {"bool", "i8", "i16", "i32", "i64"}
_UNSIGNED = {"u8", "u16", "u32", "u64"}
_FLOAT = {"f32", "f64"}
# torch dtype object -> kcache dtype name, filled on first sight of each.
_torch_dtype_cache: Dict[Any, str] = {}
_raw_stream_fn: Any = None


def _torch_raw_stream(device: int) -> int:
    """torch's current CUDA stream on device, as a CUstream handle. Uses
    torch's raw accessor (no Stream object per call, as Triton and Inductor
    do), else the public API."""
    global _raw_stream_fn
    fn = _raw_stream_fn
    if fn is None:
        torch = sys.modules["torch"]
        fn = getattr(torch._C, "_cuda_getCurrentRawStream", None)
        if fn is None:
            def fn(d: int) -> int:
                return int(torch.cuda.current_stream(d).cuda_stream)
        _raw_stream_fn = fn
    return fn(device)


_TORCH_DTYPES = {
    "torch.float32": "f32", "torch.float16": "f16", "torch.bfloat16": "bf16",
    "torch.float64": "f64", "torch.int8": "i8", "torch.int16": "i16", "torch.int32": "i32",
    "torch.int64": "i64", "torch.uint8": "u8", "torch.uint16": "u16", "torch.uint32": "u32",
    "torch.uint64": "u64", "torch.bool": "bool", "torch.float8_e4m3fn": "fp8e4m3",
    "torch.float8_e5m2": "fp8e5m2",
}  # fmt: skip
_TYPESTR = {
    "f2": "f16", "f4": "f32", "f8": "f64", "i1": "i8", "i2": "i16", "i4": "i32", "i8": "i64",
    "u1": "u8", "u2": "u16", "u4": "u32", "u8": "u64", "b1": "bool",
}  # fmt: skip
_SIZES = {"bool": 1, "i8": 1, "u8": 1, "fp8e4m3": 1, "fp8e5m2": 1, "i16": 2, "u16": 2, "f16": 2,
          "bf16": 2, "i32": 4, "u32": 4, "f32": 4, "i64": 8, "u64": 8, "f64": 8}  # fmt: skip

Spec = Union[Dict[str, Any], str, "os.PathLike[str]"]


class Buffer:
    """A raw device address with a shape, for pointer arguments.

    Args:
        ptr: the device address (on the simulation device, a host address).
        shape: the dims, outermost first.
        dtype: the element type's kcache name (``"f32"``, ``"i64"``, ...),
            checked against the spec's argument type.
        strides: in elements; None for contiguous row-major.
        owner: any object to keep alive as long as the Buffer (the memory's
            owner: a Buffer alone does not keep its memory from being freed).
    """

    __slots__ = ("ptr", "shape", "dtype", "strides", "owner")

    def __init__(self, ptr: int, shape: Sequence[int], dtype: str,
                 strides: Optional[Sequence[int]] = None, owner: Any = None) -> None:  # fmt: skip
        self.owner = owner
        self.ptr = int(ptr)
        self.shape = tuple(int(d) for d in shape)
        self.dtype = dtype
        self.strides = tuple(int(s) for s in strides) if strides is not None else None
        if len(self.shape) > S.KC_MAX_RANK:
            raise ArgumentError(KC_EINVAL, "rank %d is over %d" % (len(self.shape), S.KC_MAX_RANK), "KC_EINVAL")

    def __repr__(self) -> str:
        return "Buffer(0x%x, %r, %r)" % (self.ptr, self.shape, self.dtype)


@dataclass
class KernelStats:
    """``kc_kernel_stats_t``: what a kernel (or, summed, a launcher) did in this process."""

    launches: int
    memo_hits: int
    store_hits: int
    tunes: int
    compiles: int
    builds_reused: int
    candidates_failed: int
    publishes: int
    prefetched: int
    remote_hits: int
    configs: int


def _stats(st: S.KernelStats) -> KernelStats:
    return KernelStats(**{name: int(getattr(st, name)) for name, _ in S.KernelStats._fields_})


# ---- the simulation device ---------------------------------------------------------------


class SimLaunch:
    """One launch as a simulated kernel sees it: grid, block, shared memory and
    the kernel's parameters (read them with :meth:`arg` and its shorthands)."""

    __slots__ = ("grid", "block", "shared", "n_params", "_params")

    def __init__(self, raw: S.SimLaunch) -> None:
        self.grid: Tuple[int, int, int] = tuple(raw.grid)  # type: ignore[assignment]
        self.block: Tuple[int, int, int] = tuple(raw.block)  # type: ignore[assignment]
        self.shared: int = raw.shared
        self.n_params: int = raw.n_params
        self._params = raw.params

    def arg(self, i: int, ctype: Any) -> Any:
        """Parameter i read as ctype (e.g. ``ctypes.c_int32``)."""
        return ctypes.cast(self._params[i], POINTER(ctype))[0]

    def ptr(self, i: int) -> int:
        """Pointer parameter i: the (host) address."""
        return int(self.arg(i, ctypes.c_uint64))

    def i32(self, i: int) -> int:
        """Parameter i as a 32-bit signed integer."""
        return int(self.arg(i, ctypes.c_int32))

    def i64(self, i: int) -> int:
        """Parameter i as a 64-bit signed integer."""
        return int(self.arg(i, ctypes.c_int64))

    def f32(self, i: int) -> float:
        """Parameter i as a float."""
        return float(self.arg(i, ctypes.c_float))

    def f64(self, i: int) -> float:
        """Parameter i as a double."""
        return float(self.arg(i, ctypes.c_double))

    def array(self, i: int, ctype: Any, n: int) -> Any:
        """The n elements of ctype that pointer parameter i points to, as a ctypes array."""
        return (ctype * n).from_address(self.ptr(i))


@dataclass
class SimCounters:
    """``kc_sim_counters_t``."""

    modules_loaded: int
    modules_rejected: int
    launches: int
    bytes_allocated: int
    peak_bytes: int
    modules_unloaded: int
    dead_launches: int  # launches of an unloaded module's function (failed)


class Sim:
    """The CPU simulation device (``kc_sim_t``): kernels run as Python callables.

    A cubin compiled for it (NVRTC works without a GPU) is "loaded" by
    checking its ELF header and finding its entry; a launch calls the
    callable registered for the entry. "Device" memory is host memory.

    Args:
        arch: the simulated device's arch (default ``"sm_90"``).
        sm_count, name, mem_limit, max_threads, max_shared: as
            ``kc_sim_opts_t`` (0 or None: its defaults).
    """

    def __init__(self, arch: Optional[str] = None, sm_count: int = 0, name: Optional[str] = None,
                 mem_limit: int = 0, max_threads: int = 0, max_shared: int = 0) -> None:  # fmt: skip
        L = _lib.lib()
        self._h: Optional[int] = None
        self._callbacks: List[Any] = []
        self.errors: List[BaseException] = []
        """Exceptions raised by registered callables (each failed its launch)."""
        o = S.opts(S.SimOpts)
        o.arch = arch.encode() if arch else None
        o.sm_count = sm_count
        o.name = name.encode() if name else None
        o.mem_limit = mem_limit
        o.max_threads = max_threads
        o.max_shared = max_shared
        h = c_void_p()
        _lib.check(L.kc_sim_create(byref(o), byref(h)), None, "kc_sim_create")
        self._h = h.value

    @property
    def handle(self) -> int:
        """The ``kc_sim_t *``."""
        if self._h is None:
            raise Error(KC_EINVAL, "the simulated device is closed", "KC_EINVAL")
        return self._h

    def register(self, entry: str, fn: Callable[[SimLaunch], Optional[int]],
                 cost: Optional[Callable[[SimLaunch], int]] = None) -> None:  # fmt: skip
        """Run fn for launches of the kernel entry ``entry``.

        fn receives a :class:`SimLaunch` and returns None or 0 (success) or a
        non-zero int (a launch failure). An exception fails the launch and is
        kept in :attr:`errors`. cost (optional) returns the launch's
        simulated time in nanoseconds, a pure function of the launch (the
        tuner's choice must be deterministic); None uses the device's model.
        """

        def run(user: Any, raw: Any) -> int:
            try:
                rc = fn(SimLaunch(raw.contents))
                return int(rc or 0)
            except BaseException as e:  # noqa: B902 - reported through errors
                self.errors.append(e)
                return 1

        def run_cost(user: Any, raw: Any) -> int:
            try:
                return int(cost(SimLaunch(raw.contents)))  # type: ignore[misc]
            except BaseException as e:  # noqa: B902
                self.errors.append(e)
                return 1

        kfn = S.SIM_KERNEL_FN(run)
        cfn = S.SIM_COST_FN(run_cost) if cost is not None else S.SIM_COST_FN()
        self._callbacks.append((kfn, cfn))  # the C side keeps calling them
        _lib.check(_lib.lib().kc_sim_register(self.handle, entry.encode(), kfn, cfn, None), None,
                   "register %s" % entry)  # fmt: skip

    def counters(self) -> SimCounters:
        """Modules loaded and rejected, launches, "device" memory."""
        c = S.SimCounters()
        _lib.lib().kc_sim_counters(self.handle, byref(c))
        return SimCounters(**{n: int(getattr(c, n)) for n, _ in S.SimCounters._fields_})

    def close(self) -> None:
        """Destroy the device; launchers using it must be closed first."""
        if self._h is not None:
            _lib.lib().kc_sim_destroy(self._h)
            self._h = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


# ---- launcher and kernels --------------------------------------------------------------


class Launcher:
    """A kcache launcher (``kc_launcher_t``).

    Args:
        device: ``"cuda"`` (the CUDA driver: the context current on this
            thread, else device ``ordinal``'s primary context), ``"sim"``
            (the CPU simulation device, see :class:`Sim`) or ``"none"``
            (compile and publish builds only; launches fail; needs arch).
        store: None for the default stores (``KCACHE_PATH``, ``KCACHE_DIR``,
            ...), a directory or colon-separated list of directories, an
            open :class:`Store` (kept alive by the launcher), or False for
            no store at all (every process compiles and tunes again).
        arch: the target arch (``"sm_90"``), overriding the device's.
        ordinal: the CUDA device when no context is current.
        sim: the simulated device for ``device="sim"`` (default: a new
            :class:`Sim` with this arch, as :attr:`sim`).
        compile_threads: compile pool size (0: the CPUs this process may run on, at most 16).
        warmup, budget_ms, min_reps, max_reps: tuning runs per candidate
            (0: 2 warmups, 25 ms budget, 5 to 200 timed runs).
        l2_flush: flush L2 before each timed run.
        prefetch: load stored winners' modules at registration.
        warm_store: warm the store's read path when created.
        remote: use the remote tier (``remote_url``, else ``KCACHE_REMOTE``).
        remote_url: ``"redis://host:port"``.
        contention: ``"wait"`` for another process's tuning of the same key,
            or launch ``"untuned"``.
        lease_ttl_ms, lease_wait_ms: single flight across processes (0: 60 s, 30 s).
        max_modules: the most modules loaded from the store kept loaded at
            once; the least recently launched past it are unloaded on a
            background thread and loaded again by their next launch (0:
            ``KCACHE_MAX_MODULES`` if it is a number, else the automatic
            bound: 512, doubling up to 4096 while modules it unloaded are
            launched again; ``None``: no bound).
        log: called as ``log(level, message)`` for the library's messages
            up to log_level (0 error, 1 warning, 2 info, 3 debug), possibly
            from the launcher's threads; exceptions it raises are ignored.

    Close it with :meth:`close` (or use it as a context manager); its
    kernels are invalid afterwards.
    """

    def __init__(self, device: str = "cuda", store: Union[None, bool, str, "os.PathLike[str]", Store] = None,
                 arch: Optional[str] = None, *, ordinal: int = 0, sim: Optional[Sim] = None,
                 compile_threads: int = 0, warmup: int = 0, budget_ms: float = 0.0,
                 min_reps: int = 0, max_reps: int = 0, l2_flush: bool = True,
                 prefetch: bool = True, warm_store: bool = True, remote: bool = True,
                 remote_url: Optional[str] = None, contention: str = "wait",
                 lease_ttl_ms: int = 0, lease_wait_ms: int = 0,
                 max_modules: Optional[int] = 0,
                 log: Optional[Callable[[int, str], None]] = None, log_level: int = 1) -> None:  # fmt: skip
        L = _lib.lib()
        self._h: Optional[int] = None
        if device not in _DEVICES:
            raise Error(KC_EINVAL, "device must be one of %s, not %r" % (", ".join(_DEVICES), device), "KC_EINVAL")
        if contention not in _CONTENTION:
            raise Error(KC_EINVAL, "contention must be 'wait' or 'untuned'", "KC_EINVAL")
        self.device = device
        self.sim: Optional[Sim] = None
        if device == "sim":
            self.sim = sim if sim is not None else Sim(arch=arch)
        self._store = store if isinstance(store, Store) else None
        o = S.opts(S.LauncherOpts)
        o.device = _DEVICES[device]
        o.ordinal = ordinal
        o.sim = self.sim.handle if self.sim is not None else None
        self._keep: List[Any] = []  # bytes the options point to
        o.arch = self._b(arch)
        if store is False:
            o.no_store = 1
        elif isinstance(store, Store):
            o.store = store.handle
        elif store is not None and store is not True:
            o.store_dir = self._b(os.fspath(store))
        o.compile_threads = compile_threads
        o.warmup = warmup
        o.budget_ms = budget_ms
        o.min_reps = min_reps
        o.max_reps = max_reps
        o.no_l2_flush = int(not l2_flush)
        o.no_prefetch = int(not prefetch)
        o.no_warmup = int(not warm_store)
        o.remote_url = self._b(remote_url)
        o.no_remote = int(not remote)
        o.contention = _CONTENTION[contention]
        o.lease_ttl_ms = lease_ttl_ms
        o.lease_wait_ms = lease_wait_ms
        if max_modules is not None and not 0 <= max_modules < _MODULES_UNBOUNDED:
            raise Error(KC_EINVAL, "max_modules must be None or 0 to %d" % (_MODULES_UNBOUNDED - 1), "KC_EINVAL")
        o.max_modules = _MODULES_UNBOUNDED if max_modules is None else max_modules
        if log is not None:

            def on_log(user: Any, level: int, msg: Optional[bytes]) -> None:
                try:
                    log(int(level), _lib.decode(msg))
                except Exception:
                    pass

            self._log_fn = S.LOG_FN(on_log)  # must outlive the launcher
            o.log = self._log_fn
            o.log_level = log_level
        h = c_void_p()
        rc = L.kc_launcher_create(byref(o), byref(h))
        if rc != 0:
            _lib.raise_error(rc, _lib.decode(L.kc_launcher_create_errmsg()), "cannot create the launcher")
        self._h = h.value
        self._kernels: Dict[int, Kernel] = {}

    def _b(self, s: Optional[str]) -> Optional[bytes]:
        if s is None:
            return None
        b = s.encode()
        self._keep.append(b)
        return b

    @property
    def handle(self) -> int:
        """The ``kc_launcher_t *``. Raises if closed."""
        if self._h is None:
            raise Error(KC_EINVAL, "the launcher is closed", "KC_EINVAL")
        return self._h

    @property
    def arch(self) -> str:
        """The target arch, e.g. ``"sm_90"``."""
        return _lib.decode(_lib.lib().kc_launcher_arch(self.handle))

    def close(self) -> None:
        """Destroy the launcher and its kernels (waits for background compiles)."""
        if self._h is not None:
            _lib.lib().kc_launcher_destroy(self._h)
            self._h = None
            for k in self._kernels.values():
                k._h = None
            self._kernels.clear()

    def __enter__(self) -> "Launcher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def stats(self) -> KernelStats:
        """The sum of every kernel's :meth:`Kernel.stats`."""
        st = S.KernelStats()
        _lib.check(_lib.lib().kc_launcher_stats(self.handle, byref(st)), _lib.launcher_msg(self._h))
        return _stats(st)

    def kernels(self, spec: Spec, name: Optional[str] = None, base_dir: Optional[str] = None) -> List["Kernel"]:
        """Register every kernel of a spec (docs/SPEC.md) and return them in order.

        Args:
            spec: a dict (one kernel object, or a whole document with
                ``"version"`` and ``"kernels"``), or the path of a spec file.
            name: names a dict spec in messages (default ``"spec"``).
            base_dir: resolves a dict spec's ``source_file`` and header files.

        Raises :class:`kcache.SpecError` naming the field of an invalid spec.
        """
        L = _lib.lib()
        h = self.handle
        arr = POINTER(c_void_p)()
        n = c_size_t()
        if isinstance(spec, dict):
            doc = spec if "kernels" in spec else {"version": 1, "kernels": [spec]}
            text = json.dumps(doc).encode()
            bdir = os.fspath(base_dir).encode() if base_dir is not None else None
            rc = L.kc_kernel_load_json(h, text, len(text), (name or "spec").encode(), bdir,
                                       byref(arr), byref(n))  # fmt: skip
        else:
            path = os.fspath(spec)
            rc = L.kc_kernel_load_file(h, path.encode(), byref(arr), byref(n))
            if rc == 0:
                try:
                    with open(path, "rb") as fh:
                        doc = json.load(fh)
                except (OSError, ValueError) as e:
                    L.kc_free(arr)
                    raise SpecError(-22, "%s: %s" % (path, e), "KC_ESPEC") from None
        if rc != 0:
            _lib.raise_error(rc, _lib.launcher_msg(h))
        try:
            by_name = {k.get("name"): k for k in doc.get("kernels", []) if isinstance(k, dict)}
            out = []
            for i in range(n.value):
                kh = arr[i]
                kname = _lib.decode(L.kc_kernel_name(kh))
                k = self._kernels.get(kh)
                if k is None:
                    k = Kernel(self, kh, kname, by_name.get(kname, {}))
                    self._kernels[kh] = k
                out.append(k)
            return out
        finally:
            L.kc_free(arr)

    def kernel(self, spec: Spec, name: Optional[str] = None, base_dir: Optional[str] = None) -> "Kernel":
        """Register one kernel: as :meth:`kernels`, for a spec of exactly one kernel."""
        ks = self.kernels(spec, name, base_dir)
        if len(ks) != 1:
            raise SpecError(-22, "the spec has %d kernels; use Launcher.kernels()" % len(ks), "KC_ESPEC")
        return ks[0]


class _ArgSlot:
    """The ctypes storage of one argument, reused from call to call."""

    __slots__ = ("dims", "strides")

    def __init__(self, arg: S.Arg) -> None:
        self.dims = (c_int64 * S.KC_MAX_RANK)()
        self.strides = (c_int64 * S.KC_MAX_RANK)()
        arg.dims = ctypes.cast(self.dims, POINTER(c_int64))
        arg.strides = ctypes.cast(self.strides, POINTER(c_int64))


class Kernel:
    """A registered kernel (``kc_kernel_t``); call it to launch.

    Not created directly: see :meth:`Launcher.kernel`. Calling it from
    several threads at once is safe (each thread has its own argument
    buffers).
    """

    def __init__(self, launcher: Launcher, handle: int, name: str, spec: Dict[str, Any]) -> None:
        self._launcher = launcher
        self._h: Optional[int] = handle
        self.name = name
        """The spec's kernel name."""
        args = spec.get("args", []) or []
        # (name, is_pointer, dtype)
        self.args: List[Tuple[str, bool, str]] = []
        """The spec's arguments: (name, is pointer, dtype)."""
        for a in args:
            t = str(a.get("type", ""))
            self.args.append((str(a.get("name", "")), t.endswith("*"), t.rstrip("*")))
        self._n = len(self.args)
        self._tls = threading.local()
        self._launch = _lib.lib().kc_kernel_launch
        self._host_ok = launcher.device == "sim"

    def _buffers(self) -> Tuple[Any, List[_ArgSlot]]:
        arr = (S.Arg * max(self._n, 1))()
        slots = [_ArgSlot(arr[i]) for i in range(self._n)]
        self._tls.v = (arr, slots)
        return arr, slots

    def _bad(self, i: int, msg: str) -> ArgumentError:
        return ArgumentError(KC_EINVAL, "%s: argument %d '%s': %s" % (self.name, i, self.args[i][0], msg), "KC_EINVAL")

    def __call__(self, *args: Any, stream: Any = None) -> None:
        """Launch with args in the spec's order, on stream.

        stream: a CUstream handle (int), an object with ``cuda_stream``
        (``torch.cuda.Stream``), or None: then, if an argument is a CUDA
        torch tensor, torch's current stream on its device, else the
        default stream. The binding never imports torch itself. Raises :class:`kcache.ArgumentError` for arguments
        that do not match the spec and :class:`kcache.Error` for a failed
        compile, tune or launch.
        """
        h = self._h
        if h is None:
            raise Error(KC_EINVAL, "%s: the launcher is closed" % self.name, "KC_EINVAL")
        if len(args) != self._n:
            raise ArgumentError(KC_EINVAL, "%s: expected %d arguments, got %d" % (self.name, self._n, len(args)), "KC_EINVAL")
        v = getattr(self._tls, "v", None)
        arr, slots = v if v is not None else self._buffers()
        torch_arg = None
        specs = self.args
        for i in range(self._n):
            a = args[i]
            aname, is_ptr, want = specs[i]
            slot = arr[i]
            if not is_ptr:
                if want in _FLOAT:
                    slot.value.f = float(a)
                elif want in _UNSIGNED:
                    slot.value.u = int(a)
                else:
                    slot.value.i = int(a)
                continue
            tp = type(a)
            if tp is Buffer:
                ptr, shape, strides, dt = a.ptr, a.shape, a.strides, a.dtype
            elif tp.__module__ == "torch" or tp.__module__.startswith("torch."):
                torch_arg = a
                ptr = a.data_ptr()
                shape = a.shape
                strides = a.stride()
                tdt = a.dtype
                dt = _torch_dtype_cache.get(tdt)
                if dt is None:
                    dt = _torch_dtype_cache[tdt] = _TORCH_DTYPES.get(str(tdt), str(tdt))
            else:
                iface = getattr(a, "__cuda_array_interface__", None)
                if iface is None and self._host_ok:
                    iface = getattr(a, "__array_interface__", None)
                if iface is None:
                    raise self._bad(i, "expected a tensor, an array with __cuda_array_interface__ "
                                    "or a kcache.Buffer, got %s" % tp.__name__)  # fmt: skip
                ptr = int(iface["data"][0] or 0)
                shape = iface["shape"]
                ts = iface["typestr"]
                dt = _TYPESTR.get(ts[1:], ts)
                bstr = iface.get("strides")
                if bstr is not None:
                    size = _SIZES.get(dt, 1)
                    strides = tuple(s // size for s in bstr)
                else:
                    strides = None
            if want and dt != want:
                raise self._bad(i, "expected %s elements, got %s" % (want, dt))
            rank = len(shape)
            if rank > S.KC_MAX_RANK:
                raise self._bad(i, "rank %d is over %d" % (rank, S.KC_MAX_RANK))
            sl = slots[i]
            dims = sl.dims
            st = sl.strides
            if strides is None:
                acc = 1
                for d in range(rank - 1, -1, -1):
                    dims[d] = shape[d]
                    st[d] = acc
                    acc *= shape[d]
            else:
                for d in range(rank):
                    dims[d] = shape[d]
                    st[d] = strides[d]
            slot.ptr = ptr
            slot.rank = rank
        if stream is not None:
            if not isinstance(stream, int):
                stream = stream.cuda_stream
        elif torch_arg is not None:
            dev = torch_arg.get_device()  # -1 on the CPU
            if dev >= 0:
                stream = _torch_raw_stream(dev)
        rc = self._launch(h, stream, arr, self._n)
        if rc != 0:
            _lib.raise_error(rc, _lib.launcher_msg(self._launcher._h), self.name)

    def wait_compiled(self) -> None:
        """Wait for the compiles started at registration and the prefetch of stored winners."""
        _lib.check(_lib.lib().kc_kernel_wait_compiled(self._handle()), _lib.launcher_msg(self._launcher._h))

    def _handle(self) -> int:
        if self._h is None:
            raise Error(KC_EINVAL, "%s: the launcher is closed" % self.name, "KC_EINVAL")
        return self._h

    def stats(self) -> KernelStats:
        """Launches, memo and store hits, tunes, compiles, ... of this kernel in this process."""
        st = S.KernelStats()
        _lib.check(_lib.lib().kc_kernel_stats(self._handle(), byref(st)), _lib.launcher_msg(self._launcher._h))
        return _stats(st)

    def last_config(self) -> Dict[str, int]:
        """The config chosen for the last signature launched, e.g. ``{"BLOCK": 256}``."""
        out = (S.Param * 64)()
        n = c_size_t()
        _lib.check(_lib.lib().kc_kernel_last_config(self._handle(), out, 64, byref(n)),
                   _lib.launcher_msg(self._launcher._h))  # fmt: skip
        return {_lib.decode(out[i].name): int(out[i].value) for i in range(min(n.value, 64))}

    def __repr__(self) -> str:
        return "<kcache.Kernel %s>" % self.name
