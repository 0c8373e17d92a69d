"""ctypes mirrors of the structs of kcache's public headers.

Each class has the name of its C type (``kc_store_opts_t`` is
:class:`StoreOpts`) in ``C_NAME``, and its fields the C fields' names in
order, so that tests/tools/kc_sizes.c can check every size and offset
(python/tests/test_layout.py). Options structs begin with ``size``;
:func:`opts` fills it as the ``*_OPTS_INIT`` macros do.
"""

from __future__ import annotations

import ctypes
from ctypes import (
    POINTER,
    Structure,
    Union,
    c_char_p,
    c_double,
    c_int,
    c_int64,
    c_size_t,
    c_uint,
    c_uint8,
    c_uint32,
    c_uint64,
    c_void_p,
)
from typing import List, Type, TypeVar

KC_REC_KIND_MAX = 8
KC_COUNTER_COUNT = 21
KC_MAX_RANK = 8

c_enum = c_int  # C enums of kcache are int-sized (all values fit an int)


class Key(Structure):
    C_NAME = "kc_key_t"
    _fields_ = [("b", c_uint8 * 16)]


class Buf(Structure):
    C_NAME = "kc_buf_t"
    _fields_ = [("data", c_void_p), ("size", c_size_t)]


class KeyPrefix(Structure):
    C_NAME = "kc_key_prefix_t"
    _fields_ = [("key", Key), ("nibbles", c_uint)]


class Param(Structure):
    C_NAME = "kc_param_t"
    _fields_ = [("name", c_char_p), ("value", c_int64)]


class BuildDesc(Structure):
    C_NAME = "kc_build_desc_t"
    _fields_ = [
        ("source_kind", c_enum),
        ("source_digest", Key),
        ("entry", c_char_p),
        ("options", POINTER(c_char_p)),
        ("n_options", c_size_t),
        ("params", POINTER(Param)),
        ("n_params", c_size_t),
        ("arch", c_char_p),
        ("toolchain", c_char_p),
    ]


class TuningDesc(Structure):
    C_NAME = "kc_tuning_desc_t"
    _fields_ = [
        ("source_kind", c_enum),
        ("source_digest", Key),
        ("entry", c_char_p),
        ("options", POINTER(c_char_p)),
        ("n_options", c_size_t),
        ("space_digest", Key),
        ("shape_sig", Buf),
        ("arch", c_char_p),
        ("sm_count", c_uint32),
        ("device_name", c_char_p),
    ]


class BlobRec(Structure):
    C_NAME = "kc_blob_rec_t"
    _fields_ = [
        ("codec", c_uint8),
        ("dict_id", c_uint32),
        ("raw_size", c_uint64),
        ("frame", Buf),
    ]


class BuildRec(Structure):
    C_NAME = "kc_build_rec_t"
    _fields_ = [
        ("preimage", Buf),
        ("blob", Key),
        ("entry", c_char_p),
        ("registers", c_uint32),
        ("static_smem", c_uint32),
        ("max_threads", c_uint32),
        ("local_bytes", c_uint32),
        ("compile_us", c_uint64),
        ("created", c_uint64),
    ]


class Candidate(Structure):
    C_NAME = "kc_candidate_t"
    _fields_ = [
        ("params", POINTER(Param)),
        ("n_params", c_size_t),
        ("build", Key),
        ("status", c_uint8),
        ("median_ns", c_uint64),
        ("reason", c_char_p),
    ]


class TuningRec(Structure):
    C_NAME = "kc_tuning_rec_t"
    _fields_ = [
        ("preimage", Buf),
        ("winner", POINTER(Param)),
        ("n_winner", c_size_t),
        ("winner_build", Key),
        ("candidates", POINTER(Candidate)),
        ("n_candidates", c_size_t),
        ("tuning_us", c_uint64),
        ("device_name", c_char_p),
        ("arch", c_char_p),
        ("sm_count", c_uint32),
        ("driver_version", c_uint32),
        ("created", c_uint64),
    ]


class UsageRec(Structure):
    C_NAME = "kc_usage_rec_t"
    _fields_ = [("last_use", c_uint64), ("uses", c_uint64)]


class LeaseRec(Structure):
    C_NAME = "kc_lease_rec_t"
    _fields_ = [
        ("host", c_char_p),
        ("boot_id", c_char_p),
        ("pid", c_uint32),
        ("start", c_uint64),
        ("ttl_ms", c_uint64),
    ]


class MetaRec(Structure):
    C_NAME = "kc_meta_rec_t"
    _fields_ = [("value", Buf)]


class BinmetaSpec(Structure):
    C_NAME = "kc_binmeta_spec_t"
    _fields_ = [("arg", c_uint32), ("prop", c_uint8)]


class BinmetaArg(Structure):
    C_NAME = "kc_binmeta_arg_t"
    _fields_ = [("name", c_char_p), ("type", c_char_p)]


