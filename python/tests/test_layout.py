"""The ctypes mirrors of the public structs have the C layouts (tests/tools/kc_sizes.c)."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import unittest

import _util  # noqa: F401  (puts the package on sys.path)
from kcache import _structs


def c_layouts() -> dict:
    tool = os.environ.get("KC_SIZES") or os.path.join(_util.REPO, "build", "tests", "kc_sizes")
    if not os.access(tool, os.X_OK):
        raise unittest.SkipTest("no kc_sizes at %s (set KC_SIZES)" % tool)
    return json.loads(subprocess.run([tool], capture_output=True, check=True, text=True).stdout)


class LayoutTest(unittest.TestCase):
    def test_every_mirrored_struct_has_the_size_and_offsets_of_its_c_struct(self) -> None:
        layouts = c_layouts()
        for cls in _structs.MIRRORED:
            with self.subTest(struct=cls.C_NAME):
                self.assertIn(cls.C_NAME, layouts, "kc_sizes.c does not print %s" % cls.C_NAME)
                c = layouts[cls.C_NAME]
                self.assertEqual(ctypes.sizeof(cls), c["sizeof"], "sizeof")
                names = [f[0] for f in cls._fields_]
                self.assertEqual(names, list(c["fields"]), "fields")
                for name in names:
                    self.assertEqual(getattr(cls, name).offset, c["fields"][name], name)

    def test_kc_sizes_prints_no_struct_the_package_does_not_mirror(self) -> None:
        mirrored = {cls.C_NAME for cls in _structs.MIRRORED}
        self.assertEqual(set(c_layouts()) - mirrored, set())


if __name__ == "__main__":
    unittest.main()
