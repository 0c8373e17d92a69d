"""kcache.Store's listing and verify on a large store, against cachectl's.

    python bench_store.py STORE_DIR [--cachectl PATH]

STORE_DIR is an existing store, e.g. one made by
``kcache_bench_limit --kernels 40000 --fill-only --dir DIR`` (DIR/store).
Times ``Store.ls()`` for all default kinds, tunings and blobs,
``Store.verify()`` (the best of three), and, with --cachectl, ``cachectl ls --kind tuning``
on the same store; prints one line each.
"""

from __future__ import annotations

import argparse
import subprocess
import time

import kcache


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("store")
    ap.add_argument("--cachectl")
    a = ap.parse_args()
    with kcache.Store(a.store) as s:
        for kind in (None, "tuning", "blob"):
            t = time.perf_counter()
            rows = s.ls(kind=kind)
            print("Store.ls(kind=%s): %d rows, %.0f ms" % (kind, len(rows), (time.perf_counter() - t) * 1000))
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            rep = s.verify()
            best = min(best, time.perf_counter() - t)
        print("Store.verify(), best of 3: %d records, %.0f ms" % (rep.checked, best * 1000))
    if a.cachectl:
        t = time.perf_counter()
        out = subprocess.run([a.cachectl, "-s", a.store, "ls", "--kind", "tuning"], capture_output=True, check=True)
        n = out.stdout.count(b"\n")
        print("cachectl ls --kind tuning: %d lines, %.0f ms" % (n, (time.perf_counter() - t) * 1000))


if __name__ == "__main__":
    main()