class BinmetaRec(Structure):
    C_NAME = "kc_binmeta_rec_t"
    _fields_ = [
        ("build", Key),
        ("entry", c_char_p),
        ("arch", c_char_p),
        ("threads_per_block", c_uint32),
        ("num_warps", c_uint32),
        ("warp_size", c_uint32),
        ("num_ctas", c_uint32),
        ("dyn_smem", c_uint32),
        ("global_scratch_size", c_uint32),
        ("global_scratch_align", c_uint32),
        ("profile_scratch_size", c_uint32),
        ("profile_scratch_align", c_uint32),
        ("flags", c_uint32),
        ("compiler", c_char_p),
        ("compiler_version", c_char_p),
        ("args", POINTER(BinmetaArg)),
        ("n_args", c_size_t),
        ("spec", POINTER(BinmetaSpec)),
        ("n_spec", c_size_t),
    ]


class GroupEntry(Structure):
    C_NAME = "kc_group_entry_t"
    _fields_ = [("name", c_char_p), ("blob", Key), ("size", c_uint64)]


class GroupRec(Structure):
    C_NAME = "kc_group_rec_t"
    _fields_ = [
        ("name", c_char_p),
        ("created", c_uint64),
        ("updated", c_uint64),
        ("files", POINTER(GroupEntry)),
        ("n_files", c_size_t),
    ]


class GroupFile(Structure):
    C_NAME = "kc_group_file_t"
    _fields_ = [("name", c_char_p), ("data", c_void_p), ("size", c_size_t)]


class RecordUnion(Union):
    C_NAME = ""  # anonymous in C: checked through Record.u
    _fields_ = [
        ("blob", BlobRec),
        ("build", BuildRec),
        ("tuning", TuningRec),
        ("usage", UsageRec),
        ("lease", LeaseRec),
        ("meta", MetaRec),
        ("binmeta", BinmetaRec),
        ("group", GroupRec),
    ]


class Record(Structure):
    C_NAME = "kc_record_t"
    _fields_ = [("kind", c_enum), ("version", c_uint8), ("u", RecordUnion)]


class StoreOpts(Structure):
    C_NAME = "kc_store_opts_t"
    _fields_ = [
        ("size", c_size_t),
        ("flags", c_uint),
        ("map_size", c_uint64),
        ("zstd_level", c_int),
        ("max_readers", c_uint),
        ("max_size", c_uint64),
    ]


class StoreStats(Structure):
    C_NAME = "kc_store_stats_t"
    _fields_ = [
        ("records", c_uint64 * (KC_REC_KIND_MAX + 1)),
        ("blob_raw_bytes", c_uint64),
        ("blob_stored_bytes", c_uint64),
        ("counters", c_uint64 * KC_COUNTER_COUNT),
        ("file_bytes", c_uint64),
        ("map_bytes", c_uint64),
        ("used_bytes", c_uint64),
        ("format_version", c_uint32),
        ("readonly", c_int),
        ("record_bytes", c_uint64),
        ("totals_scanned", c_int),
    ]


class GcOpts(Structure):
    C_NAME = "kc_gc_opts_t"
    _fields_ = [
        ("size", c_size_t),
        ("max_bytes", c_uint64),
        ("older_than", c_uint64),
        ("dry_run", c_int),
        ("list", c_int),
        ("now", c_uint64),
        ("progress", c_void_p),
        ("progress_user", c_void_p),
    ]


class GcItem(Structure):
    C_NAME = "kc_gc_item_t"
    _fields_ = [
        ("kind", c_enum),
        ("key", Key),
        ("last_use", c_uint64),
        ("bytes", c_uint64),
    ]


class GcReport(Structure):
    C_NAME = "kc_gc_report_t"
    _fields_ = [
        ("evicted", c_uint64 * (KC_REC_KIND_MAX + 1)),
        ("bytes_freed", c_uint64),
        ("size_before", c_uint64),
        ("size_after", c_uint64),
        ("file_before", c_uint64),
        ("file_after", c_uint64),
        ("skipped", c_uint64),
        ("items", POINTER(GcItem)),
        ("n_items", c_size_t),
        ("usage_swept", c_uint64),
        ("leases_swept", c_uint64),
    ]


class BundleFilter(Structure):
    C_NAME = "kc_bundle_filter_t"
    _fields_ = [
        ("arch", c_char_p),
        ("name", c_char_p),
        ("since", c_uint64),
        ("tuned_only", c_int),
    ]


class BundleImportOpts(Structure):
    C_NAME = "kc_bundle_import_opts_t"
    _fields_ = [
        ("size", c_size_t),
        ("prefer", c_enum),
        ("max_bytes", c_uint64),
        ("name", c_char_p),
        ("trust", c_void_p),
    ]


