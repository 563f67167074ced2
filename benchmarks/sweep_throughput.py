"""Sweep throughput (cells per minute) with `--jobs 1`, `--jobs 2` and a 2-worker Dask
LocalCluster, measured in one run on the same grid, reported as ratios to `--jobs 1`.

Each configuration runs the whole grid with `exfairs.sim.sweep.run_sweep(..., force=True)` into its
own fresh directory (cells computed and their results files written; no summary or plots, as
with `--no-plots`). The Dask time includes starting and closing the LocalCluster, as a user's
`exfairs-sim sweep --executor dask` pays it; the cluster start alone is reported beside it.
Configurations are run in rounds, the order reversed every other round, and the median per
configuration is reported. The results files of all configurations are checked to be identical
apart from wall-clock metadata.

    .venv/bin/python benchmarks/sweep_throughput.py [--rounds 2] \
        [--out benchmarks/results/sweep_throughput.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from exfairs.sim.sweep import SweepConfig, run_sweep

CONFIGS = ("jobs 1", "jobs 2", "dask LocalCluster (2 workers)")
WALL_CLOCK = ("created_utc", "wall_time_s", "git_revision")


def _grid(profile: str, n_seeds: int) -> SweepConfig:
    # The default scenario in the default sweep's engine regime (max_num_seqs 48).
    return SweepConfig(name="throughput", scenarios=("default",),
                       experiments=("FCFS", "VTC", "QUEUE_ExFairS"),
                       seeds=tuple(range(n_seeds)),
                       load_factors=(0.8, 1.2), profile=profile,
                       engine=(("max_num_seqs", 48),))


def _run(config: SweepConfig, which: str, out: Path) -> float:
    t0 = time.perf_counter()
    if which == "jobs 1":
        run_sweep(config, out, jobs=1, force=True)
    elif which == "jobs 2":
        run_sweep(config, out, jobs=2, force=True)
    else:
        run_sweep(config, out, jobs=2, force=True, executor="dask")
    return time.perf_counter() - t0


def _cluster_start_s() -> float:
    from distributed import LocalCluster

    t0 = time.perf_counter()
    cluster = LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    started = time.perf_counter() - t0
    cluster.close()
    return started


def _comparable(path: Path) -> dict[str, object]:
    doc: dict[str, Any] = json.loads(path.read_text())
    for key in WALL_CLOCK:
        doc["info"].pop(key, None)
    return doc


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2, help="runs of each configuration")
    ap.add_argument("--profile", default="a100-llama2-7b")
    ap.add_argument("--seeds", type=int, default=2, help="seeds 0..N-1 (grid size: 6 × N)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/sweep_throughput.md"))
    args = ap.parse_args(argv)
    config = _grid(args.profile, args.seeds)
    n_cells = len(config.cells())
    times: dict[str, list[float]] = {c: [] for c in CONFIGS}
    work = Path(tempfile.mkdtemp(prefix="exfairs-throughput-"))
    try:
        run_sweep(config, work / "warm", jobs=1, force=True)  # imports, caches, page cache
        for r in range(args.rounds):
            order = CONFIGS if r % 2 == 0 else tuple(reversed(CONFIGS))
            for which in order:
                out = work / f"{which.split()[0]}{which.split()[1] if which[0] == 'j' else ''}_{r}"
                s = _run(config, which, out)
                times[which].append(s)
                print(f"round {r}: {which}: {s:.1f} s ({n_cells / s * 60:.1f} cells/min)",
                      flush=True)
        starts = [_cluster_start_s() for _ in range(args.rounds)]
        # Same results whatever ran them.
        dirs = sorted(p for p in work.iterdir() if p.is_dir() and p.name != "warm")
        ref = {p.name: _comparable(p) for p in dirs[0].glob("*.json")}
        for d in dirs[1:]:
            assert {p.name: _comparable(p) for p in d.glob("*.json")} == ref, d
        assert len(ref) == n_cells
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {c: float(np.median(v)) for c, v in times.items()}
    cpm = {c: n_cells / med[c] * 60 for c in CONFIGS}
    cmd = ".venv/bin/python benchmarks/sweep_throughput.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    lines = [
        "# Sweep throughput",
        "",
        "Grid: scenario `default`, experiments FCFS, VTC, QUEUE_ExFairS × seeds "
        f"0..{args.seeds - 1} × loads "
        f"0.8, 1.2 = {n_cells} cells, profile `{args.profile}`, max_num_seqs 48 (the default "
        "sweep's regime); cells computed and written, no summary or plots (`--no-plots`). Each "
        "configuration reruns the whole grid (`force`) into a fresh directory; rounds alternate "
        "the order; medians. The Dask figure includes starting and closing its LocalCluster "
        "(2 single-threaded worker processes). All configurations wrote identical results "
        "files apart from wall-clock metadata (checked).",
        "",
        f"- date (UTC): {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M')}",
        f"- machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} logical CPUs (shared with other jobs: ratios are the measurement)",
        f"- load average at the end (1/5/15 min): "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}",
        f"- python {platform.python_version()}",
        f"- command: `{cmd.strip()}` ({args.rounds} rounds)",
        "",
        "| configuration | wall s (median) | runs (s) | cells / minute | ratio to jobs 1 |",
        "|---|---:|---|---:|---:|",
    ]
    for c in CONFIGS:
        runs = ", ".join(f"{t:.1f}" for t in times[c])
        lines.append(f"| {c} | {med[c]:.1f} | {runs} | {cpm[c]:.1f} | "
                     f"{cpm[c] / cpm['jobs 1']:.2f}× |")
    lines += ["", f"LocalCluster start alone (2 workers): median {np.median(starts):.1f} s "
              f"({', '.join(f'{s:.1f}' for s in starts)})."]
    _write_atomic(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
