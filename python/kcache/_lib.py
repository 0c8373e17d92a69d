"""Finding, loading and binding libkcache.so.

The library is loaded on first use, not at import, from the first of:

1. ``$KCACHE_LIBRARY``, a path to the library;
2. the copy installed inside this package (``kcache/libkcache.so.0``);
3. ``libkcache.so.0`` through the system's loader (``LD_LIBRARY_PATH``,
   ``ldconfig``).

If none loads, the call that needed it raises :class:`kcache.Error`
(:class:`~kcache.errors.LibraryNotFoundError`) naming every place tried.

Other modules of the package (and extensions) declare more prototypes on
the same handle with :func:`declare` and turn return codes into exceptions
with :func:`check`::

    from kcache import _lib
    fn = _lib.declare("kc_triton_import", ctypes.c_int, [ctypes.c_void_p, ...])
    _lib.check(fn(...), _lib.store_msg(handle))
"""

from __future__ import annotations

import ctypes
import os
import threading
from ctypes import POINTER, c_char_p, c_int, c_size_t, c_uint64, c_void_p
from typing import Any, Callable, Dict, List, NoReturn, Optional, Sequence, Union

from . import _structs as S
from .errors import Error, LibraryNotFoundError, error_class

__all__ = [
    "lib",
    "declare",
    "check",
    "raise_error",
    "err_name",
    "strerror",
    "library_path",
    "store_msg",
    "launcher_msg",
    "open_msg",
]

LIBRARY_NAME = "libkcache.so.0"

_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_path: Optional[str] = None

