"""Cost per cell of deciding that a finished sweep cell can be reused, three ways, side by side:
the resume index, `check_result` (JSON + records checksum and Parquet footer; what `is_done` does
without an index) and a full `read_result` (JSON + every record decoded).

    python benchmarks/resume_cost.py DIR [--repeats 5]

DIR is a finished sweep directory (with its resume-index.jsonl). Prints medians over repeats,
interleaved so that machine noise hits all three alike.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from exfairs.results import check_result, read_result
from exfairs.resume_index import ResumeIndex


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("dir", type=Path)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    files = sorted(p for p in args.dir.glob("*.json"))
    times: dict[str, list[float]] = {"index": [], "check_result": [], "read_result": []}
    for _ in range(args.repeats):
        t = time.perf_counter()
        index = ResumeIndex.load(args.dir)
        assert all(index.lookup(p) is not None for p in files), "index does not cover DIR"
        times["index"].append(time.perf_counter() - t)
        t = time.perf_counter()
        for p in files:
            check_result(p)
        times["check_result"].append(time.perf_counter() - t)
        t = time.perf_counter()
        for p in files:
            read_result(p)
        times["read_result"].append(time.perf_counter() - t)
    print(f"{len(files)} cells, {args.repeats} repeats (median ms per cell):")
    for name, ts in times.items():
        print(f"  {name:13s} {statistics.median(ts) * 1e3 / len(files):7.2f}")


if __name__ == "__main__":
    main()
