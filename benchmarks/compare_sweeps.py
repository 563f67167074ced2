"""Compare two sweep output directories cell by cell (records, metrics, policy samples) and their
summary tables; provenance fields (revision, times) are ignored.

    .venv/bin/python benchmarks/compare_sweeps.py DIR_A DIR_B

Cells are matched by the readable part of their file name (scenario, experiment, load, seed), so
two revisions whose cache keys differ still pair up. Exit status 1 when records or metrics differ.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

from exfairs.results import _encode, read_result


def _cells(d: Path) -> dict[str, Any]:
    # Through the reader, so that directories written with different results schemas (the
    # metrics stored once from schema 3 on) compare by content; encoded, so NaN equals NaN.
    out = {}
    for f in d.glob("*.json"):
        parts = f.name.split("__")
        if len(parts) >= 5:
            r = read_result(f)
            out["__".join(parts[:4])] = {"records": _encode(r.records),
                                         "metrics": _encode(r.metrics),
                                         "policy_samples": _encode(r.policy_samples)}
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    a, b = Path(args[0]), Path(args[1])
    ca, cb = _cells(a), _cells(b)
    if ca.keys() != cb.keys():
        print(f"different cells: {sorted(set(ca) ^ set(cb))}")
        return 1
    rec = [k for k in sorted(ca) if ca[k]["records"] != cb[k]["records"]]
    met = [k for k in sorted(ca) if ca[k]["metrics"] != cb[k]["metrics"]]
    smp = [k for k in sorted(ca) if ca[k].get("policy_samples") != cb[k].get("policy_samples")]
    print(f"cells {len(ca)}; records differ in {len(rec)}, metrics in {len(met)}, "
          f"policy samples in {len(smp)}")
    for k in rec:
        print(f"  records: {k}")
    for k in smp:
        if k not in rec:
            print(f"  samples only: {k}")
    sa, sb = a / "summary.csv", b / "summary.csv"
    if sa.is_file() and sb.is_file():
        ra = list(csv.reader(sa.open(encoding="utf-8")))
        rb = list(csv.reader(sb.open(encoding="utf-8")))
        print(f"summary.csv identical: {ra == rb}")
    return 1 if rec or met else 0


if __name__ == "__main__":
    sys.exit(main())
