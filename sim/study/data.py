"""A study's results: the sweeps run through `exfairs.sim.sweep.run_sweep`, collected as summary
rows and per-cell runs (without records) for the statistics and the document."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from exfairs.policies import parse_experiment
from exfairs.results import RunResult, read_result
from exfairs.sim.sweep import SweepConfig, run_sweep
from exfairs.summary import SummaryRow, metric_value, summarize, write_summary_csv

_log = logging.getLogger("exfairs.study")

#: The experiments that are ExFairS (one per mode); every other experiment is a baseline.
EXFAIRS_POLICY = "ExFairS"
#: The reference for "throughput within 1%": FCFS in the same mode.
REFERENCE_POLICY = "FCFS"


@dataclass(frozen=True, slots=True)
class StudyData:
    """One sweep's results: the summary rows, and per (scenario, load, experiment) the runs by
    seed (without records) and their result files."""

    config: SweepConfig
    out_dir: Path
    rows: tuple[SummaryRow, ...]
    runs: dict[tuple[str, float, str], dict[int, RunResult]] = field(default_factory=dict)
    files: dict[tuple[str, float, str, int], Path] = field(default_factory=dict)

    def row(self, scenario: str, load: float, experiment: str) -> SummaryRow | None:
        for r in self.rows:
            if r.scenario == scenario and r.load_factor == load and r.experiment == experiment:
                return r
        return None

    @property
    def scenarios(self) -> list[str]:
        return sorted({r.scenario for r in self.rows})

    @property
    def loads(self) -> list[float]:
        return sorted({r.load_factor for r in self.rows})

    def experiments(self) -> list[str]:
        """Experiments in the sweep file's order."""
        present = {r.experiment for r in self.rows}
        ordered = [parse_experiment(e).name for e in self.config.experiments]
        return [e for e in dict.fromkeys(ordered) if e in present]

    def mode_of(self, experiment: str) -> str:
        return next(r.mode for r in self.rows if r.experiment == experiment)

    def policy_of(self, experiment: str) -> str:
        return next(r.policy for r in self.rows if r.experiment == experiment)


def run_study_sweep(config: SweepConfig, out_dir: Path, *, jobs: int, force: bool,
                    report: Callable[[str], object] = _log.info) -> StudyData:
    """Run (or reuse) every cell of `config` into `out_dir` and collect the results; `report`
    receives the progress lines (one per 5% of the cells, newline-terminated)."""
    t0 = time.perf_counter()
    total = len(config.cells())

    def progress(done: int, n: int, _outcome: object) -> None:
        if done == n or done % max(1, n // 20) == 0:
            report(f"  {config.name}: {done}/{n} cells, {time.perf_counter() - t0:.0f} s\n")

    report(f"sweep {config.name!r}: {total} cells, {jobs} process(es) → {out_dir}/\n")
    run = run_sweep(config, out_dir, jobs=jobs, force=force, progress=progress)
    light = [_light(o.path, o.light) for o in run.outcomes]
    runs: dict[tuple[str, float, str], dict[int, RunResult]] = {}
    files: dict[tuple[str, float, str, int], Path] = {}
    for outcome, res in zip(run.outcomes, light, strict=True):
        i = res.info
        runs.setdefault((i.scenario, float(i.load_factor), i.experiment), {})[i.seed] = res
        files[(i.scenario, float(i.load_factor), i.experiment, i.seed)] = outcome.path
    rows = tuple(summarize(light))
    write_summary_csv(rows, out_dir / "summary.csv")
    return StudyData(config, out_dir, rows, runs, files)


def _light(path: Path, light: RunResult | None) -> RunResult:
    """A cell's result without records: the sweep's own (from its resume index, or the cell just
    run), else the results file read without its records. (A copy per cell used to be cached in
    OUT/light/; the sweep's index made it a write that was never read.)"""
    if light is not None:
        return light
    return replace(read_result(path, records=False), policy_samples=())


def metric(res: RunResult, key: str) -> float:
    """One summary metric of one run (`exfairs.summary.metric_value`'s keys and units)."""
    return metric_value(res, key)


def exfairs_experiments(data: StudyData) -> list[str]:
    """The ExFairS experiments of `data`, in the sweep file's order."""
    return [e for e in data.experiments() if data.policy_of(e) == EXFAIRS_POLICY]


def baselines(data: StudyData) -> list[str]:
    """Every other experiment of `data` (the baselines), in the sweep file's order."""
    return [e for e in data.experiments() if data.policy_of(e) != EXFAIRS_POLICY]


def reference_for(data: StudyData, experiment: str) -> str | None:
    """The throughput reference (FCFS) in `experiment`'s mode, or None when the sweep has none."""
    mode = data.mode_of(experiment)
    for e in data.experiments():
        if data.policy_of(e) == REFERENCE_POLICY and data.mode_of(e) == mode:
            return e
    return None
