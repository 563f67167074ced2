"""Bytes per request of a run's result files: schema 1 (one JSON, token times zlib+base64) vs
schema 2 (flat-summary JSON + Parquet records), on simulated runs of bundled scenarios and on the
live runs recorded in benchmarks/results/validation.

    python benchmarks/results_size.py [--scenarios exfairs-1 ...] [--experiments ExFairS ...]

Prints a Markdown table (for benchmarks/results/results_size.md). Sizes are exact byte counts.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from exfairs import results as results_mod
from exfairs.results import RunResult, read_result, write_result
from exfairs.sweep import Cell, compute_cell

ROOT = Path(__file__).resolve().parent


def v1_bytes(result: RunResult) -> int:
    doc = {"schema": "exfairs.result", "schema_version": 1, **results_mod._encode(result)}
    # What schema-1 write_result wrote (compact JSON); NaN is now null, one byte shorter than
    # schema 1's "nan", so this undercounts schema 1 by a byte per undefined value.
    text = json.dumps(doc, allow_nan=False, separators=(",", ":"), default=str) + "\n"
    return len(text.encode())


def v2_bytes(result: RunResult, where: Path) -> tuple[int, int]:
    path = where / "r.json"
    write_result(result, path)
    return path.stat().st_size, path.with_suffix(".parquet").stat().st_size


def row(label: str, result: RunResult, where: Path) -> str:
    n = max(1, len(result.records))
    old = v1_bytes(result)
    js, pq = v2_bytes(result, where)
    assert read_result(where / "r.json") == result
    tokens = sum(r.generated_tokens for r in result.records) / n
    return (f"| {label} | {len(result.records)} | {tokens:.0f} | {old / n:.0f} | {js / n:.0f} | "
            f"{pq / n:.0f} | {(js + pq) / n:.0f} | {old / (js + pq):.1f}× |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scenarios", nargs="+",
                    default=["default", "exfairs-1", "exfairs-2", "exfairs-3", "exfairs-4",
                             "exfairs-5", "azure-conv"])
    ap.add_argument("--experiments", nargs="+", default=["ExFairS", "QUEUE_VTC"])
    ap.add_argument("--load", type=float, default=1.0)
    ap.add_argument("--profile", default="a100-llama2-7b")
    args = ap.parse_args()
    print("| run | requests | mean output tokens | schema 1 B/req | schema 2 JSON B/req | "
          "schema 2 Parquet B/req | schema 2 total B/req | smaller by |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        for scen in args.scenarios:
            for exp in args.experiments:
                cell = Cell(scenario=scen, experiment=exp, seed=0, load_factor=args.load,
                            profile=args.profile)
                print(row(f"sim {scen} {exp}", compute_cell(cell), where), flush=True)
        for path in sorted((ROOT / "results" / "validation").glob("*/*__live.json")):
            print(row(f"live {path.parent.name} {path.name.split('__')[1]}", read_result(path),
                      where), flush=True)


if __name__ == "__main__":
    main()
