"""Bytes per request of a run's result files: schema 1 (one JSON, token times zlib+base64) vs
today's schema (flat-summary JSON + Parquet records), on simulated runs of bundled scenarios and
on live runs recorded in benchmarks/results/validation (`--live` globs there; files of any
results schema).

The recorded live runs predate the live clock's microsecond ticks (exfairs.live.driver); their
run-clock times (dispatch, first token, finish, token times) are rounded to the microsecond here,
as that clock would have produced them, and schema 1 is measured on the same rounded result.

    python benchmarks/results_size.py [--scenarios exfairs-1 ...] [--experiments ExFairS ...]

Prints a Markdown table (for benchmarks/results/results_size.md). Sizes are exact byte counts.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

from exfairs import results as results_mod
from exfairs.export import micro
from exfairs.results import RunResult, read_result, write_result
from exfairs.sim.sweep import Cell, compute_cell

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
    samples = path.with_suffix(".samples.parquet")
    return path.stat().st_size, (path.with_suffix(".parquet").stat().st_size
                                 + (samples.stat().st_size if samples.exists() else 0))


def _us(t: float | None) -> float | None:
    return None if t is None else micro(t) / 1e6


def on_live_clock(result: RunResult) -> RunResult:
    """`result` with every run-clock time a live run records rounded to the microsecond."""
    recs = tuple(replace(r, dispatch_s=_us(r.dispatch_s), first_token_s=_us(r.first_token_s),
                         finish_s=_us(r.finish_s),
                         token_times_s=tuple(micro(t) / 1e6 for t in r.token_times_s))
                 for r in result.records)
    return replace(result, records=recs)


def read_recorded(path: Path) -> RunResult:
    """A recorded live result. Schema-1 aggregates written before `rejected` was counted get 0
    there (no request of those runs was rejected: the outcome did not exist yet); later files
    are read as they are."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    if doc.get("schema_version") != 1:
        return read_result(path)
    metrics = doc["metrics"]
    for agg in [metrics["overall"], *(c["metrics"] for c in metrics["per_client"])]:
        agg.setdefault("rejected", 0)
    return results_mod.result_from_dict(doc, str(path))


def column_bytes(path: Path, column: str) -> int:
    """Compressed bytes of one column's chunks in a Parquet file (from its footer)."""
    import pyarrow.parquet as pq

    md = pq.read_metadata(path)
    return sum(md.row_group(g).column(c).total_compressed_size
               for g in range(md.num_row_groups) for c in range(md.num_columns)
               if md.row_group(g).column(c).path_in_schema == column)


def row(label: str, result: RunResult, where: Path) -> str:
    n = max(1, len(result.records))
    old = v1_bytes(result)
    js, pq = v2_bytes(result, where)
    assert read_result(where / "r.json") == result
    gaps = column_bytes(where / "r.parquet", "itl_us.list.element")
    tokens = sum(r.generated_tokens for r in result.records) / n
    return (f"| {label} | {len(result.records)} | {tokens:.0f} | {old / n:.0f} | {js / n:.0f} | "
            f"{pq / n:.0f} | {gaps / n:.0f} | {(js + pq) / n:.0f} | {old / (js + pq):.1f}× |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scenarios", nargs="*",
                    default=["default", "exfairs-1", "exfairs-2", "exfairs-3", "exfairs-4",
                             "exfairs-5", "azure-conv"])
    ap.add_argument("--experiments", nargs="+", default=["ExFairS", "QUEUE_VTC"])
    ap.add_argument("--load", type=float, default=1.0)
    ap.add_argument("--profile", default="a100-llama2-7b")
    # The schema-1 live runs recorded before the microsecond clock, and the first repetition of
    # each schema-2 live run of the validation (labelled "(2)": written with the clock).
    ap.add_argument("--live", nargs="*", default=["cpu-val-*/*__live.json",
                                                  "study-*/*__live.json",
                                                  "live/*__run0__live.json"],
                    help="globs under benchmarks/results/validation")
    args = ap.parse_args()
    v = results_mod.SCHEMA_VERSION
    print(f"| run | requests | mean output tokens | schema 1 B/req | schema {v} JSON B/req | "
          f"schema {v} Parquet (records + samples) B/req | of which itl_us B/req | "
          f"schema {v} total B/req | smaller by |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        for scen in args.scenarios:
            for exp in args.experiments:
                cell = Cell(scenario=scen, experiment=exp, seed=0, load_factor=args.load,
                            profile=args.profile)
                print(row(f"sim {scen} {exp}", compute_cell(cell), where), flush=True)
        for pattern in args.live:
            for path in sorted((ROOT / "results" / "validation").glob(pattern)):
                name, exp = path.name.split("__")[:2]
                label = (f"live {name} {exp} (2)" if path.parent.name == "live"
                         else f"live {path.parent.name} {exp}")
                print(row(label, on_live_clock(read_recorded(path)), where), flush=True)


if __name__ == "__main__":
    main()