# name: (restype, argtypes): every function the package's own modules call.
_vp = c_void_p
_PROTOTYPES: Dict[str, Any] = {
    "kc_strerror": (c_char_p, [c_int]),
    "kc_err_name": (c_char_p, [c_int]),
    "kc_free": (None, [_vp]),
    "kc_key_to_hex": (None, [POINTER(S.Key), c_char_p]),
    "kc_key_from_hex": (c_int, [c_char_p, POINTER(S.Key)]),
    "kc_key_prefix_parse": (c_int, [c_char_p, POINTER(S.KeyPrefix)]),
    "kc_rec_kind_name": (c_char_p, [c_int]),
    "kc_rec_kind_from_name": (c_int, [c_char_p]),
    "kc_counter_name": (c_char_p, [c_int]),
    "kc_cand_status_name": (c_char_p, [c_int]),
    "kc_spec_prop_name": (c_char_p, [c_int]),
    "kc_size_parse": (c_int, [c_char_p, POINTER(c_uint64)]),
    "kc_duration_parse": (c_int, [c_char_p, POINTER(c_uint64)]),
    "kc_record_decode": (c_int, [_vp, c_size_t, POINTER(POINTER(S.Record))]),
    "kc_record_derived_key": (c_int, [POINTER(S.Record), POINTER(S.Key)]),
    "kc_build_preimage_decode": (c_int, [_vp, c_size_t, POINTER(POINTER(S.BuildDesc))]),
    "kc_tuning_preimage_decode": (c_int, [_vp, c_size_t, POINTER(POINTER(S.TuningDesc))]),
    "kc_shape_sig_format": (c_int, [_vp, c_size_t, c_char_p, c_size_t]),
    "kc_blob_decode": (
        c_int,
        [_vp, c_size_t, POINTER(S.Key), c_uint64, _vp, c_size_t, POINTER(_vp), POINTER(c_size_t)],
    ),
    "kc_store_open": (c_int, [c_char_p, POINTER(S.StoreOpts), POINTER(_vp)]),
    "kc_store_close": (None, [_vp]),
    "kc_store_errmsg": (c_char_p, [_vp]),
    "kc_store_open_errmsg": (c_char_p, []),
    "kc_store_is_readonly": (c_int, [_vp]),
    "kc_store_path": (c_char_p, [_vp]),
    "kc_store_get_raw": (c_int, [_vp, c_int, POINTER(S.Key), POINTER(_vp), POINTER(c_size_t)]),
    "kc_store_del": (c_int, [_vp, c_int, POINTER(S.Key)]),
    "kc_store_get_cubin": (c_int, [_vp, POINTER(S.Key), POINTER(_vp), POINTER(c_size_t)]),
    "kc_store_iterate": (c_int, [_vp, c_int, S.STORE_ITER_FN, _vp]),
    "kc_store_find": (c_int, [_vp, c_int, POINTER(S.KeyPrefix), POINTER(c_int), POINTER(S.Key)]),
    "kc_store_stats": (c_int, [_vp, POINTER(S.StoreStats)]),
    "kc_store_flush": (c_int, [_vp]),
    "kc_store_gc": (c_int, [_vp, POINTER(S.GcOpts), POINTER(S.GcReport)]),
    "kc_layers_open": (c_int, [c_char_p, POINTER(S.StoreOpts), POINTER(_vp)]),
    "kc_layers_open_default": (c_int, [POINTER(S.StoreOpts), POINTER(_vp)]),
    "kc_layers_wrap": (c_int, [_vp, POINTER(_vp)]),
    "kc_layers_close": (None, [_vp]),
    "kc_layers_count": (c_size_t, [_vp]),
    "kc_layers_store": (_vp, [_vp, c_size_t]),
    "kc_layers_writable": (_vp, [_vp]),
    "kc_layers_warnings": (c_char_p, [_vp]),
    "kc_layers_get": (c_int, [_vp, c_int, POINTER(S.Key), POINTER(POINTER(S.Record)), _vp]),
    "kc_layers_get_cubin": (
        c_int,
        [_vp, POINTER(S.Key), POINTER(_vp), POINTER(c_size_t), POINTER(c_size_t)],
    ),
    "kc_layers_get_build_cubin": (
        c_int,
        [_vp, POINTER(S.Key), POINTER(POINTER(S.Record)), POINTER(_vp), POINTER(c_size_t),
         POINTER(c_size_t)],
    ),  # fmt: skip
    "kc_bundle_export": (c_int, [_vp, POINTER(S.BundleFilter), _vp, POINTER(S.BundleStats)]),
    "kc_bundle_import_mem": (
        c_int,
        [_vp, c_char_p, c_size_t, POINTER(S.BundleImportOpts), POINTER(S.BundleStats)],
    ),
    # groups (kcache.triton)
    "kc_store_group_put": (c_int, [_vp, c_char_p, POINTER(S.GroupFile), c_size_t, c_int]),
    "kc_store_group_read": (
        c_int, [_vp, c_char_p, c_char_p, POINTER(_vp), POINTER(c_size_t)]
    ),  # fmt: skip
    "kc_triton_import": (c_int, [_vp, c_char_p, _vp, POINTER(_vp)]),
    "kc_triton_report_free": (None, [_vp]),
    # the remote tier (kcache.triton with KCACHE_REMOTE)
    "kc_remote_open": (c_int, [c_char_p, _vp, POINTER(_vp)]),
    "kc_remote_close": (None, [_vp]),
    "kc_remote_push_group": (c_int, [_vp, _vp, c_char_p]),
    "kc_remote_pull_group": (c_int, [_vp, _vp, c_char_p]),
    "kc_remote_errmsg": (c_char_p, [_vp]),
    # launcher
    "kc_launcher_create": (c_int, [POINTER(S.LauncherOpts), POINTER(_vp)]),
    "kc_launcher_destroy": (None, [_vp]),
    "kc_launcher_errmsg": (c_char_p, [_vp]),
    "kc_launcher_create_errmsg": (c_char_p, []),
    "kc_launcher_arch": (c_char_p, [_vp]),
    "kc_launcher_store": (_vp, [_vp]),
    "kc_launcher_stats": (c_int, [_vp, POINTER(S.KernelStats)]),
    "kc_kernel_load_file": (c_int, [_vp, c_char_p, POINTER(POINTER(_vp)), POINTER(c_size_t)]),
    "kc_kernel_load_json": (
        c_int,
        [_vp, c_char_p, c_size_t, c_char_p, c_char_p, POINTER(POINTER(_vp)), POINTER(c_size_t)],
    ),
    "kc_kernel_launch": (c_int, [_vp, _vp, POINTER(S.Arg), c_size_t]),
    "kc_kernel_wait_compiled": (c_int, [_vp]),
    "kc_kernel_stats": (c_int, [_vp, POINTER(S.KernelStats)]),
    "kc_kernel_name": (c_char_p, [_vp]),
    "kc_kernel_last_config": (
        c_int, [_vp, POINTER(S.Param), c_size_t, POINTER(c_size_t)]
    ),  # fmt: skip
    "kc_sim_create": (c_int, [POINTER(S.SimOpts), POINTER(_vp)]),
    "kc_sim_destroy": (None, [_vp]),
    "kc_sim_register": (c_int, [_vp, c_char_p, S.SIM_KERNEL_FN, S.SIM_COST_FN, _vp]),
    "kc_sim_counters": (None, [_vp, POINTER(S.SimCounters)]),
}


