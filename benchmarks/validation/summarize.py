"""Side-by-side summary of validation reports (issue 12): per scenario, the range over
experiments of the all-client errors (sim − live) / live, the live-vs-live floor, targets met
and the rankings.

    python benchmarks/validation/summarize.py LABEL=DIR [LABEL=DIR ...] > SUMMARY.md

DIR: a folder with the validation.json that benchmarks/validation/run_validation.py wrote."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

METRICS = ("mean_ttft_ms", "mean_e2el_ms", "mean_tpot_ms", "violation_rate")


def _span(values: list[float], pct: bool) -> str:
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return "–"
    f = (lambda v: f"{v * 100:+.1f}%") if pct else (lambda v: f"{v:+.3f}")
    return f"{f(min(vals))} … {f(max(vals))}"


def _rows(label: str, doc: dict[str, Any]) -> list[str]:
    out = []
    for sc in doc["scenarios"]:
        allc = [r for r in sc["rows"] if "[" not in r["metric"]]
        cells = []
        for m in METRICS:
            rows = [r for r in allc if r["metric"] == m]
            cells.append(_span([r["error"] for r in rows], m != "violation_rate"))
            cells.append(_span([r["floor"] for r in rows], m != "violation_rate"))
        ok = sum(r["ok"] for r in allc)
        client = [r for r in sc["rows"] if "[" in r["metric"]]
        same = ["yes" if sc[f"ranking_{k}"]["same"] else "no"
                for k in ("violation rate", "worst-client attainment")]
        out.append(f"| {label} | {sc['scenario']} | " + " | ".join(cells)
                   + f" | {ok}/{len(allc)} | {sum(r['ok'] for r in client)}/{len(client)} | "
                   + " / ".join(same) + " |")
    return out


def main(argv: list[str]) -> int:
    if not argv or any("=" not in a for a in argv):
        sys.stderr.write(__doc__ + "\n")
        return 2
    head = ["| report | scenario | " + " | ".join(f"{m} sim−live | {m} live floor" for m in METRICS)
            + " | all-client targets | per-client targets | same ranking (violation / worst "
            "client) |", "|" + "---|" * (2 + 2 * len(METRICS) + 3)]
    lines = head
    for arg in argv:
        label, d = arg.split("=", 1)
        doc = json.loads((Path(d) / "validation.json").read_text(encoding="utf-8"))
        lines += _rows(label, doc)
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
