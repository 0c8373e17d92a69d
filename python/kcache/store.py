"""The kcache store: records, stats, gc, verify and bundles, as Python objects.

:class:`Store` opens a store directory, a colon-separated list of layered
stores, or (``Store()``) the default stores of the environment, as the C
library chooses them (``kc_layers_open_default``): the layers of
``KCACHE_PATH`` if set, else ``KCACHE_DIR``, else ``$XDG_CACHE_HOME/kcache``,
else ``$HOME/.cache/kcache``.
"""

from __future__ import annotations

import ctypes
import datetime
import fnmatch
import os
from ctypes import POINTER, byref, c_int, c_size_t, c_uint64, c_void_p
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from . import _lib
from . import _structs as S
from .errors import Error, NotFoundError, ReadOnlyError

__all__ = [
    "Store",
    "Layer",
    "StoreStats",
    "Entry",
    "Problem",
    "VerifyReport",
    "GcItem",
    "GcReport",
    "BundleStats",
    "parse_size",
    "parse_duration",
]

KC_STORE_RDONLY = 1
KC_STORE_NOCREATE = 2
KC_ENOTFOUND = -1
KC_EINVAL = -2
KC_EREADONLY = -8

KINDS = ("blob", "build", "tuning", "usage", "lease", "meta", "binmeta", "group")
_DEFAULT_LS_KINDS = ("blob", "build", "binmeta", "tuning", "group")
_PREFER = {"existing": 0, "incoming": 1, "faster": 2}

PathLike = Union[str, "os.PathLike[str]"]
Size = Union[int, str]
Duration = Union[int, float, str, datetime.timedelta]


# ---- small conversions -------------------------------------------------------


def _hex(key: S.Key) -> str:
    return bytes(key.b).hex()


def _key(text: str) -> S.Key:
    k = S.Key()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 16:
        raise Error(KC_EINVAL, "not a key of 32 hex digits: %r" % text, "KC_EINVAL")
    ctypes.memmove(k.b, raw, 16)
    return k


def _str(b: Optional[bytes]) -> str:
    return _lib.decode(b)


def _kind_name(kind: int) -> str:
    return _str(_lib.lib().kc_rec_kind_name(kind)) or "kind%d" % kind


def _kind_num(kind: str) -> int:
    n = _lib.lib().kc_rec_kind_from_name(kind.encode())
    if n == 0 or kind == "meta":
        raise Error(KC_EINVAL, "unknown record kind %r (one of %s)" % (kind, ", ".join(KINDS)), "KC_EINVAL")
    return int(n)


def _params(p: Any, n: int) -> Dict[str, int]:
    return {_str(p[i].name): int(p[i].value) for i in range(n)}


def _strings(p: Any, n: int) -> List[str]:
    return [_str(p[i]) for i in range(n)]


def parse_size(value: Size) -> int:
    """Bytes from an int (bytes) or a size string as ``kc_size_parse`` reads it.

    Strings follow ccache's grammar: ``"500M"`` (powers of 1000), ``"1.5Gi"``
    (powers of 1024), ``"4096B"``; a bare number is GiB (``"5"`` is 5 GiB).
    """
    if isinstance(value, bool):
        raise TypeError("a size is an int or a string, not a bool")
    if isinstance(value, int):
        if value < 0:
            raise Error(KC_EINVAL, "negative size %d" % value, "KC_EINVAL")
        return value
    out = c_uint64()
    _lib.check(_lib.lib().kc_size_parse(str(value).encode(), byref(out)), None, "size %r" % value)
    return out.value


def parse_duration(value: Duration) -> int:
    """Seconds from an int or float (seconds), a timedelta, or a string as
    ``kc_duration_parse`` reads it (``"30d"``, ``"12h"``, ``"45m"``, ``"3600"``)."""
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool):
        raise TypeError("a duration is a number, a timedelta or a string, not a bool")
    if isinstance(value, (int, float)):
        if value < 0:
            raise Error(KC_EINVAL, "negative duration %r" % value, "KC_EINVAL")
        return int(value)
    out = c_uint64()
    _lib.check(_lib.lib().kc_duration_parse(str(value).encode(), byref(out)), None, "duration %r" % value)
    return out.value


# ---- result types -----------------------------------------------------------------


@dataclass
class Layer:
    """One store of a layered search path (searched in order)."""

    path: str
    readonly: bool


@dataclass
class StoreStats:
    """``kc_store_stats`` of the store: record counts by kind, sizes and counters."""

    path: str
    records: Dict[str, int]
    blob_raw_bytes: int
    blob_stored_bytes: int
    counters: Dict[str, int]
    file_bytes: int
    map_bytes: int
    used_bytes: int
    format_version: int
    readonly: bool
    record_bytes: int = 0  # stored bytes of every blob, build, tuning, binmeta, group
    totals_scanned: bool = False  # the byte sums came from a scan (an older store)