def _candidates() -> List[str]:
    out = []
    env = os.environ.get("KCACHE_LIBRARY")
    if env:
        out.append(env)
    out.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), LIBRARY_NAME))
    out.append(LIBRARY_NAME)
    return out


def _load() -> ctypes.CDLL:
    global _lib, _path
    tried = []
    for cand in _candidates():
        if os.sep in cand and not os.path.exists(cand):
            tried.append("%s (no such file)" % cand)
            continue
        try:
            handle = ctypes.CDLL(cand)
        except OSError as e:
            tried.append("%s (%s)" % (cand, e))
            continue
        for name, (restype, argtypes) in _PROTOTYPES.items():
            try:
                fn = getattr(handle, name)
            except AttributeError:
                continue  # an older library: calls of it raise when used
            fn.restype = restype
            fn.argtypes = argtypes
        _path = cand
        return handle
    raise LibraryNotFoundError(
        -1,
        "cannot load libkcache: tried "
        + "; ".join(tried)
        + " (set KCACHE_LIBRARY to the library's path, or reinstall the package)",
        "KC_ENOTFOUND",
    )


def lib() -> ctypes.CDLL:
    """The loaded library (a :class:`ctypes.CDLL`), loading it on first use.

    Raises :class:`kcache.Error` if it cannot be found; the message lists
    every place tried.
    """
    global _lib
    h = _lib
    if h is not None:
        return h
    with _lock:
        if _lib is None:
            _lib = _load()
        return _lib


def library_path() -> str:
    """Where the loaded library came from (loading it if needed)."""
    lib()
    assert _path is not None
    return _path


def declare(name: str, restype: Any, argtypes: Sequence[Any]) -> Any:
    """Declare a function's prototype on the shared handle and return it.

    For modules that bind calls this one does not (``kcache.triton``).
    Raises :class:`kcache.Error` (``KC_EUNSUPPORTED``) if the loaded library
    lacks the function.
    """
    h = lib()
    try:
        fn = getattr(h, name)
    except AttributeError:
        raise Error(-29, "%s: not in %s (an older libkcache?)" % (name, _path), "KC_EUNSUPPORTED")
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


def _s(b: Optional[bytes]) -> str:
    return b.decode("utf-8", "replace") if b else ""


def strerror(code: int) -> str:
    """``kc_strerror(code)``."""
    return _s(lib().kc_strerror(code))


def err_name(code: int) -> str:
    """``kc_err_name(code)``, or ``"KC_E?<code>"`` for an unknown code."""
    return _s(lib().kc_err_name(code)) or "KC_E?%d" % code


Owner = Union[None, str, Callable[[], str]]


def raise_error(code: int, owner: Owner = None, context: str = "") -> NoReturn:
    """Raise the :class:`kcache.Error` for ``code``.

    owner gives the detail message: a string, or a callable returning the
    handle's message (:func:`store_msg`, :func:`launcher_msg`), read at once
    since the library keeps one message per thread. context, if given,
    starts the message (what was being done).
    """
    detail = owner() if callable(owner) else (owner or "")
    text = strerror(code)
    if detail and detail != text:
        text = "%s: %s" % (text, detail)
    if context:
        text = "%s: %s" % (context, text)
    raise error_class(code)(code, text, err_name(code))


def check(rc: int, owner: Owner = None, context: str = "") -> int:
    """Return ``rc`` if it is ``KC_OK`` (0), else raise its :class:`kcache.Error`."""
    if rc != 0:
        raise_error(rc, owner, context)
    return rc


def store_msg(handle: Optional[int]) -> Callable[[], str]:
    """An owner for :func:`check`: the store handle's message."""
    return lambda: _s(lib().kc_store_errmsg(handle))


def launcher_msg(handle: Optional[int]) -> Callable[[], str]:
    """An owner for :func:`check`: the launcher's message."""
    return lambda: _s(lib().kc_launcher_errmsg(handle))


def open_msg() -> str:
    """``kc_store_open_errmsg()``: why the last store or layers open failed."""
    return _s(lib().kc_store_open_errmsg())


def decode(b: Optional[bytes]) -> str:
    """A C string from the library as ``str`` ("" for NULL)."""
    return _s(b)
