"""Sweep summaries: per (backend, scenario, experiment, load factor), the mean and 95% confidence
interval over seeds of the headline metrics, as rows, a CSV file and a fixed-width text table.

The interval is Student's t: ``mean ± t(0.975, n−1) · s / √n`` with s the sample standard
deviation (ddof = 1) over the n seeds whose value is defined (NaN values, e.g. the p99 TTFT of a
run where nothing got a first token, are left out and lower n). With one seed the half-width is NaN.
Every metric has a range (`SummaryMetric.bounds`: [0, 1] for rates, attainments, Jain indices
and QoE; [0, ∞) for the rest); the interval's ends `Stat.lo`/`Stat.hi` are clipped to it and
`Stat.clipped` says when that happened (plots then say so). `ci95` stays the unclipped half-width.
For one run's proportion with known counts, `wilson_interval` gives the Wilson score interval,
which never leaves [0, 1].
Sim and live results are never averaged together: the backend is part of the group key.
Experiments are ordered everywhere by `experiment_sort_key` (policy, then mode).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from exfairs.atomic import atomic_write_text
from exfairs.errors import InputError
from exfairs.results import RunResult


@dataclass(frozen=True, slots=True)
class Stat:
    """Mean and 95% CI half-width over `n` seeds (NaN when undefined); `lo`/`hi` the interval's
    ends clipped to the metric's range (`clipped` True when clipping moved one)."""

    mean: float
    ci95: float
    n: int
    lo: float = math.nan
    hi: float = math.nan
    clipped: bool = False


UNIT = (0.0, 1.0)
NONNEGATIVE = (0.0, math.inf)


@dataclass(frozen=True, slots=True)
class SummaryMetric:
    """A summarised metric: `key` (column stem), a label with its unit, whether higher is
    better, and the range its values can take (intervals are clipped to it)."""

    key: str
    label: str
    higher_is_better: bool
    bounds: tuple[float, float] = NONNEGATIVE


#: The summarised metrics, in column order.
SUMMARY_METRICS: tuple[SummaryMetric, ...] = (
    SummaryMetric("violation_rate", "SLO violation rate (fraction)", False, UNIT),
    SummaryMetric("worst_client_attainment", "worst client's SLO attainment (fraction)", True,
                  UNIT),
    SummaryMetric("jain_attainment", "Jain's index over SLO attainment", True, UNIT),
    SummaryMetric("jain_qoe", "Jain's index over QoE", True, UNIT),
    SummaryMetric("jain_service", "Jain's index over service while backlogged", True, UNIT),
    SummaryMetric("request_throughput", "throughput (requests/s)", True),
    SummaryMetric("output_throughput", "output throughput (tokens/s)", True),
    SummaryMetric("request_goodput", "goodput (requests/s meeting SLO)", True),
    SummaryMetric("p99_ttft_ms", "p99 TTFT (ms)", False),
    SummaryMetric("mean_qoe", "mean QoE (0-1)", True, UNIT),
    SummaryMetric("max_service_gap", "max service gap (weighted tokens)", False),
)


def metric_value(result: RunResult, key: str) -> float:
    """The value of summary metric `key` (see `SUMMARY_METRICS`) in one run."""
    m = result.metrics
    if hasattr(m.fairness, key):
        return float(getattr(m.fairness, key))
    if hasattr(m.overall, key):
        return float(getattr(m.overall, key))
    raise KeyError(key)


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """One group of runs: the same backend, scenario, experiment and load factor over seeds.

    `values` holds one `Stat` per entry of `SUMMARY_METRICS`, in that order; use `stat(key)`.
    """

    backend: str
    scenario: str
    experiment: str
    policy: str
    mode: str
    load_factor: float
    seeds: tuple[int, ...]
    values: tuple[Stat, ...]

    def stat(self, key: str) -> Stat:
        """The `Stat` of summary metric `key`."""
        for spec, st in zip(SUMMARY_METRICS, self.values, strict=True):
            if spec.key == key:
                return st
        raise KeyError(key)


