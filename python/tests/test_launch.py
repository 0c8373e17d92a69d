"""kcache.Launcher on the simulation device: real NVRTC builds, kernels run in Python."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import threading
import time
import unittest

from _util import SCALE_SPEC, VADD_SPEC, TempDirCase, floats

import kcache

N = 300


def vadd(launch: kcache.SimLaunch) -> None:
    n = launch.i32(3)
    a = launch.array(0, ctypes.c_float, n)
    b = launch.array(1, ctypes.c_float, n)
    c = launch.array(2, ctypes.c_float, n)
    for i in range(n):
        c[i] = a[i] + b[i]


def buf(arr: ctypes.Array, dtype: str = "f32") -> kcache.Buffer:  # type: ignore[type-arg]
    return kcache.Buffer(ctypes.addressof(arr), (len(arr),), dtype, owner=arr)


class LaunchTest(TempDirCase):
    def setUp(self) -> None:
        super().setUp()
        self.store = os.path.join(self.tmp, "store")
        self.sim = kcache.Sim()
        self.sim.register("vadd", vadd)

    def launcher(self) -> kcache.Launcher:
        launcher = kcache.Launcher("sim", store=self.store, sim=self.sim, remote=False)
        self.addCleanup(launcher.close)
        return launcher

    def test_vector_add_runs_tunes_once_and_a_second_launcher_hits_the_store(self) -> None:
        a, b, c = floats(list(range(N))), floats([0.5] * N), floats([0.0] * N)
        k = self.launcher().kernel(VADD_SPEC)
        k(buf(a), buf(b), buf(c), N)
        self.assertEqual(list(c), [i + 0.5 for i in range(N)])
        self.assertEqual(self.sim.errors, [])
        st = k.stats()
        self.assertEqual((st.tunes, st.compiles, st.configs, st.publishes), (1, 3, 3, 1))
        self.assertIn(k.last_config()["BLOCK"], (64, 128, 256))
        k(buf(a), buf(b), buf(c), N)
        self.assertEqual(k.stats().memo_hits, 1)

        k2 = self.launcher().kernel(VADD_SPEC)
        c2 = floats([0.0] * N)
        k2(buf(a), buf(b), buf(c2), N)
        self.assertEqual(list(c2), list(c))
        st2 = k2.stats()
        self.assertEqual((st2.tunes, st2.compiles, st2.store_hits), (0, 0, 1))
        self.assertEqual(k2.last_config(), k.last_config())
        with kcache.Store(self.store) as s:
            self.assertEqual(s.stats().records["tuning"], 1)
            t = s.ls(kind="tuning")[0]
            self.assertEqual(t.name, "vadd")
            self.assertEqual(s.show(t.key)["winner"], k.last_config())

    def test_a_spec_file_loads_like_a_dict(self) -> None:
        path = os.path.join(self.tmp, "spec.json")
        with open(path, "w") as f:
            json.dump({"version": 1, "kernels": [VADD_SPEC, SCALE_SPEC]}, f)
        ks = self.launcher().kernels(path)
        self.assertEqual([k.name for k in ks], ["py.vadd", "py.scale"])
        self.assertEqual(ks[1].args[1], ("s", False, "f32"))

    def test_spec_errors_raise_spec_error_naming_the_field(self) -> None:
        launcher = self.launcher()
        bad = dict(VADD_SPEC, gird=["1"])
        with self.assertRaises(kcache.SpecError) as cm:
            launcher.kernel(bad)
        self.assertEqual(cm.exception.code, -22)
        self.assertEqual(cm.exception.name, "KC_ESPEC")
        self.assertIn("gird", cm.exception.message)
        with self.assertRaises(kcache.Error) as cm2:
            launcher.kernel(dict(VADD_SPEC, grid=["cdiv(n,"]))
        self.assertIn(cm2.exception.name, ("KC_ESPEC", "KC_EEXPR"))
        self.assertIn("grid", cm2.exception.message)

    def test_arguments_that_do_not_match_the_spec_raise_argument_error(self) -> None:
        k = self.launcher().kernel(VADD_SPEC)
        a = floats([1.0] * N)
        with self.assertRaises(kcache.ArgumentError) as cm:
            k(buf(a), buf(a), buf(a, "f16"), N)
        self.assertIn("'c'", str(cm.exception))
        self.assertIn("f16", str(cm.exception))
        with self.assertRaises(kcache.ArgumentError):
            k(buf(a), buf(a), N)
        with self.assertRaises(TypeError):
            k(buf(a), buf(a), object(), N)
        self.assertEqual(k.stats().launches, 0)

    def test_a_failing_simulated_kernel_raises_and_keeps_the_exception(self) -> None:
        sim = kcache.Sim()

        def boom(launch: kcache.SimLaunch) -> None:
            raise ValueError("boom")

        sim.register("scale", boom)
        launcher = kcache.Launcher("sim", store=False, sim=sim, remote=False)
        self.addCleanup(launcher.close)
        k = launcher.kernel(SCALE_SPEC)
        x = floats([1.0] * 16)
        with self.assertRaises(kcache.Error):
            k(buf(x), 2.0, 16)
        self.assertTrue(any(isinstance(e, ValueError) for e in sim.errors))

    def test_device_none_compiles_and_publishes_builds_only(self) -> None:
        with kcache.Launcher("none", store=self.store, arch="sm_90", remote=False) as launcher:
            self.assertEqual(launcher.arch, "sm_90")
            k = launcher.kernel(SCALE_SPEC)
            k.wait_compiled()
            self.assertEqual(k.stats().configs, 2)
            x = floats([1.0])
            with self.assertRaises(kcache.Error) as cm:
                k(buf(x), 1.0, 1)
            self.assertEqual(cm.exception.name, "KC_ENODEVICE")
        with self.assertRaises(kcache.Error):
            k(buf(x), 1.0, 1)

    def test_array_interfaces_give_pointer_shape_and_dtype(self) -> None:
        class Cuda:
            def __init__(self, arr: ctypes.Array, typestr: str = "<f4") -> None:  # type: ignore[type-arg]
                self.__cuda_array_interface__ = {
                    "data": (ctypes.addressof(arr), False), "shape": (len(arr),),
                    "typestr": typestr, "strides": None, "version": 3,
                }  # fmt: skip

        class Host:
            def __init__(self, arr: ctypes.Array) -> None:  # type: ignore[type-arg]
                self.__array_interface__ = {
                    "data": (ctypes.addressof(arr), False), "shape": (len(arr),),
                    "typestr": "<f4", "strides": (4,), "version": 3,
                }  # fmt: skip

        a, b, c = floats([1.0] * N), floats([2.0] * N), floats([0.0] * N)
        k = self.launcher().kernel(VADD_SPEC)
        k(Cuda(a), Host(b), Cuda(c), N)
        self.assertEqual(list(c), [3.0] * N)
        with self.assertRaises(kcache.ArgumentError) as cm:
            k(Cuda(a), Cuda(b), Cuda(c, "<i4"), N)
        self.assertIn("expected f32 elements, got i32", str(cm.exception))

    def test_log_messages_reach_the_callable(self) -> None:
        seen = []
        launcher = kcache.Launcher("sim", store=self.store, sim=self.sim, remote=False,
                                   log=lambda level, msg: seen.append((level, msg)), log_level=3)  # fmt: skip
        self.addCleanup(launcher.close)
        a = floats([1.0] * 8)
        launcher.kernel(VADD_SPEC)(buf(a), buf(a), buf(floats([0.0] * 8)), 8)
        self.assertTrue(seen)
        self.assertTrue(all(isinstance(m, str) and 0 <= lv <= 3 for lv, m in seen))

    @unittest.skipUnless(hasattr(os, "fork"), "needs fork")
    def test_a_forked_child_goes_on_with_the_parents_launcher(self) -> None:
        # Forked while a thread lists the store and after the launcher's
        # pool has run: the child registers, compiles, tunes and publishes
        # a new kernel through the parent's launcher. It used to wait for
        # ever (the parent's pool threads, the parent's reader).
        def scale(launch: kcache.SimLaunch) -> None:
            n = launch.i32(2)
            x = launch.array(0, ctypes.c_float, n)
            for i in range(n):
                x[i] *= launch.f32(1)

        self.sim.register("scale", scale)
        launcher = self.launcher()
        a, b, c = floats([1.0] * N), floats([2.0] * N), floats([0.0] * N)
        launcher.kernel(VADD_SPEC)(buf(a), buf(b), buf(c), N)
        stop = threading.Event()

        def lister() -> None:
            with kcache.Store(self.store) as s:
                while not stop.is_set():
                    s.ls()

        t = threading.Thread(target=lister)
        t.start()
        try:
            pid = os.fork()
            if pid == 0:  # the child: no unittest here, only its exit status
                code = 1
                try:
                    x = floats([1.0] * N)
                    k = launcher.kernel(SCALE_SPEC)
                    k(buf(x), 3.0, N)
                    st = k.stats()
                    code = 0 if list(x) == [3.0] * N and st.publishes == 1 else 2
                finally:
                    os._exit(code)
            status = None
            for _ in range(600):  # a minute is how long "for ever" is given
                done, status = os.waitpid(pid, os.WNOHANG)
                if done == pid:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                self.fail("the forked child did not finish in a minute")
        finally:
            stop.set()
            t.join()
        self.assertTrue(os.WIFEXITED(status))
        self.assertEqual(os.WEXITSTATUS(status), 0)
        with kcache.Store(self.store) as s:
            self.assertEqual(s.stats().records["tuning"], 2)

    def test_max_modules_bounds_the_modules_kept_loaded(self) -> None:
        a, b = floats(list(range(N))), floats([0.5] * N)
        with kcache.Launcher("sim", store=self.store, sim=self.sim, remote=False) as tuner:
            tuner.kernel(VADD_SPEC)(buf(a), buf(b), buf(floats([0.0] * N)), N)
        # Six kernels of the stored tuning under a bound of 2: the pool
        # unloads the least recently launched; a launch loads them again.
        launcher = kcache.Launcher("sim", store=self.store, sim=self.sim, remote=False, max_modules=2)
        self.addCleanup(launcher.close)
        kernels = [launcher.kernel(dict(VADD_SPEC, name="py.vadd%d" % i)) for i in range(6)]
        for _ in range(3):
            for k in kernels:
                c = floats([0.0] * N)
                k(buf(a), buf(b), buf(c), N)
                self.assertEqual(list(c), [i + 0.5 for i in range(N)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            n = self.sim.counters()
            if n.modules_loaded - n.modules_unloaded <= 2:
                break
            time.sleep(0.01)
        n = self.sim.counters()
        self.assertLessEqual(n.modules_loaded - n.modules_unloaded, 2)
        self.assertGreater(n.modules_unloaded, 0)
        self.assertEqual(n.dead_launches, 0)

    def test_max_modules_must_be_none_or_a_count(self) -> None:
        with self.assertRaises(kcache.Error):
            kcache.Launcher("sim", sim=self.sim, store=False, max_modules=-1)
        with kcache.Launcher("sim", sim=self.sim, store=False, max_modules=None) as launcher:
            self.assertIsNotNone(launcher)

    def test_a_bad_device_name_is_refused(self) -> None:
        with self.assertRaises(kcache.Error):
            kcache.Launcher("gpu")


if __name__ == "__main__":
    unittest.main()