@dataclass
class Entry:
    """One record as ``cachectl ls`` lists it.

    ``arch`` and ``name`` are the target arch and kernel entry (a blob's come
    from the first build that uses it); ``info`` holds the kind's fields
    (blob: raw_bytes, ratio, builds; build: blob, params, toolchain,
    registers (None when unknown: built without a GPU), created; tuning: winner, winner_build, device, candidates,
    created; binmeta: compiler, compiler_version, num_warps, num_ctas,
    dyn_smem, global_scratch, args; usage: last_use, uses). ``damaged`` is
    the reason a record could not be decoded, else None.
    """

    kind: str
    key: str
    bytes: int
    layer: int = 0
    arch: Optional[str] = None
    name: Optional[str] = None
    info: Dict[str, Any] = field(default_factory=dict)
    damaged: Optional[str] = None


@dataclass
class Problem:
    """A record that failed ``verify``."""

    kind: str
    key: str
    reason: str
    removed: bool = False


@dataclass
class VerifyReport:
    """What :meth:`Store.verify` checked and found."""

    path: str
    checked: int
    problems: List[Problem]
    removed: int

    @property
    def ok(self) -> bool:
        """True when no problem is left (none found, or every one removed)."""
        return self.removed == len(self.problems)


@dataclass
class GcItem:
    """A record gc removed (or, in a dry run, would remove)."""

    kind: str
    key: str
    last_use: int
    bytes: int


@dataclass
class GcReport:
    """``kc_gc_report_t``: what :meth:`Store.gc` did or would do."""

    evicted: Dict[str, int]
    bytes_freed: int
    size_before: int
    size_after: int
    file_before: int
    file_after: int
    skipped: int
    usage_swept: int
    leases_swept: int
    items: List[GcItem]
    dry_run: bool


@dataclass
class BundleStats:
    """``kc_bundle_stats_t``: what an export wrote or an import found and did."""

    records: int
    blobs: int
    builds: int
    tunings: int
    dicts: int
    binmeta: int
    bytes: int
    damaged: int
    added: int
    present: int
    replaced: int
    kept: int
    is_signed: bool
    signer: Optional[str]


def _bundle_stats(st: S.BundleStats) -> BundleStats:
    return BundleStats(
        records=st.records, blobs=st.blobs, builds=st.builds, tunings=st.tunings,
        dicts=st.dicts, binmeta=st.binmeta, bytes=st.bytes, damaged=st.damaged,
        added=st.added, present=st.present, replaced=st.replaced, kept=st.kept,
        is_signed=bool(st.is_signed),
        signer=bytes(st.signer).hex() if st.is_signed else None,
    )  # fmt: skip


# ---- record decoding --------------------------------------------------------------


def _shape(buf: S.Buf) -> str:
    out = ctypes.create_string_buffer(1024)
    if _lib.lib().kc_shape_sig_format(buf.data, buf.size, out, len(out)) != 0:
        return "(undecodable)"
    return _str(out.value)


def _build_desc(pre: S.Buf) -> Optional[Dict[str, Any]]:
    L = _lib.lib()
    d = POINTER(S.BuildDesc)()
    if L.kc_build_preimage_decode(pre.data, pre.size, byref(d)) != 0:
        return None
    try:
        b = d.contents
        return {
            "source_kind": int(b.source_kind),
            "source_digest": _hex(b.source_digest),
            "entry": _str(b.entry),
            "options": _strings(b.options, b.n_options),
            "params": _params(b.params, b.n_params),
            "arch": _str(b.arch),
            "toolchain": _str(b.toolchain),
        }
    finally:
        L.kc_free(d)


def _tuning_desc(pre: S.Buf) -> Optional[Dict[str, Any]]:
    L = _lib.lib()
    d = POINTER(S.TuningDesc)()
    if L.kc_tuning_preimage_decode(pre.data, pre.size, byref(d)) != 0:
        return None
    try:
        t = d.contents
        return {
            "source_kind": int(t.source_kind),
            "source_digest": _hex(t.source_digest),
            "entry": _str(t.entry),
            "options": _strings(t.options, t.n_options),
            "space_digest": _hex(t.space_digest),
            "shape": _shape(t.shape_sig),
            "arch": _str(t.arch),
            "sm_count": int(t.sm_count),
            "device_name": _str(t.device_name),
        }
    finally:
        L.kc_free(d)


