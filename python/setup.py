"""Builds libkcache.so.0 from the repository this package sits in, with CMake,
and ships it inside the package (kcache/libkcache.so.0).

The C sources are the parent directory's (or $KCACHE_SOURCE_DIR's); the CMake
build tree is kept in <repo>/build-python (or $KCACHE_BUILD_DIR) so that a
reinstall rebuilds only what changed. $KCACHE_PREBUILT_LIBRARY skips CMake
and copies that file instead. The wheel holds no compiled Python extension:
any CPython 3.9+ on the platform loads it (tag py3-none-<platform>).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = "libkcache.so.0"


def build_library() -> str:
    prebuilt = os.environ.get("KCACHE_PREBUILT_LIBRARY")
    if prebuilt:
        return prebuilt
    src = os.environ.get("KCACHE_SOURCE_DIR") or os.path.dirname(HERE)
    if not os.path.exists(os.path.join(src, "CMakeLists.txt")):
        sys.exit("kcache: no CMakeLists.txt in %s: set KCACHE_SOURCE_DIR to the kcache repository" % src)
    build = os.environ.get("KCACHE_BUILD_DIR") or os.path.join(src, "build-python")
    subprocess.check_call([
        "cmake", "-S", src, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DKC_BUILD_TESTS=OFF",
    ], stdout=subprocess.DEVNULL)  # fmt: skip
    jobs = str(os.cpu_count() or 2)
    subprocess.check_call(["cmake", "--build", build, "--target", "kcache", "-j", jobs])
    return os.path.join(build, LIB)


class BuildPyWithLibrary(build_py):
    """build_py that also builds libkcache.so.0 and copies it into the package."""

    def run(self) -> None:
        lib = build_library()
        super().run()
        dest = os.path.join(self.build_lib, "kcache", LIB)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(os.path.realpath(lib), dest)


cmdclass = {"build_py": BuildPyWithLibrary}

try:
    try:
        from setuptools.command.bdist_wheel import bdist_wheel
    except ImportError:
        from wheel.bdist_wheel import bdist_wheel  # type: ignore[no-redef]

    class PlatformWheel(bdist_wheel):  # type: ignore[misc, valid-type]
        """A wheel for this platform (it carries a .so) and any Python 3."""

        def finalize_options(self) -> None:
            super().finalize_options()
            self.root_is_pure = False

        def get_tag(self):  # type: ignore[no-untyped-def]
            _, _, plat = super().get_tag()
            return "py3", "none", plat

    cmdclass["bdist_wheel"] = PlatformWheel
except ImportError:
    pass

setup(cmdclass=cmdclass)
