"""Replay agreement per experiment from one or more validation.json files (written by
run_validation.py): runs, runs meeting the replay targets (≥ 99 % of requests with first-token
and finish step equal to live, mean TTFT and e2e within 2 %), the lowest and mean match.

    python benchmarks/validation/replay_summary.py benchmarks/results/validation/validation.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

MATCH = 0.99
ERROR = 0.02


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path)
    ns = p.parse_args()
    for f in ns.files:
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
            replays = doc["replays"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            sys.stderr.write(f"replay_summary: {f}: not a validation.json ({exc})\n")
            return 2
        by_exp: dict[str, list[dict[str, float]]] = defaultdict(list)
        for r in replays:
            by_exp[r["experiment"]].append(r)
        sys.stdout.write(f"{f}\n\n| experiment | runs | targets met | match min | match mean |\n"
                         "|---|---:|---:|---:|---:|\n")
        for exp in sorted(by_exp):
            rs = by_exp[exp]
            met = sum(r["match_fraction"] >= MATCH and abs(r["ttft_error"]) <= ERROR
                      and abs(r["e2e_error"]) <= ERROR for r in rs)
            m = [r["match_fraction"] for r in rs]
            sys.stdout.write(f"| {exp} | {len(rs)} | {met} | {min(m):.1%} | "
                             f"{sum(m) / len(m):.1%} |\n")
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