def _record_fields(rec: S.Record) -> Dict[str, Any]:
    """The decoded fields of a record, by kind."""
    L = _lib.lib()
    k = rec.kind
    u = rec.u
    if k == 1:
        b = u.blob
        return {"codec": b.codec, "dict_id": b.dict_id, "raw_size": b.raw_size}
    if k == 2:
        b = u.build
        # The driver measures these; a build made without a GPU has 0 in all
        # of them, max_threads 0 saying so: unknown is None, as cachectl's null.
        known = b.max_threads != 0
        return {
            "blob": _hex(b.blob), "entry": _str(b.entry),
            "registers": b.registers if known else None,
            "static_smem": b.static_smem if known else None,
            "max_threads": b.max_threads if known else None,
            "local_bytes": b.local_bytes if known else None,
            "compile_us": b.compile_us, "created": b.created,
            "preimage": _build_desc(b.preimage),
        }  # fmt: skip
    if k == 3:
        t = u.tuning
        cands = []
        for i in range(t.n_candidates):
            c = t.candidates[i]
            cands.append({
                "params": _params(c.params, c.n_params),
                "build": _hex(c.build),
                "status": _str(L.kc_cand_status_name(c.status)),
                "median_ns": c.median_ns,
                "reason": _str(c.reason),
            })  # fmt: skip
        return {
            "winner": _params(t.winner, t.n_winner), "winner_build": _hex(t.winner_build),
            "candidates": cands, "tuning_us": t.tuning_us, "device_name": _str(t.device_name),
            "arch": _str(t.arch), "sm_count": t.sm_count, "driver_version": t.driver_version,
            "created": t.created, "preimage": _tuning_desc(t.preimage),
        }  # fmt: skip
    if k == 4:
        return {"last_use": u.usage.last_use, "uses": u.usage.uses}
    if k == 5:
        le = u.lease
        return {"host": _str(le.host), "boot_id": _str(le.boot_id), "pid": le.pid,
                "start": le.start, "ttl_ms": le.ttl_ms}  # fmt: skip
    if k == 6:
        return {"value": ctypes.string_at(u.meta.value.data, u.meta.value.size)}
    if k == 7:
        m = u.binmeta
        return {
            "build": _hex(m.build), "entry": _str(m.entry), "arch": _str(m.arch),
            "threads_per_block": m.threads_per_block, "num_warps": m.num_warps,
            "warp_size": m.warp_size, "num_ctas": m.num_ctas, "dyn_smem": m.dyn_smem,
            "global_scratch_size": m.global_scratch_size,
            "global_scratch_align": m.global_scratch_align,
            "profile_scratch_size": m.profile_scratch_size,
            "profile_scratch_align": m.profile_scratch_align, "flags": m.flags,
            "compiler": _str(m.compiler), "compiler_version": _str(m.compiler_version),
            "args": [{"name": _str(m.args[i].name), "type": _str(m.args[i].type)}
                     for i in range(m.n_args)],
            "spec": [{"arg": m.spec[i].arg, "prop": _str(L.kc_spec_prop_name(m.spec[i].prop))}
                     for i in range(m.n_spec)],
        }  # fmt: skip
    if k == 8:
        g = u.group
        return {
            "name": _str(g.name), "created": g.created, "updated": g.updated,
            "files": [{"name": _str(g.files[i].name), "blob": _hex(g.files[i].blob),
                       "size": g.files[i].size} for i in range(g.n_files)],
        }  # fmt: skip
    return {}


def _decode(data: Any, n: Optional[int] = None) -> Tuple[int, Optional[Dict[str, Any]], int]:
    """(code, fields, kind) of encoded record bytes, or of the n bytes a
    pointer gives (decoded where they are, not copied)."""
    L = _lib.lib()
    rec = POINTER(S.Record)()
    rc = L.kc_record_decode(data, len(data) if n is None else n, byref(rec))
    if rc != 0:
        return rc, None, 0
    try:
        return 0, _record_fields(rec.contents), int(rec.contents.kind)
    finally:
        L.kc_free(rec)


def _walk(handle: int, kind: int, each: Callable[[int, str, Any, int], Any]) -> List[Any]:
    """each(kind, key hex, data pointer, size) of every record of kind (0:
    all), called inside the read transaction; their results, in order."""
    out: List[Any] = []

    def visit(user: Any, k: int, key: Any, data: Any, n: int) -> int:
        out.append(each(k, bytes(key.contents.b).hex(), data, n))
        return 0

    cb = S.STORE_ITER_FN(visit)
    rc = _lib.lib().kc_store_iterate(handle, kind, cb, None)
    if rc not in (0, KC_ENOTFOUND):
        _lib.raise_error(rc, _lib.store_msg(handle), "iterate")
    return out