def mean_ci95(values: Sequence[float], bounds: tuple[float, float] | None = None) -> Stat:
    """Mean and Student-t 95% CI half-width of the defined (non-NaN) values; the interval's
    ends clipped to `bounds` (None: unbounded)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    n = int(x.size)
    if n == 0:
        return Stat(math.nan, math.nan, 0)
    mean = float(np.mean(x))
    if n == 1:
        return Stat(mean, math.nan, 1)
    half = float(stats.t.ppf(0.975, n - 1) * np.std(x, ddof=1) / math.sqrt(n))
    lo, hi = mean - half, mean + half
    clipped = False
    if bounds is not None:
        clipped = lo < bounds[0] or hi > bounds[1]
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return Stat(mean, half, n, lo=lo, hi=hi, clipped=clipped)


def wilson_interval(successes: int, trials: int, z: float = 1.959963984540054
                    ) -> tuple[float, float]:
    """The Wilson score interval (default 95%) of a proportion `successes`/`trials`; always
    inside [0, 1]; (NaN, NaN) when `trials` is 0. Wilson, JASA 22 (1927) 209-212."""
    if trials <= 0:
        return math.nan, math.nan
    p = successes / trials
    denom = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    # At p = 0 or 1 the matching end is exactly 0 or 1; rounding must not move it inside.
    lo = 0.0 if successes <= 0 else max(0.0, min(p, centre - half))
    hi = 1.0 if successes >= trials else min(1.0, max(p, centre + half))
    return lo, hi


#: The order of experiments in every table and figure: by policy (known policies first, in this
#: order), then mode (gate, priority, engine), then name.
POLICY_ORDER = ("FCFS", "ROUND_ROBIN", "VTC", "EXFAIRS", "EDF", "ANDES", "DLPM")
_MODE_ORDER = {"QUEUE_": 0, "": 1, "ENGINE_": 2}


def experiment_sort_key(experiment: str) -> tuple[int, str, int, str]:
    """Sort key of an experiment name (see `POLICY_ORDER`)."""
    name = experiment.strip().upper()
    mode = ""
    for prefix in ("QUEUE_", "ENGINE_"):
        if name.startswith(prefix):
            name, mode = name[len(prefix):], prefix
            break
    rank = POLICY_ORDER.index(name) if name in POLICY_ORDER else len(POLICY_ORDER)
    return rank, name, _MODE_ORDER[mode], experiment


def summarize(results: Sequence[RunResult]) -> list[SummaryRow]:
    """Group `results` by (backend, scenario, experiment, load factor) and summarise over seeds.

    Rows come sorted by (backend, scenario, load factor, experiment in `experiment_sort_key`
    order). Two runs of one group with the same seed are an InputError (the same cell loaded
    twice would bias the mean).
    """
    groups: dict[tuple[str, str, str, float], list[RunResult]] = {}
    for r in results:
        i = r.info
        groups.setdefault((i.backend, i.scenario, i.experiment, float(i.load_factor)), []).append(r)
    rows: list[SummaryRow] = []
    for (backend, scenario, experiment, load), runs in sorted(
            groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][3],
                                            experiment_sort_key(kv[0][2]))):
        seeds = [r.info.seed for r in runs]
        if len(set(seeds)) != len(seeds):
            dup = sorted({s for s in seeds if seeds.count(s) > 1})
            raise InputError(f"two results of {scenario}/{experiment}/load {load:g} have the same "
                             "seed; pass each run once", field="seed", value=dup)
        runs = sorted(runs, key=lambda r: r.info.seed)
        values = tuple(mean_ci95([metric_value(r, m.key) for r in runs], m.bounds)
                       for m in SUMMARY_METRICS)
        rows.append(SummaryRow(backend=backend, scenario=scenario, experiment=experiment,
                               policy=runs[0].info.policy, mode=runs[0].info.mode,
                               load_factor=load, seeds=tuple(r.info.seed for r in runs),
                               values=values))
    return rows


def _columns() -> list[str]:
    cols = ["backend", "scenario", "experiment", "policy", "mode", "load_factor", "n_seeds",
            "seeds"]
    for m in SUMMARY_METRICS:
        cols += [f"{m.key}_mean", f"{m.key}_ci95", f"{m.key}_lo", f"{m.key}_hi"]
    return cols


def _num(x: float) -> str:
    return "" if math.isnan(x) else repr(float(x))


def write_summary_csv(rows: Sequence[SummaryRow], path: str | os.PathLike[str]) -> None:
    """Write `rows` as CSV (one line per row; ``<metric>_mean``, ``<metric>_ci95`` (half-width)
    and ``<metric>_lo``/``_hi`` (the interval clipped to the metric's range) columns, empty
    cells for undefined values), atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_columns())
    for r in rows:
        line: list[str] = [r.backend, r.scenario, r.experiment, r.policy, r.mode,
                           repr(r.load_factor), str(len(r.seeds)),
                           " ".join(str(s) for s in r.seeds)]
        for st in r.values:
            line += [_num(st.mean), _num(st.ci95), _num(st.lo), _num(st.hi)]
        w.writerow(line)
    atomic_write_text(path, buf.getvalue())


_TABLE: tuple[tuple[str, str, Callable[[float], str]], ...] = (
    ("violation_rate", "viol", lambda x: f"{x:.3f}"),
    ("worst_client_attainment", "worst", lambda x: f"{x:.3f}"),
    ("jain_attainment", "J(att)", lambda x: f"{x:.3f}"),
    ("jain_qoe", "J(QoE)", lambda x: f"{x:.3f}"),
    ("request_throughput", "req/s", lambda x: f"{x:.3f}"),
    ("request_goodput", "good/s", lambda x: f"{x:.3f}"),
    ("p99_ttft_ms", "p99TTFT ms", lambda x: f"{x:.0f}"),
    ("mean_qoe", "QoE", lambda x: f"{x:.3f}"),
)


def format_table(rows: Sequence[SummaryRow]) -> str:
    """A fixed-width text table of the headline metrics: mean ± 95% CI half-width over seeds, or
    ``mean[lo,hi]`` where the interval was clipped to the metric's range."""
    head = ["scenario", "experiment", "load", "n"] + [h for _, h, _ in _TABLE]
    body: list[list[str]] = []
    for r in rows:
        cells = [r.scenario if r.backend == "sim" else f"{r.scenario} ({r.backend})",
                 r.experiment, f"{r.load_factor:g}", str(len(r.seeds))]
        for key, _, fmt in _TABLE:
            st = r.stat(key)
            if math.isnan(st.mean):
                cells.append("-")
            elif math.isnan(st.ci95):
                cells.append(fmt(st.mean))
            elif st.clipped:  # mean ± half would leave the metric's range: show the ends
                cells.append(f"{fmt(st.mean)}[{fmt(st.lo)},{fmt(st.hi)}]")
            else:
                cells.append(f"{fmt(st.mean)}±{fmt(st.ci95)}")
        body.append(cells)
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        parts = [c.ljust(w) if i < 2 else c.rjust(w)
                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(parts).rstrip()

    out = [line(head), "  ".join("-" * w for w in widths)]
    out += [line(c) for c in body]
    return "\n".join(out) + "\n"
