"""What resuming a finished sweep costs: per cell, three ways of deciding that a cell can be
reused (the resume index, `check_result`, a full `read_result`), and whole reruns of the sweep
command, with a count of the results files a rerun parses.

    python benchmarks/resume_cost.py DIR [--repeats 5]            # an existing finished sweep
    python benchmarks/resume_cost.py DIR --build 1000 [--reruns 3] # build a sweep of tiny cells

With ``--build N`` DIR becomes a sweep of N small cells (a two-client, 12 s scenario; seeds
0..N/2-1 of FCFS and QUEUE_VTC, `--no-plots`), built once (a rerun reuses what is there). Timings
are medians over repeats, interleaved so that machine noise hits all methods alike. Whole reruns
run `python -m exfairs.sim.cli sweep` as a subprocess (start-up and imports included); the parse
count comes from one extra in-process rerun with `read_result` and the Parquet reader wrapped.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from exfairs import export as export_mod
from exfairs import results as results_mod
from exfairs.results import check_result, read_result
from exfairs.resume_index import ResumeIndex

TINY = """\
name = "tiny"
description = "two clients, short horizon (resume benchmark)"
duration_s = 12
warmup_s = 1
cooldown_s = 1
rate_basis = "capacity"

[[clients]]
name = "a"
prompt_class = "short"
rate_per_min = 1
slo = { e2e = { scale = 10 } }

[[clients]]
name = "b"
prompt_class = "short"
rate_per_min = 1
arrival = { process = "gamma", burstiness = 4 }
slo = { e2e = { scale = 10 } }
"""


#: The sweep command, run by this interpreter so that a frozen copy of the package on PYTHONPATH
#: (cell keys hash the package's source) is the one measured.
SIM = [sys.executable, "-m", "exfairs.sim.cli"]


def sweep_args(scenario: Path, out: Path, cells: int) -> list[str]:
    seeds = [str(s) for s in range(max(1, cells // 2))]
    return ["sweep", "--scenario", str(scenario), "-e", "FCFS", "-e", "QUEUE_VTC",
            "--seeds", *seeds, "--loads", "1.0", "--jobs", "2", "--no-plots",
            "--out", str(out)]


def per_cell(out: Path, repeats: int) -> None:
    files = sorted(p for p in out.glob("*.json") if not p.name.startswith("."))
    times: dict[str, list[float]] = {"index": [], "check_result": [], "read_result": []}
    for _ in range(repeats):
        t = time.perf_counter()
        index = ResumeIndex.load(out)
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
    print(f"{len(files)} cells, {repeats} repeats (median ms per cell; whole directory s):")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:13s} {med * 1e3 / len(files):7.3f} ms/cell  {med:7.2f} s")


def parses_in_rerun(args: list[str]) -> int:
    """Results files parsed by one in-process rerun of the sweep command."""
    from exfairs.sim.cli import main

    seen: list[str] = []
    real_read, real_records = results_mod.read_result, export_mod.read_records_parquet

    def counting_read(path: object, **kw: object) -> object:
        seen.append(str(path))
        return real_read(path, **kw)  # type: ignore[arg-type]

    def counting_records(path: object) -> object:
        seen.append(str(path))
        return real_records(path)  # type: ignore[arg-type]

    results_mod.read_result = counting_read  # type: ignore[assignment]
    export_mod.read_records_parquet = counting_records  # type: ignore[assignment]
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            rc = main(args)
    finally:
        results_mod.read_result = real_read
        export_mod.read_records_parquet = real_records
    assert rc == 0, f"rerun exited {rc}"
    return len(seen)


def whole_reruns(args: list[str], reruns: int) -> None:
    walls = []
    for _ in range(reruns):
        t = time.perf_counter()
        r = subprocess.run([*SIM, *args], capture_output=True, text=True, check=False,
                           env={**os.environ, "CI": "1"})
        walls.append(time.perf_counter() - t)
        if r.returncode != 0:
            raise SystemExit(f"rerun failed ({r.returncode}): {r.stderr[-2000:]}")
    print(f"whole reruns of the finished sweep ({reruns}): median {statistics.median(walls):.2f} s"
          f" (min {min(walls):.2f}, max {max(walls):.2f})")
    print(f"  last rerun's stderr tail: {r.stderr.strip().splitlines()[-1:]}")
    print(f"results files parsed by a rerun: {parses_in_rerun(args)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--build", type=int, default=0, metavar="N",
                    help="make DIR a sweep of N tiny cells first (reuses what is there)")
    ap.add_argument("--reruns", type=int, default=3, help="whole reruns to time (with --build)")
    args = ap.parse_args()
    if args.build:
        args.dir.mkdir(parents=True, exist_ok=True)
        scenario = args.dir.parent / f"{args.dir.name}-tiny.toml"
        scenario.write_text(TINY, encoding="utf-8")
        cmd = sweep_args(scenario, args.dir, args.build)
        t = time.perf_counter()
        subprocess.run([*SIM, *cmd], check=True, capture_output=True,
                       env={**os.environ, "CI": "1"})
        print(f"build (or reuse) of {args.build} cells: {time.perf_counter() - t:.1f} s")
        whole_reruns(cmd, args.reruns)
    per_cell(args.dir, args.repeats)


if __name__ == "__main__":
    main()