def _iterate(handle: int, kind: int) -> List[Tuple[int, str, bytes]]:
    """Every record of kind (0: all) as (kind, key hex, bytes), copied out."""
    return _walk(handle, kind, lambda k, key, data, n: (k, key, ctypes.string_at(data, n)))


def _iterate_decoded(handle: int, kind: int) -> List[Tuple[int, str, int, int, Optional[Dict[str, Any]], int]]:
    """Every record of kind as (kind, key hex, size, code, fields, decoded
    kind), decoded where LMDB holds it: a blob's bytes are not copied."""
    return _walk(handle, kind, lambda k, key, data, n: (k, key, n) + _decode(data, n))


# ---- the store ----------------------------------------------------------------------


class Store:
    """A kcache store, or a stack of layered stores.

    Args:
        path: a store directory, a colon-separated list of directories
            searched in order (``kcache/layers.h``; an entry ``ro=DIR`` is
            a read-only layer, even for root), or None for the
            default stores of the environment (``KCACHE_PATH``, else
            ``KCACHE_DIR``, else ``$XDG_CACHE_HOME/kcache``, else
            ``$HOME/.cache/kcache``).
        readonly: open read-only even where the directory is writable.
        create: create a missing single store directory (default True);
            False makes a missing one raise :class:`kcache.NotFoundError`.

    Lookups (:meth:`get`, :meth:`show`, :meth:`ls`) search every layer;
    :meth:`stats`, :meth:`verify`, :meth:`gc`, :meth:`export` and
    :meth:`import_` act on the primary store, the first writable layer
    (else the first layer). Usable as a context manager; :meth:`close`
    releases it. A Store may be used from several threads.
    """

    def __init__(self, path: Optional[PathLike] = None, readonly: bool = False, create: bool = True) -> None:
        L = _lib.lib()
        self._layers: Optional[int] = None
        self._own: Optional[int] = None
        o = S.opts(S.StoreOpts)
        o.flags = (KC_STORE_RDONLY if readonly else 0) | (0 if create else KC_STORE_NOCREATE)
        h = c_void_p()
        if path is None:
            rc = L.kc_layers_open_default(byref(o), byref(h))
            _lib.check(rc, _lib.open_msg(), "cannot open the default stores")
            self._layers = h.value
        else:
            p = os.fspath(path)
            # A search path (or one entry marked read-only, "ro=DIR") is
            # the C library's to parse, as KCACHE_PATH is.
            if ":" in p or p.startswith("ro="):
                rc = L.kc_layers_open(p.encode(), byref(o), byref(h))
                _lib.check(rc, _lib.open_msg(), "cannot open stores %s" % p)
                self._layers = h.value
            else:
                rc = L.kc_store_open(p.encode(), byref(o), byref(h))
                _lib.check(rc, _lib.open_msg(), "cannot open store %s" % p)
                self._own = h.value
                lh = c_void_p()
                rc = L.kc_layers_wrap(self._own, byref(lh))
                if rc != 0:
                    L.kc_store_close(self._own)
                    self._own = None
                    _lib.check(rc, None, "cannot open store %s" % p)
                self._layers = lh.value
        primary = L.kc_layers_writable(self._layers) or L.kc_layers_store(self._layers, 0)
        self._primary: int = primary

    # -- lifetime

    def close(self) -> None:
        """Flush buffered usage stamps and counters and close every layer. Idempotent."""
        L = _lib.lib()
        if self._layers is not None:
            L.kc_layers_close(self._layers)
            self._layers = None
        if self._own is not None:
            L.kc_store_close(self._own)
            self._own = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        if self._layers is None:
            return "<kcache.Store closed>"
        return "<kcache.Store %s%s>" % (self.path, " (read-only)" if self.readonly else "")

    @property
    def handle(self) -> int:
        """The primary store's ``kc_store_t *`` (for other bindings). Raises if closed."""
        if self._layers is None:
            raise Error(KC_EINVAL, "the store is closed", "KC_EINVAL")
        return self._primary

    @property
    def layers_handle(self) -> int:
        """The ``kc_layers_t *`` of the open layers. Raises if closed."""
        self.handle
        assert self._layers is not None
        return self._layers

    @property
    def path(self) -> str:
        """The primary store's directory."""
        return _str(_lib.lib().kc_store_path(self.handle))

    @property
    def readonly(self) -> bool:
        """True when no layer is writable."""
        return bool(_lib.lib().kc_store_is_readonly(self.handle))

    @property
    def layers(self) -> List[Layer]:
        """The open layers, in search order."""
        L = _lib.lib()
        lh = self.layers_handle
        out = []
        for i in range(L.kc_layers_count(lh)):
            st = L.kc_layers_store(lh, i)
            out.append(Layer(_str(L.kc_store_path(st)), bool(L.kc_store_is_readonly(st))))
        return out

    @property
    def warnings(self) -> str:
        """Why layers of the search path were skipped ("" when none were)."""
        return _str(_lib.lib().kc_layers_warnings(self.layers_handle))

    def _stores(self) -> List[int]:
        L = _lib.lib()
        lh = self.layers_handle
        return [L.kc_layers_store(lh, i) for i in range(L.kc_layers_count(lh))]

    # -- reading

    def stats(self) -> StoreStats:
        """Record counts by kind, sizes and the persistent counters of the primary store."""
        L = _lib.lib()
        h = self.handle
        st = S.StoreStats()
        _lib.check(L.kc_store_stats(h, byref(st)), _lib.store_msg(h), "stats")
        counters = {}
        for i in range(S.KC_COUNTER_COUNT):
            name = _str(L.kc_counter_name(i))
            if name:
                counters[name] = int(st.counters[i])
        return StoreStats(
            path=self.path,
            records={_kind_name(k): int(st.records[k]) for k in range(1, S.KC_REC_KIND_MAX + 1)},
            blob_raw_bytes=st.blob_raw_bytes, blob_stored_bytes=st.blob_stored_bytes,
            counters=counters, file_bytes=st.file_bytes, map_bytes=st.map_bytes,
            used_bytes=st.used_bytes, format_version=st.format_version,
            readonly=bool(st.readonly), record_bytes=st.record_bytes,
            totals_scanned=bool(st.totals_scanned),
        )  # fmt: skip

    def ls(self, kind: Optional[str] = None, arch: Optional[str] = None, name: Optional[str] = None) -> List[Entry]:
        """List records of every layer, as ``cachectl ls`` does.

        Args:
            kind: ``"blob"``, ``"build"``, ``"binmeta"``, ``"tuning"``,
                ``"usage"``, ``"lease"`` or ``"all"``; None lists blobs,
                builds, binmetas and tunings.
            arch: only records for this target (``"sm_90"``); a blob matches
                through the builds that use it.
            name: only records whose kernel entry matches this fnmatch glob.
        """
        if kind is None:
            kinds = {_kind_num(k) for k in _DEFAULT_LS_KINDS}
        elif kind == "all":
            kinds = {_kind_num(k) for k in KINDS if k != "meta"}
        else:
            kinds = {_kind_num(kind)}
        filtered = arch is not None or name is not None

        def match(a: Optional[str], n: Optional[str]) -> bool:
            if arch is not None and a != arch:
                return False
            if name is not None and (n is None or not fnmatch.fnmatchcase(n, name)):
                return False
            return True

        # Only the kinds asked for (and builds, which name a blob's users),
        # in kind order as one walk of everything would give them.
        walk = sorted(kinds | ({2} if 1 in kinds else set()))
        out: List[Entry] = []
        for layer, h in enumerate(self._stores()):
            uses: Dict[str, List[Tuple[str, str]]] = {}
            decoded = []
            for kind_num in walk:
                for k, key, size, rc, f, rk in _iterate_decoded(h, kind_num):
                    if rc == 0 and rk != k:
                        rc = -5
                    decoded.append((k, key, size, rc, f))
                    if rc == 0 and k == 2 and f is not None and f["preimage"]:
                        uses.setdefault(f["blob"], []).append((f["preimage"]["arch"], f["preimage"]["entry"]))
            for k, key, size, rc, f in decoded:
                if k not in kinds:
                    continue
                e = Entry(kind=_kind_name(k), key=key, bytes=size, layer=layer)
                if rc != 0 or f is None:
                    if filtered:
                        continue
                    e.damaged = _lib.strerror(rc)
                    out.append(e)
                    continue
                if k == 1:
                    users = uses.get(key, [])
                    hit = next((u for u in users if match(u[0], u[1])), None)
                    if filtered and hit is None:
                        continue
                    if hit is not None:
                        e.arch, e.name = hit
                    e.info = {"raw_bytes": f["raw_size"], "ratio": f["raw_size"] / max(size, 1),
                              "builds": len(users)}  # fmt: skip
                elif k == 2:
                    pre = f["preimage"]
                    e.arch = pre["arch"] if pre else None
                    e.name = pre["entry"] if pre else None
                    if not match(e.arch, e.name):
                        continue
                    e.info = {"blob": f["blob"], "params": pre["params"] if pre else None,
                              "toolchain": pre["toolchain"] if pre else None,
                              "registers": f["registers"], "created": f["created"]}  # fmt: skip
                elif k == 3:
                    pre = f["preimage"]
                    e.arch = f["arch"]
                    e.name = pre["entry"] if pre else None
                    if not match(e.arch, e.name):
                        continue
                    e.info = {"winner": f["winner"], "winner_build": f["winner_build"],
                              "device": f["device_name"], "candidates": len(f["candidates"]),
                              "created": f["created"]}  # fmt: skip
                elif k == 7:
                    e.arch, e.name = f["arch"], f["entry"]
                    if not match(e.arch, e.name):
                        continue
                    e.info = {"compiler": f["compiler"], "compiler_version": f["compiler_version"],
                              "num_warps": f["num_warps"], "num_ctas": f["num_ctas"],
                              "dyn_smem": f["dyn_smem"], "global_scratch": f["global_scratch_size"],
                              "args": len(f["args"])}  # fmt: skip
                else:
                    if filtered:
                        continue
                    e.info = f
                out.append(e)
        return out

    def _resolve(self, key: str) -> Tuple[int, int, S.Key, int]:
        """(layer index, store handle, key, kind) of the record a hex key or
        prefix names, searching the layers in order: blobs, builds and
        tunings first, then binmeta, usage and lease records (which share
        their keys with the records they describe)."""
        L = _lib.lib()
        prefix = S.KeyPrefix()
        _lib.check(L.kc_key_prefix_parse(key.encode(), byref(prefix)), None, "key %r" % key)
        for group in ((1, 2, 3), (7, 4, 5)):
            for i, h in enumerate(self._stores()):
                hits = []
                for kind in group:
                    k_out = c_int()
                    key_out = S.Key()
                    rc = L.kc_store_find(h, kind, byref(prefix), byref(k_out), byref(key_out))
                    if rc == KC_ENOTFOUND:
                        continue
                    _lib.check(rc, _lib.store_msg(h), "key %s" % key)
                    hits.append((i, h, key_out, int(k_out.value)))
                if len(hits) > 1:
                    _lib.raise_error(-16, "%s matches a %s and a %s" % (
                        key, _kind_name(hits[0][3]), _kind_name(hits[1][3])))  # fmt: skip
                if hits:
                    return hits[0]
        raise NotFoundError(KC_ENOTFOUND, "no record matches %s" % key, "KC_ENOTFOUND")

    def show(self, key: str) -> Dict[str, Any]:
        """The decoded record a key or unique hex prefix (8+ digits) names.

        Returns a dict with ``kind``, ``key``, ``layer``, ``bytes`` and the
        record's fields (a build's and a tuning's ``preimage`` decoded; a
        build with launch metadata also carries it as ``binmeta``). Raises
        :class:`kcache.NotFoundError` on no match, ``KC_EAMBIGUOUS`` on several.
        """
        layer, h, k, kind = self._resolve(key)
        data = self._raw(h, kind, k)
        rc, f, rk = _decode(data)
        _lib.check(rc, None, "%s %s" % (_kind_name(kind), _hex(k)))
        assert f is not None
        out: Dict[str, Any] = {"kind": _kind_name(kind), "key": _hex(k), "layer": layer, "bytes": len(data)}
        out.update(f)
        if kind == 2:
            try:
                braw = self._raw(h, 7, k)
            except Error:
                braw = b""
            if braw:
                rc, bf, _ = _decode(braw)
                out["binmeta"] = bf if rc == 0 else None
        return out

    def _raw(self, h: int, kind: int, k: S.Key) -> bytes:
        L = _lib.lib()
        p = c_void_p()
        n = c_size_t()
        _lib.check(L.kc_store_get_raw(h, kind, byref(k), byref(p), byref(n)), _lib.store_msg(h),
                   "%s %s" % (_kind_name(kind), _hex(k)))  # fmt: skip
        try:
            return ctypes.string_at(p, n.value)
        finally:
            L.kc_free(p)

    def get(self, key: str) -> bytes:
        """The cubin a key names: a blob's, a build's, or a tuning's winner's.

        As ``cachectl get``: a key or unique prefix of a blob, build or
        tuning record, looked up through the layers, and every read
        verified. Raises :class:`kcache.NotFoundError` if absent or damaged.
        """
        L = _lib.lib()
        lh = self.layers_handle
        _, _, k, kind = self._resolve(key)
        p = c_void_p()
        n = c_size_t()
        if kind == 1:
            _lib.check(L.kc_layers_get_cubin(lh, byref(k), byref(p), byref(n), None), None,
                       "blob %s" % _hex(k))  # fmt: skip
        elif kind in (2, 3):
            if kind == 3:
                rec = POINTER(S.Record)()
                _lib.check(L.kc_layers_get(lh, 3, byref(k), byref(rec), None), None, "tuning %s" % _hex(k))
                k = S.Key.from_buffer_copy(rec.contents.u.tuning.winner_build)
                L.kc_free(rec)
            rec = POINTER(S.Record)()
            rc = L.kc_layers_get_build_cubin(lh, byref(k), byref(rec), byref(p), byref(n), None)
            _lib.check(rc, None, "build %s" % _hex(k))
            L.kc_free(rec)
        else:
            raise Error(KC_EINVAL, "%s %s holds no cubin" % (_kind_name(kind), _hex(k)), "KC_EINVAL")
        try:
            return ctypes.string_at(p, n.value)
        finally:
            L.kc_free(p)

    # -- maintenance

    def verify(self, repair: bool = False) -> VerifyReport:
        """Check every record of the primary store, as ``cachectl verify``.

        Each record must decode, be of its database's kind and (build,
        tuning, group) match its key; a blob must decompress to bytes
        hashing to its key; a build's blob, a tuning's winning build and
        the blob of every file of a group must exist, undamaged.
        With repair, bad records are deleted (``removed`` counts them).
        """
        L = _lib.lib()
        h = self.handle
        problems: List[Problem] = []
        recs = _iterate(h, 0)
        bad = set()

        def problem(kind: int, key: str, reason: str) -> None:
            problems.append(Problem(_kind_name(kind), key, reason))
            bad.add((kind, key))

        def check_ref(kind: int, key: str, ref_kind: int, ref: str, what: str) -> None:
            if (ref_kind, ref) in bad:
                problem(kind, key, "%s %s is damaged" % (what, ref[:8]))
            elif (ref_kind, ref) not in present:
                problem(kind, key, "%s %s: missing" % (what, ref[:8]))

        checked = []
        for kind, key, data in recs:
            rc, f, rk = _decode(data)
            if rc != 0:
                problem(kind, key, "damaged record: %s" % _lib.strerror(rc))
                continue
            if rk != kind:
                problem(kind, key, "holds a %s record" % _kind_name(rk))
                continue
            checked.append((kind, key, data, f))
        present = {(k, key) for k, key, _ in recs}
        for kind, key, data, f in checked:
            k = _key(key)
            if kind == 1:
                raw = c_void_p()
                n = c_size_t()
                rc = L.kc_blob_decode(data, len(data), byref(k), 0, None, 0, byref(raw), byref(n))
                L.kc_free(raw)
                if rc == -29:  # a dictionary: only the store's read path has it
                    rc = L.kc_store_get_cubin(h, byref(k), byref(raw), byref(n))
                    L.kc_free(raw)
                if rc != 0:
                    problem(kind, key, "cubin does not decode to its key: %s"
                            % ("corrupt data" if rc == KC_ENOTFOUND else _lib.strerror(rc)))  # fmt: skip
            elif kind in (2, 3, 8):
                rec = POINTER(S.Record)()
                derived = S.Key()
                ok = L.kc_record_decode(data, len(data), byref(rec)) == 0 and \
                    L.kc_record_derived_key(rec, byref(derived)) == 0 and _hex(derived) == key  # fmt: skip
                L.kc_free(rec)
                if not ok:
                    problem(kind, key, "key does not match the group's name" if kind == 8
                            else "key does not match the record's preimage")  # fmt: skip
                    continue
                assert f is not None
                if kind == 8:  # a group: the blob of every file it names
                    for fl in f["files"]:
                        check_ref(kind, key, 1, fl["blob"], "the blob of file %s" % fl["name"])
                elif kind == 2:
                    check_ref(kind, key, 1, f["blob"], "its blob")
                else:
                    check_ref(kind, key, 2, f["winner_build"], "its winning build")
        removed = 0
        for p in problems if repair else []:
            rc = L.kc_store_del(h, _kind_num(p.kind), byref(_key(p.key)))
            if rc in (0, KC_ENOTFOUND):
                p.removed = True
                removed += 1
        return VerifyReport(self.path, len(recs), problems, removed)

    def gc(self, max_size: Optional[Size] = None, max_age: Optional[Duration] = None,
           dry_run: bool = False, list_items: bool = True) -> GcReport:  # fmt: skip
        """Evict least recently used records and sweep unreferenced blobs (``kc_store_gc``).

        Args:
            max_size: evict until the store's size is at most this: bytes as
                an int, or a string such as ``"500M"`` or ``"2Gi"``.
            max_age: evict what was last used longer ago than this: seconds,
                a timedelta, or a string such as ``"30d"``.
            dry_run: plan and report only.
            list_items: fill the report's ``items``.
        """
        L = _lib.lib()
        h = self.handle
        o = S.opts(S.GcOpts)
        o.max_bytes = parse_size(max_size) if max_size is not None else 0
        o.older_than = parse_duration(max_age) if max_age is not None else 0
        o.dry_run = int(bool(dry_run))
        o.list = int(bool(list_items))
        r = S.GcReport()
        _lib.check(L.kc_store_gc(h, byref(o), byref(r)), _lib.store_msg(h), "gc")
        items = [GcItem(_kind_name(r.items[i].kind), _hex(r.items[i].key), r.items[i].last_use,
                        r.items[i].bytes) for i in range(r.n_items)]  # fmt: skip
        L.kc_free(r.items)
        return GcReport(
            evicted={_kind_name(k): int(r.evicted[k]) for k in range(1, S.KC_REC_KIND_MAX + 1)},
            bytes_freed=r.bytes_freed, size_before=r.size_before, size_after=r.size_after,
            file_before=r.file_before, file_after=r.file_after, skipped=r.skipped,
            usage_swept=r.usage_swept, leases_swept=r.leases_swept, items=items,
            dry_run=bool(dry_run),
        )  # fmt: skip

    def export(self, path: PathLike, arch: Optional[str] = None, name: Optional[str] = None,
               since: int = 0, tuned_only: bool = False) -> BundleStats:  # fmt: skip
        """Write the primary store's records (filtered) to a bundle file (``kc_bundle_export``).

        Args:
            path: the bundle file to write (replaced if it exists).
            arch: only builds and tunings for this arch.
            name: only builds and tunings whose entry matches this fnmatch glob.
            since: only builds and tunings created after this unix time.
            tuned_only: only tunings and the builds and blobs their winners need.
        """
        L = _lib.lib()
        h = self.handle
        flt = S.BundleFilter(arch.encode() if arch else None, name.encode() if name else None,
                             int(since), int(bool(tuned_only)))  # fmt: skip
        st = S.BundleStats()
        p = os.fspath(path)
        fp = _libc.fopen(p.encode(), b"wb")
        if not fp:
            err = ctypes.get_errno()
            raise Error(-4, "cannot write %s: %s" % (p, os.strerror(err)), "KC_EIO")
        try:
            rc = L.kc_bundle_export(h, byref(flt), fp, byref(st))
        finally:
            closed = _libc.fclose(fp)
        _lib.check(rc, _lib.store_msg(h), "export to %s" % p)
        if closed != 0:
            raise Error(-4, "cannot write %s" % p, "KC_EIO")
        return _bundle_stats(st)

    def import_(self, source: Union[PathLike, bytes], prefer: str = "existing",
                max_bytes: int = 0) -> BundleStats:  # fmt: skip
        """Import a bundle (a file's path, or its bytes) into the first writable layer.

        Args:
            prefer: which tuning wins when the store has another for the
                same key: ``"existing"``, ``"incoming"`` or ``"faster"``.
            max_bytes: refuse bundles larger than this (0: 4 GiB).

        The bundle is validated whole first: a damaged one raises
        :class:`kcache.Error` (``KC_ECORRUPT``) and changes nothing.
        """
        L = _lib.lib()
        lh = self.layers_handle
        h = L.kc_layers_writable(lh)
        if not h:
            raise ReadOnlyError(KC_EREADONLY, "import: no writable layer", "KC_EREADONLY")
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            label = "bundle"
        else:
            label = os.fspath(source)
            try:
                with open(label, "rb") as fh:
                    data = fh.read()
            except OSError as e:
                raise Error(-4, "cannot read %s: %s" % (label, e.strerror), "KC_EIO") from None
        if prefer not in _PREFER:
            raise Error(KC_EINVAL, "prefer must be one of %s" % ", ".join(_PREFER), "KC_EINVAL")
        o = S.opts(S.BundleImportOpts)
        o.prefer = _PREFER[prefer]
        o.max_bytes = int(max_bytes)
        o.name = label.encode()
        st = S.BundleStats()
        rc = L.kc_bundle_import_mem(h, data, len(data), byref(o), byref(st))
        _lib.check(rc, _lib.store_msg(h), "import")
        return _bundle_stats(st)

    import_bundle = import_

    def flush(self) -> None:
        """Write buffered usage stamps and counters of the primary store now."""
        h = self.handle
        _lib.check(_lib.lib().kc_store_flush(h), _lib.store_msg(h), "flush")


class _LibC:
    """fopen/fclose from the C library, for the FILE * that export writes to."""

    def __init__(self) -> None:
        self._c: Optional[ctypes.CDLL] = None

    def _get(self) -> ctypes.CDLL:
        if self._c is None:
            c = ctypes.CDLL(None, use_errno=True)
            c.fopen.restype = c_void_p
            c.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
            c.fclose.restype = c_int
            c.fclose.argtypes = [c_void_p]
            self._c = c
        return self._c

    def fopen(self, path: bytes, mode: bytes) -> Optional[int]:
        return self._get().fopen(path, mode)

    def fclose(self, fp: int) -> int:
        return int(self._get().fclose(fp))


_libc = _LibC()
