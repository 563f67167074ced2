"""Check two sweep directories of the same grid written with different policy-sample layouts:
every sample of SPARSE (``--policy-samples sparse``, the default) equals DENSE's sample at the
same time restricted to its clients, and both have the same sample times.

    .venv/bin/python benchmarks/compare_sample_layouts.py DENSE_DIR SPARSE_DIR

Cells are matched by the readable part of their file name (as `compare_sweeps.py`). Records
and metrics: `compare_sweeps.py`. Exit status 1 when any sample differs.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from exfairs.results import read_result


def _cells(d: Path) -> dict[str, Path]:
    return {"__".join(f.name.split("__")[:4]): f for f in d.glob("*.json")
            if len(f.name.split("__")) >= 5}


def _same(x: float, y: float) -> bool:
    return x == y or (math.isnan(x) and math.isnan(y))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    ca, cb = _cells(Path(args[0])), _cells(Path(args[1]))
    if ca.keys() != cb.keys():
        print(f"different cells: {sorted(set(ca) ^ set(cb))}")
        return 1
    series = bad = 0
    for k in sorted(ca):
        dense, sparse = read_result(ca[k]).policy_samples, read_result(cb[k]).policy_samples
        if [s.time_s for s in dense] != [s.time_s for s in sparse] \
                or any(s.clients is not None for s in dense) \
                or any(s.clients is None for s in sparse):
            print(f"  layouts or sample times differ: {k}")
            bad += 1
            continue
        for d, s in zip(dense, sparse, strict=True):
            full = dict(d.values)
            for name, vals in s.values:
                series += 1
                want = [full[name][c] for c in s.clients or ()]
                if len(want) != len(vals) or not all(map(_same, vals, want)):
                    bad += 1
                    print(f"  {k} t={s.time_s:g} {name}")
    print(f"cells {len(ca)}; sparse sample series compared {series}; differing {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
