#!/usr/bin/env python3
"""Make a Triton cache directory of N entries from one real entry, for
timing `cachectl import-triton` on caches of thousands of kernels
(BENCHMARKS.md).

    scripts/synth-triton-cache.py SRC_ENTRY OUT N

SRC_ENTRY is one entry directory of a real Triton cache (the one holding
__grp__NAME.json, e.g. ~/.triton/cache/<hash> after a kernel ran). Each of
the N copies, OUT/S000000 ... , renames the kernel NAME_000000 ... in every
text file, gives its metadata a hash of its own, points its group file at
its own files, and appends its name to the cubin, so every entry is a
distinct kernel with a distinct binary."""
import json
import os
import sys


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    src, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    groups = [f for f in os.listdir(src) if f.startswith("__grp__") and f.endswith(".json")]
    if len(groups) != 1:
        sys.exit(f"{src}: expected one __grp__NAME.json, found {len(groups)}")
    name = groups[0][len("__grp__"):-len(".json")]
    files = {f: open(os.path.join(src, f), "rb").read() for f in os.listdir(src)}
    for i in range(n):
        new = "%s_%06d" % (name, i)
        d = os.path.join(out, "S%06d" % i)
        os.makedirs(d)
        for f, data in files.items():
            if f.endswith(".cubin"):
                data = data + b"\0" + new.encode()
            else:
                data = data.replace(name.encode(), new.encode())
                if f == name + ".json":
                    meta = json.loads(data)
                    meta["hash"] = "%064x" % i
                    data = json.dumps(meta).encode()
                elif f.startswith("__grp__"):
                    grp = json.loads(data)
                    grp["child_paths"] = {k: os.path.join(d, os.path.basename(v))
                                          for k, v in grp["child_paths"].items()}
                    data = json.dumps(grp).encode()
            with open(os.path.join(d, f.replace(name, new)), "wb") as fh:
                fh.write(data)


if __name__ == "__main__":
    main()
