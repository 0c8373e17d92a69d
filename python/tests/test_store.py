"""kcache.Store on real stores populated by cachectl (NVRTC, no GPU)."""

from __future__ import annotations

import ctypes
import json
import os
import stat
import unittest

from _util import SCALE_SPEC, TempDirCase, run_cachectl

import kcache


class StoreTest(TempDirCase):
    def setUp(self) -> None:
        super().setUp()
        self.dir = os.path.join(self.tmp, "store")
        manifest = os.path.join(self.tmp, "manifest.json")
        with open(manifest, "w") as f:
            json.dump({"version": 1, "kernels": [SCALE_SPEC]}, f)
        r = run_cachectl("-s", self.dir, "populate", "--manifest", manifest, "--arch", "sm_80,sm_90")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_stats_count_the_populated_builds_and_blobs(self) -> None:
        with kcache.Store(self.dir) as s:
            st = s.stats()
        self.assertEqual(st.records["build"], 4)
        self.assertEqual(st.records["blob"], 4)
        self.assertEqual(st.records["tuning"], 0)
        self.assertGreater(st.blob_raw_bytes, st.blob_stored_bytes)
        self.assertIn("compiles", st.counters)
        self.assertFalse(st.readonly)
        self.assertEqual(st.path, os.path.abspath(self.dir))

    def test_ls_lists_records_with_arch_and_name_and_filters_them(self) -> None:
        with kcache.Store(self.dir) as s:
            rows = s.ls()
            self.assertEqual(sorted(e.kind for e in rows), ["blob"] * 4 + ["build"] * 4)
            builds = s.ls(kind="build", arch="sm_90")
            self.assertEqual(len(builds), 2)
            self.assertEqual({e.name for e in builds}, {"scale"})
            self.assertEqual(sorted(e.info["params"]["BLOCK"] for e in builds), [128, 256])
            self.assertEqual(len(s.ls(arch="sm_80")), 4)  # two builds and their blobs
            self.assertEqual(s.ls(name="gemm_*"), [])
            self.assertEqual(len(s.ls(name="sc*", kind="blob")), 4)
            with self.assertRaises(kcache.Error) as cm:
                s.ls(kind="nonsense")
            self.assertEqual(cm.exception.name, "KC_EINVAL")

    def test_show_decodes_a_build_and_get_returns_its_cubin(self) -> None:
        with kcache.Store(self.dir) as s:
            b = s.ls(kind="build", arch="sm_80")[0]
            rec = s.show(b.key[:10])
            self.assertEqual(rec["kind"], "build")
            self.assertEqual(rec["key"], b.key)
            self.assertEqual(rec["preimage"]["arch"], "sm_80")
            self.assertEqual(rec["preimage"]["entry"], "scale")
            self.assertIn("BLOCK", rec["preimage"]["params"])
            cubin = s.get(b.key)
            self.assertEqual(cubin[:4], b"\x7fELF")
            self.assertEqual(s.get(rec["blob"]), cubin)

    def test_an_unknown_or_malformed_key_raises_error_with_its_code(self) -> None:
        with kcache.Store(self.dir) as s:
            with self.assertRaises(kcache.NotFoundError) as cm:
                s.show("00000000")
            self.assertEqual(cm.exception.code, -1)
            self.assertEqual(cm.exception.name, "KC_ENOTFOUND")
            with self.assertRaises(kcache.Error) as cm2:
                s.get("xyz")
            self.assertEqual(cm2.exception.name, "KC_EINVAL")
            self.assertIn("xyz", str(cm2.exception))

    def test_verify_finds_a_populated_store_sound(self) -> None:
        with kcache.Store(self.dir) as s:
            rep = s.verify()
        self.assertTrue(rep.ok)
        self.assertEqual(rep.problems, [])
        self.assertGreaterEqual(rep.checked, 8)

    def test_verify_checks_the_blob_of_every_file_of_a_group(self) -> None:
        from kcache import _lib
        from kcache import _structs as S

        L = _lib.lib()
        data = b"a file of a Triton kernel" * 8
        buf = ctypes.create_string_buffer(data, len(data))
        files = (S.GroupFile * 1)(S.GroupFile(b"k.cubin", ctypes.cast(buf, ctypes.c_void_p), len(data)))
        with kcache.Store(self.dir) as s:
            self.assertEqual(L.kc_store_group_put(s.handle, b"grp", files, 1, 0), 0)
            self.assertTrue(s.verify().ok)
            (group,) = s.ls(kind="group")
            blob = group.info["files"][0]["blob"]
            key = S.Key()
            key.b[:] = bytes.fromhex(blob)
            self.assertEqual(L.kc_store_del(s.handle, 1, ctypes.byref(key)), 0)
            rep = s.verify()
        self.assertEqual([(p.kind, p.key) for p in rep.problems], [("group", group.key)])
        self.assertEqual(rep.problems[0].reason, "the blob of file k.cubin %s: missing" % blob[:8])

    def test_gc_dry_run_plans_and_gc_evicts(self) -> None:
        with kcache.Store(self.dir) as s:
            plan = s.gc(max_size="1B", dry_run=True)
            self.assertTrue(plan.dry_run)
            self.assertEqual(plan.evicted["build"], 4)
            self.assertEqual(len(plan.items), 8)
            self.assertEqual(s.stats().records["build"], 4)
            rep = s.gc(max_size=1)
            self.assertEqual(rep.evicted["build"], 4)
            self.assertEqual(rep.size_after, 0)
            self.assertEqual(s.stats().records["blob"], 0)
            self.assertEqual(s.gc(max_age="30d").bytes_freed, 0)

    def test_sizes_and_durations_follow_the_c_grammar(self) -> None:
        self.assertEqual(kcache.parse_size("500M"), 500_000_000)
        self.assertEqual(kcache.parse_size("1.5Gi"), 1_610_612_736)
        self.assertEqual(kcache.parse_size(4096), 4096)
        self.assertEqual(kcache.parse_duration("12h"), 43200)
        for bad in ("", "-1", "5X"):
            with self.assertRaises(kcache.Error) as cm:
                kcache.parse_size(bad)
            self.assertEqual(cm.exception.code, -2)

    def test_export_then_import_into_a_fresh_store_carries_every_record(self) -> None:
        bundle = os.path.join(self.tmp, "b.kcb")
        with kcache.Store(self.dir) as s:
            out = s.export(bundle)
            self.assertEqual((out.builds, out.blobs), (4, 4))
            keys = sorted(e.key for e in s.ls())
        with kcache.Store(os.path.join(self.tmp, "other")) as t:
            got = t.import_(bundle)
            self.assertEqual(got.added, 8)
            self.assertEqual(sorted(e.key for e in t.ls()), keys)
            again = t.import_bundle(bundle)
            self.assertEqual((again.added, again.present), (0, 8))
            only90 = os.path.join(self.tmp, "sm90.kcb")
            self.assertEqual(t.export(only90, arch="sm_90").builds, 2)

    def test_a_damaged_bundle_is_refused_and_changes_nothing(self) -> None:
        bundle = os.path.join(self.tmp, "b.kcb")
        with kcache.Store(self.dir) as s:
            s.export(bundle)
        with open(bundle, "rb") as f:
            data = bytearray(f.read())
        data[len(data) // 2] ^= 0xFF
        with kcache.Store(os.path.join(self.tmp, "other")) as t:
            with self.assertRaises(kcache.Error) as cm:
                t.import_(bytes(data))
            self.assertEqual(cm.exception.name, "KC_ECORRUPT")
            self.assertEqual(t.ls(), [])

    def test_a_read_only_store_reads_but_refuses_writes(self) -> None:
        bundle = os.path.join(self.tmp, "b.kcb")
        with kcache.Store(self.dir) as s:
            s.export(bundle)
        with kcache.Store(self.dir, readonly=True) as s:
            self.assertTrue(s.readonly)
            self.assertEqual(len(s.ls(kind="build")), 4)
            with self.assertRaises(kcache.ReadOnlyError) as cm:
                s.import_(bundle)
            self.assertEqual(cm.exception.code, -8)
            with self.assertRaises(kcache.Error) as cm2:
                s.gc(max_size=1)
            self.assertEqual(cm2.exception.name, "KC_EREADONLY")

    def test_a_path_that_is_a_file_raises_error_naming_it(self) -> None:
        path = os.path.join(self.tmp, "file")
        open(path, "w").close()
        with self.assertRaises(kcache.Error) as cm:
            kcache.Store(path)
        self.assertLess(cm.exception.code, 0)
        self.assertIn(path, cm.exception.message)
        with self.assertRaises(kcache.NotFoundError):
            kcache.Store(os.path.join(self.tmp, "missing"), create=False)

    def test_layers_search_every_store_in_order(self) -> None:
        top = os.path.join(self.tmp, "top")
        os.chmod(self.dir, stat.S_IRUSR | stat.S_IXUSR)
        self.addCleanup(os.chmod, self.dir, stat.S_IRWXU)
        with kcache.Store(top + ":" + self.dir) as s:
            self.assertEqual([layer.path for layer in s.layers], [top, self.dir])
            if os.geteuid() != 0:
                self.assertTrue(s.layers[1].readonly)
            b = [e for e in s.ls(kind="build") if e.layer == 1][0]
            self.assertEqual(s.get(b.key)[:4], b"\x7fELF")
            self.assertEqual(s.path, top)

    def test_a_layer_marked_ro_is_read_only_for_root_too(self) -> None:
        top = os.path.join(self.tmp, "top-ro")
        mdb = os.path.join(self.dir, "data.mdb")
        with open(mdb, "rb") as f:
            before = f.read()
        with kcache.Store(top + ":ro=" + self.dir) as s:
            self.assertEqual([layer.path for layer in s.layers], [top, self.dir])
            self.assertTrue(s.layers[1].readonly)
            self.assertFalse(s.layers[0].readonly)
            self.assertEqual(s.path, top)
        with kcache.Store("ro=" + self.dir) as s:  # one entry, marked
            self.assertTrue(s.readonly)
            self.assertEqual(s.stats().records["build"], 4)
        with open(mdb, "rb") as f:
            self.assertEqual(f.read(), before)

    def test_the_default_store_follows_kcache_path(self) -> None:
        old = os.environ.get("KCACHE_PATH")
        os.environ["KCACHE_PATH"] = self.dir
        try:
            with kcache.Store() as s:
                self.assertEqual(s.path, self.dir)
                self.assertEqual(s.stats().records["build"], 4)
        finally:
            if old is None:
                del os.environ["KCACHE_PATH"]
            else:
                os.environ["KCACHE_PATH"] = old

    def test_a_closed_store_raises(self) -> None:
        s = kcache.Store(self.dir)
        s.close()
        s.close()
        with self.assertRaises(kcache.Error):
            s.stats()


if __name__ == "__main__":
    unittest.main()
