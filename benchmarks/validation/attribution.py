"""Which part is responsible for each missed all-client target of a validation (issue 12: "show
with replay, the step log and the live-vs-live floor which part is responsible").

    python benchmarks/validation/attribution.py benchmarks/results/validation/refit/validation.json

Reads a validation.json written by run_validation.py. One row per missed all-client target
(mean TTFT, e2e, TPOT within 5 %, violation rate within 3 points, Jain within 0.02; means over
the seeds): the error sim − live, the live-vs-live floor of the same experiment (seed 0 run
twice, the same error between two live runs), and the replay of the experiment's seed runs (the
scheduler model fed the live step durations: lowest share of requests with first-token and
finish step as live, and the mean TTFT / e2e errors over the seeds). The verdict column:
"within the floor" when |floor| ≥ |error| (one live run differs from another as much), else
"cost model" — when every seed's replay met its target (≥ 99 % of requests matching, TTFT and
e2e within 2 %) the scheduler model reproduces the live runs given their step durations, so
what is left is the step costs or the live runs' own spread. Where a seed's replay missed, the
verdict says so with that replay's errors (the scheduler model's share of a TTFT or e2e error
is at most about those).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

MATCH = 0.99
ERROR = 0.02


def _fmt(x: float, kind: str) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{x * 100:+.1f}%" if kind == "rel" else f"{x:+.3f}"


def _verdict(err: float, floor: float, replays: list[dict[str, Any]]) -> str:
    out = "within the floor" if math.isfinite(floor) and abs(floor) >= abs(err) else "cost model"
    missed = [r for r in replays if r["match_fraction"] < MATCH or abs(r["ttft_error"]) > ERROR
              or abs(r["e2e_error"]) > ERROR]
    for r in missed:
        out += (f"; replay of seed {r['run']} missed ({r['match_fraction'] * 100:.1f}% match, "
                f"TTFT {r['ttft_error'] * 100:+.2f}%, e2e {r['e2e_error'] * 100:+.2f}%)")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("file", type=Path)
    ns = p.parse_args()
    try:
        doc = json.loads(ns.file.read_text(encoding="utf-8"))
        scenarios, replays = doc["scenarios"], doc["replays"]
        seeds = [str(s) for s in doc["seeds"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        sys.stderr.write(f"attribution: {ns.file}: not a validation.json ({exc})\n")
        return 2
    by_run = {(r["scenario"], r["run"], r["experiment"]): r for r in replays}
    out = [f"{ns.file}", "",
           "| scenario | experiment | metric | sim−live | live floor | replay: lowest match, "
           "TTFT err, e2e err (seeds) | verdict |", "|---|---|---|---|---|---|---|"]
    counts: dict[str, int] = {}
    for sc in scenarios:
        for row in sc["rows"]:
            if row["ok"] or "[" in row["metric"]:
                continue
            kind = "abs" if row["metric"] in ("violation_rate", "jain_attainment") else "rel"
            rps = [by_run[k] for s in seeds
                   if (k := (sc["scenario"], s, row["experiment"])) in by_run]
            floor = float(row.get("floor", math.nan))
            verdict = _verdict(float(row["error"]), floor, rps)
            key = verdict.split(";")[0]
            counts[key] = counts.get(key, 0) + 1
            rp = (f"{min(r['match_fraction'] for r in rps) * 100:.0f}%, "
                  f"{statistics.fmean(r['ttft_error'] for r in rps) * 100:+.2f}%, "
                  f"{statistics.fmean(r['e2e_error'] for r in rps) * 100:+.2f}%") if rps else "–"
            out.append(f"| {sc['scenario']} | {row['experiment']} | {row['metric']} | "
                       f"{_fmt(float(row['error']), kind)} | {_fmt(floor, kind)} | {rp} | "
                       f"{verdict} |")
    out += ["", "Missed all-client targets: " + (", ".join(
        f"{v} {n}" for v, n in sorted(counts.items())) or "none") + ".", ""]
    sys.stdout.write("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
