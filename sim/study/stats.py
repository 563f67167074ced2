"""The study's statistics: paired differences over seeds, win / tie / loss verdicts, and the
issue's target check (issue #8), computed from a `StudyData`."""

from __future__ import annotations

import math
from dataclasses import dataclass

from exfairs.sim.study.data import StudyData, baselines, exfairs_experiments, metric, reference_for
from exfairs.summary import Stat, mean_ci95

#: Target thresholds (issue #8).
TARGET_LOAD = 1.0
TARGET_JAIN = 0.95
TARGET_THROUGHPUT_LOSS = 0.01

# (summary key, column title, decimals, scale): the document's table columns.
COLUMNS: tuple[tuple[str, str, int, float], ...] = (
    ("violation_rate", "violation rate", 3, 1.0),
    ("worst_client_attainment", "worst-client attainment", 3, 1.0),
    ("jain_attainment", "Jain (attainment)", 3, 1.0),
    ("jain_qoe", "Jain (QoE)", 3, 1.0),
    ("request_throughput", "throughput (req/s)", 3, 1.0),
    ("request_goodput", "goodput (req/s)", 3, 1.0),
    ("p99_ttft_ms", "p99 TTFT (s)", 2, 1e-3),
)
#: Per summary key: whether a larger value is better (decides wins and losses).
HIGHER_IS_BETTER: dict[str, bool] = {
    "violation_rate": False, "worst_client_attainment": True, "jain_attainment": True,
    "jain_qoe": True, "request_throughput": True, "request_goodput": True, "p99_ttft_ms": False}


def paired_difference(data: StudyData, scenario: str, load: float, a: str, b: str,
                      key: str, other: StudyData | None = None) -> Stat:
    """Mean and 95% CI over seeds of (a − b) in metric `key`, paired by seed (the same seed draws
    the same workload for every experiment). `b` comes from `other` when given."""
    ra = data.runs.get((scenario, load, a), {})
    rb = (other or data).runs.get((scenario, load, b), {})
    seeds = sorted(set(ra) & set(rb))
    return mean_ci95([metric(ra[s], key) - metric(rb[s], key) for s in seeds])


def verdict(diff: Stat, higher_is_better: bool, tol: float = 1e-9) -> str:
    """'win', 'loss' or 'tie' for a paired difference: a win needs the whole 95% interval on the
    good side of 0 (with one seed, the sign of the difference)."""
    if diff.n == 0 or math.isnan(diff.mean):
        return "n/a"
    half = 0.0 if math.isnan(diff.ci95) else diff.ci95
    lo, hi = diff.mean - half, diff.mean + half
    if abs(diff.mean) <= tol and half <= tol:
        return "tie"
    good = lo > tol if higher_is_better else hi < -tol
    bad = hi < -tol if higher_is_better else lo > tol
    return "win" if good else ("loss" if bad else "tie")


def wtl(data: StudyData, a: str, b: str, key: str,
        other: StudyData | None = None) -> tuple[int, int, int, list[tuple[str, float, Stat]]]:
    """Wins, ties, losses of `a` against `b` over every (scenario, load), and the per-cell
    paired differences."""
    w = t = lo = 0
    cells: list[tuple[str, float, Stat]] = []
    for scen in data.scenarios:
        for load in data.loads:
            d = paired_difference(data, scen, load, a, b, key, other)
            v = verdict(d, HIGHER_IS_BETTER[key])
            if v == "n/a":
                continue
            cells.append((scen, load, d))
            w += v == "win"
            t += v == "tie"
            lo += v == "loss"
    return w, t, lo, cells


@dataclass(frozen=True, slots=True)
class TargetCheck:
    """The issue's target for one ExFairS experiment in one scenario at the target load."""

    scenario: str
    experiment: str
    worst: float
    best_baseline: str
    best_baseline_worst: float
    worst_ok: bool
    jain: float
    jain_ok: bool
    throughput: float
    reference: str
    reference_throughput: float
    throughput_ok: bool

    @property
    def ok(self) -> bool:
        return self.worst_ok and self.jain_ok and self.throughput_ok


def target_checks(data: StudyData) -> list[TargetCheck]:
    """One check per (scenario, ExFairS experiment) at the target load (on means over seeds)."""
    out: list[TargetCheck] = []
    if TARGET_LOAD not in data.loads:
        return out
    for scen in data.scenarios:
        for exp in exfairs_experiments(data):
            row = data.row(scen, TARGET_LOAD, exp)
            if row is None:
                continue
            worst = row.stat("worst_client_attainment").mean
            base = [(b, r.stat("worst_client_attainment").mean) for b in baselines(data)
                    if (r := data.row(scen, TARGET_LOAD, b)) is not None]
            best_b, best_w = max(base, key=lambda t: (t[1], t[0])) if base else ("–", math.nan)
            jain = row.stat("jain_attainment").mean
            thr = row.stat("request_throughput").mean
            ref = reference_for(data, exp)
            ref_row = data.row(scen, TARGET_LOAD, ref) if ref else None
            ref_thr = ref_row.stat("request_throughput").mean if ref_row else math.nan
            out.append(TargetCheck(
                scenario=scen, experiment=exp, worst=worst, best_baseline=best_b,
                best_baseline_worst=best_w, worst_ok=bool(not base or worst >= best_w),
                jain=jain, jain_ok=bool(jain >= TARGET_JAIN), throughput=thr,
                reference=ref or "–", reference_throughput=ref_thr,
                throughput_ok=bool(not math.isnan(ref_thr)
                                   and thr >= (1 - TARGET_THROUGHPUT_LOSS) * ref_thr)))
    return out
