"""Where the study's time and disk go: CPU seconds per simulation split into phases (preparing the
workload, simulating, computing metrics, writing the result files) and bytes per cell, on a
stratified sample of the study's cells, extrapolated to the whole study.

    python benchmarks/study_cost.py [--every 3] [--seeds 0]

The sample: from each of the study's three sweeps (studies/exfairs-study.toml, exfairs-before,
exfairs-ablation), every (scenario, experiment) pair at the given seeds, the load factor cycling
through the sweep's loads pair by pair, then every `--every`-th of those cells. CPU seconds are
`time.process_time()` of this process (one core), so the estimate for 2 cores is total / 2 —
an estimate, not a run of the study: it leaves out the pool's start-up and the report's figures.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from exfairs.metrics import compute_metrics
from exfairs.policies import parse_experiment
from exfairs.results import RunInfo, RunResult, write_result
from exfairs.sim.runner import simulate
from exfairs.sim.sweep import Cell, _prepare, load_sweep, split_gate_knob

ROOT = Path(__file__).resolve().parent.parent
SWEEPS = ("exfairs-study.toml", "exfairs-before.toml", "exfairs-ablation.toml")
PHASES = ("prepare", "simulate", "metrics", "write")


def sample(every: int, seeds: list[int]) -> tuple[list[Cell], int]:
    cells: list[Cell] = []
    total = 0
    for name in SWEEPS:
        config = load_sweep(ROOT / "studies" / name)
        all_cells = config.cells()
        total += len(all_cells)
        by_key = {(c.scenario, c.experiment, c.seed, c.load_factor): c for c in all_cells}
        i = 0
        for scen in config.scenarios:
            for exp in config.experiments:
                for seed in seeds:
                    load = config.load_factors[i % len(config.load_factors)]
                    i += 1
                    cell = by_key.get((scen, exp, seed, load))
                    if cell is not None:
                        cells.append(cell)
    return cells[::every], total


def measure(cell: Cell, where: Path) -> dict[str, float]:
    t = [time.process_time()]
    prepared = _prepare(cell)
    t.append(time.process_time())
    sim = simulate(prepared.workload, parse_experiment(cell.experiment), prepared.profile,
                   engine=prepared.engine, policy_params=dict(cell.policy_params),
                   max_inflight=split_gate_knob(cell.engine)[1])
    t.append(time.process_time())
    metrics = compute_metrics(sim.records, prepared.workload.clients, window=prepared.window)
    t.append(time.process_time())
    exp = parse_experiment(cell.experiment)
    info = RunInfo(backend="sim", scenario=cell.scenario, experiment=exp.name, policy=exp.policy,
                   mode=exp.mode.value, seed=cell.seed, load_factor=cell.load_factor,
                   profile_id=prepared.profile.id, policy_params=cell.policy_params)
    result = RunResult(info=info, clients=prepared.workload.clients, records=sim.records,
                       metrics=metrics, policy_samples=sim.policy_samples)
    path = where / "cell.json"
    write_result(result, path)
    t.append(time.process_time())
    out = {phase: t[i + 1] - t[i] for i, phase in enumerate(PHASES)}
    out["json_bytes"] = path.stat().st_size
    samples = path.with_suffix(".samples.parquet")
    out["parquet_bytes"] = path.with_suffix(".parquet").stat().st_size + (
        samples.stat().st_size if samples.exists() else 0)
    samples.unlink(missing_ok=True)  # the next cell may have none
    out["requests"] = len(sim.records)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--every", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = ap.parse_args()
    cells, total = sample(args.every, args.seeds)
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for cell in cells:
            rows.append(measure(replace(cell), Path(tmp)))
    n = len(rows)
    print(f"{n} sampled cells of the study's {total}")
    print("| phase | mean CPU s per cell | median | share |")
    print("|---|---:|---:|---:|")
    cpu = sum(sum(r[p] for p in PHASES) for r in rows) / n
    for p in PHASES:
        vals = [r[p] for r in rows]
        print(f"| {p} | {statistics.mean(vals):.3f} | {statistics.median(vals):.3f} | "
              f"{statistics.mean(vals) / cpu:.0%} |")
    print(f"| all | {cpu:.3f} | | 100% |")
    js = statistics.mean(r["json_bytes"] for r in rows)
    pq = statistics.mean(r["parquet_bytes"] for r in rows)
    req = statistics.mean(r["requests"] for r in rows)
    print(f"\nper cell: {req:.0f} requests, JSON {js / 1e3:.1f} kB, Parquet {pq / 1e3:.1f} kB, "
          f"{(js + pq) / req:.0f} B/request")
    print(f"estimate for {total} cells: {cpu * total / 2 / 60:.1f} min on 2 cores "
          f"({cpu * total / 60:.1f} CPU-min), {(js + pq) * total / 1e6:.0f} MB of results")


if __name__ == "__main__":
    main()