class BundleStats(Structure):
    C_NAME = "kc_bundle_stats_t"
    _fields_ = [
        ("records", c_uint64),
        ("blobs", c_uint64),
        ("builds", c_uint64),
        ("tunings", c_uint64),
        ("dicts", c_uint64),
        ("bytes", c_uint64),
        ("damaged", c_uint64),
        ("added", c_uint64),
        ("present", c_uint64),
        ("replaced", c_uint64),
        ("kept", c_uint64),
        ("is_signed", c_int),
        ("signer", c_uint8 * 32),
        ("binmeta", c_uint64),
        ("groups", c_uint64),
    ]


# ---- launcher ----------------------------------------------------------------

LOG_FN = ctypes.CFUNCTYPE(None, c_void_p, c_enum, c_char_p)


class LauncherOpts(Structure):
    C_NAME = "kc_launcher_opts_t"
    _fields_ = [
        ("size", c_size_t),
        ("device", c_enum),
        ("ordinal", c_int),
        ("sim", c_void_p),
        ("arch", c_char_p),
        ("store", c_void_p),
        ("store_dir", c_char_p),
        ("no_store", c_int),
        ("compile_threads", c_uint),
        ("warmup", c_uint),
        ("budget_ms", c_double),
        ("min_reps", c_uint),
        ("max_reps", c_uint),
        ("no_l2_flush", c_int),
        ("no_prefetch", c_int),
        ("no_warmup", c_int),
        ("remote_url", c_char_p),
        ("no_remote", c_int),
        ("log", LOG_FN),
        ("log_user", c_void_p),
        ("log_level", c_enum),
        ("contention", c_enum),
        ("lease_ttl_ms", c_uint64),
        ("lease_wait_ms", c_uint64),
        ("max_modules", c_uint),
    ]


class ArgValue(Union):
    C_NAME = ""
    _fields_ = [("i", c_int64), ("u", c_uint64), ("f", c_double)]


class Arg(Structure):
    C_NAME = "kc_arg_t"
    _fields_ = [
        ("ptr", c_uint64),
        ("rank", c_uint32),
        ("dims", POINTER(c_int64)),
        ("strides", POINTER(c_int64)),
        ("value", ArgValue),
    ]


class KernelStats(Structure):
    C_NAME = "kc_kernel_stats_t"
    _fields_ = [
        ("launches", c_uint64),
        ("memo_hits", c_uint64),
        ("store_hits", c_uint64),
        ("tunes", c_uint64),
        ("compiles", c_uint64),
        ("builds_reused", c_uint64),
        ("candidates_failed", c_uint64),
        ("publishes", c_uint64),
        ("prefetched", c_uint64),
        ("remote_hits", c_uint64),
        ("configs", c_uint64),
    ]


class SimOpts(Structure):
    C_NAME = "kc_sim_opts_t"
    _fields_ = [
        ("size", c_size_t),
        ("arch", c_char_p),
        ("sm_count", c_uint),
        ("name", c_char_p),
        ("mem_limit", c_uint64),
        ("max_threads", c_uint),
        ("max_shared", c_uint),
    ]


class SimLaunch(Structure):
    C_NAME = "kc_sim_launch_t"
    _fields_ = [
        ("grid", c_uint * 3),
        ("block", c_uint * 3),
        ("shared", c_uint),
        ("params", POINTER(c_void_p)),
        ("n_params", c_size_t),
        ("cluster_x", c_uint),
        ("flags", c_uint32),
    ]


class SimCounters(Structure):
    C_NAME = "kc_sim_counters_t"
    _fields_ = [
        ("modules_loaded", c_uint64),
        ("modules_rejected", c_uint64),
        ("launches", c_uint64),
        ("bytes_allocated", c_uint64),
        ("peak_bytes", c_uint64),
        ("modules_unloaded", c_uint64),
        ("dead_launches", c_uint64),
    ]


SIM_KERNEL_FN = ctypes.CFUNCTYPE(c_int, c_void_p, POINTER(SimLaunch))
SIM_COST_FN = ctypes.CFUNCTYPE(c_uint64, c_void_p, POINTER(SimLaunch))
STORE_ITER_FN = ctypes.CFUNCTYPE(c_int, c_void_p, c_enum, POINTER(Key), c_void_p, c_size_t)

MIRRORED: List[Type[ctypes.Structure]] = [
    Key, Buf, KeyPrefix, Param, BuildDesc, TuningDesc, BlobRec, BuildRec, Candidate,
    TuningRec, UsageRec, LeaseRec, MetaRec, BinmetaSpec, BinmetaArg, BinmetaRec, GroupEntry, GroupRec, GroupFile, Record,
    StoreOpts, StoreStats, GcOpts, GcItem, GcReport, BundleFilter, BundleImportOpts,
    BundleStats, LauncherOpts, Arg, KernelStats, SimOpts, SimLaunch, SimCounters,
]  # fmt: skip

S = TypeVar("S", bound=ctypes.Structure)


def opts(cls: Type[S]) -> S:
    """A zeroed options struct with ``size`` set, as the ``*_OPTS_INIT`` macros make it."""
    o = cls()
    o.size = ctypes.sizeof(cls)  # type: ignore[attr-defined]
    return o
