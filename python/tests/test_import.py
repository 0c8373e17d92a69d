"""Importing kcache: no library needed until first use, no torch, no triton."""

from __future__ import annotations

import os
import subprocess
import sys
import unittest

from _util import PKG_ROOT


def run_python(code: str, env_extra: dict) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    env = dict(os.environ)
    env["PYTHONPATH"] = PKG_ROOT
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)


class ImportTest(unittest.TestCase):
    def test_import_loads_neither_torch_nor_triton(self) -> None:
        r = run_python(
            "import sys, kcache; kcache.Store; print(sorted(m for m in ('torch', 'triton') if m in sys.modules))",
            {},
        )
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "[]")

    def test_missing_library_raises_on_first_use_not_on_import(self) -> None:
        code = (
            "import kcache\n"
            "print('imported')\n"
            "try:\n"
            "    kcache.Store('/nonexistent-kcache-py')\n"
            "except kcache.Error as e:\n"
            "    print(type(e).__name__, e.name)\n"
            "    print(e.message)\n"
        )
        # No KCACHE_LIBRARY file, and no loader path that has the library:
        # the source tree's package holds no copy of it.
        r = run_python(code, {"KCACHE_LIBRARY": "/nonexistent/libkcache.so.0", "LD_LIBRARY_PATH": ""})
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], "imported")
        if os.path.exists(os.path.join(PKG_ROOT, "kcache", "libkcache.so.0")):
            self.skipTest("the source tree holds an installed copy of the library")
        self.assertEqual(lines[1], "LibraryNotFoundError KC_ENOTFOUND")
        self.assertIn("/nonexistent/libkcache.so.0", lines[2])
        self.assertIn("libkcache.so.0", lines[2])


if __name__ == "__main__":
    unittest.main()
