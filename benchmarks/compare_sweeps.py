"""Compare two sweep output directories cell by cell (records, metrics, policy samples) and their
summary tables; provenance fields (revision, times) are ignored.

    .venv/bin/python benchmarks/compare_sweeps.py DIR_A DIR_B [--deltas]

`--deltas` also prints, for every cell whose records differ, how many request records changed
and B − A of the violation rate, the worst client's attainment and the mean TTFT (ms), then the
range of each over the changed cells, per experiment.

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


#: (label, section of RunMetrics, field) of the figures `--deltas` reports.
_DELTA_FIELDS = (("violation rate", "overall", "violation_rate"),
                 ("worst-client attainment", "fairness", "worst_client_attainment"),
                 ("mean TTFT ms", "overall", "mean_ttft_ms"))


def _deltas(a: Path, b: Path, cells: list[str]) -> None:
    """Per changed cell: changed records of all, and B − A of `_DELTA_FIELDS`; then per
    experiment the range of each over its changed cells."""
    def by_cell(d: Path) -> dict[str, Any]:
        return {"__".join(f.name.split("__")[:4]): read_result(f) for f in d.glob("*.json")
                if len(f.name.split("__")) >= 5}

    ra, rb = by_cell(a), by_cell(b)
    per_exp: dict[str, list[tuple[int, int, list[float]]]] = {}
    for k in cells:
        x, y = ra[k], rb[k]
        xs = {r.request_id: _encode(r) for r in x.records}
        changed = sum(xs.get(r.request_id) != _encode(r) for r in y.records)
        ds = [getattr(getattr(y.metrics, sec), f) - getattr(getattr(x.metrics, sec), f)
              for _, sec, f in _DELTA_FIELDS]
        base = x.metrics.overall.mean_ttft_ms
        rel = f" ({ds[-1] / base:+.2%})" if base else ""
        figures = "; ".join(f"{lab} {d:+.4g}"
                            for (lab, _, _), d in zip(_DELTA_FIELDS, ds, strict=True))
        print(f"  {k}: {changed}/{len(y.records)} records changed; {figures}{rel}")
        per_exp.setdefault(k.split("__")[1], []).append(
            (changed, len(y.records), [*ds, ds[-1] / base * 100 if base else 0.0]))
    print("per experiment over its changed cells (min … max):")
    for exp, rows in sorted(per_exp.items()):
        fr = [c / n for c, n, _ in rows]
        parts = [f"{lab} {min(r[2][i] for r in rows):+.4g} … {max(r[2][i] for r in rows):+.4g}"
                 for i, lab in enumerate([f[0] for f in _DELTA_FIELDS] + ["mean TTFT %"])]
        print(f"  {exp}: {len(rows)} cells; records changed {min(fr):.1%} … {max(fr):.1%}; "
              + "; ".join(parts))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    deltas = "--deltas" in args
    args = [x for x in args if x != "--deltas"]
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
    if deltas and rec:
        _deltas(a, b, rec)
    sa, sb = a / "summary.csv", b / "summary.csv"
    if sa.is_file() and sb.is_file():
        ra = list(csv.reader(sa.open(encoding="utf-8")))
        rb = list(csv.reader(sb.open(encoding="utf-8")))
        print(f"summary.csv identical: {ra == rb}")
    return 1 if rec or met else 0


if __name__ == "__main__":
    sys.exit(main())
