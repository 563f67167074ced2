"""Simulator vs live engine: the same scenario, seed and experiments, compared metric by metric.

`compare_results` takes matched (sim, live) `RunResult`s per experiment and reports, per experiment
and client (and for all clients together), mean / p50 / p90 TTFT, TPOT and e2e latency, SLO
violation rate and throughput, plus Jain's indices per experiment, with the error of the simulated
value against the measured one:

* latencies and throughputs: relative error ``(sim − live) / live``;
* violation rate and Jain's index: absolute difference ``sim − live`` (fractions, not points).

Targets (issue 6): |relative error| ≤ 10% for mean TTFT and mean e2e per client; |violation rate
difference| ≤ 0.05; and the experiments rank the same way on violation rate (ascending) and on
Jain's index over SLO attainment (descending) in both worlds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from exfairs.atomic import atomic_temp_path, atomic_write_text
from exfairs.metrics import AggregateMetrics, RunMetrics
from exfairs.results import RunResult

ErrorKind = Literal["relative", "absolute"]

#: (metric name on AggregateMetrics, error kind, target or None).
LATENCY_METRICS: tuple[tuple[str, ErrorKind, float | None], ...] = (
    ("mean_ttft_ms", "relative", 0.10),
    ("median_ttft_ms", "relative", None),
    ("p90_ttft_ms", "relative", None),
    ("mean_tpot_ms", "relative", None),
    ("median_tpot_ms", "relative", None),
    ("p90_tpot_ms", "relative", None),
    ("mean_e2el_ms", "relative", 0.10),
    ("median_e2el_ms", "relative", None),
    ("p90_e2el_ms", "relative", None),
    ("violation_rate", "absolute", 0.05),
    ("request_throughput", "relative", None),
    ("output_throughput", "relative", None),
)
FAIRNESS_METRICS: tuple[tuple[str, ErrorKind, float | None], ...] = (
    ("jain_attainment", "absolute", None),
    ("jain_qoe", "absolute", None),
    ("jain_service", "absolute", None),
)
ALL_CLIENTS = "(all)"


@dataclass(frozen=True, slots=True)
class MetricComparison:
    """One metric in both worlds. `error` is relative or absolute per `kind` (NaN when undefined);
    `ok` says whether it meets `target` (None when the metric has no target)."""

    metric: str
    sim: float
    live: float
    error: float
    kind: ErrorKind
    target: float | None
    ok: bool | None


@dataclass(frozen=True, slots=True)
class ScopeComparison:
    """The metrics of one experiment for one client (or `ALL_CLIENTS`, or "fairness")."""

    experiment: str
    scope: str
    metrics: tuple[MetricComparison, ...]

    def get(self, metric: str) -> MetricComparison:
        """The comparison of `metric` (KeyError if absent)."""
        for m in self.metrics:
            if m.metric == metric:
                return m
        raise KeyError(metric)


@dataclass(frozen=True, slots=True)
class RankingCheck:
    """Experiments ordered best first by `metric` in each world; `kendall_tau` in [-1, 1]."""

    metric: str
    sim_order: tuple[str, ...]
    live_order: tuple[str, ...]
    same: bool
    kendall_tau: float


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """The full sim-vs-live comparison of one (scenario, seed, load, profile)."""

    scenario: str
    seed: int
    load_factor: float
    profile_id: str
    experiments: tuple[str, ...]
    scopes: tuple[ScopeComparison, ...]
    rankings: tuple[RankingCheck, ...]
    targets_met: int
    targets_total: int
    live_status: tuple[tuple[str, str], ...]
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN and infinities become null)."""
        out: dict[str, Any] = _clean(asdict(self))
        return out


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _error(sim: float, live: float, kind: ErrorKind) -> float:
    if not (math.isfinite(sim) and math.isfinite(live)):
        return math.nan
    if kind == "absolute":
        return sim - live
    if live == 0.0:
        return 0.0 if sim == 0.0 else math.inf
    return (sim - live) / abs(live)


def _compare(name: str, sim: float, live: float, kind: ErrorKind, target: float | None
             ) -> MetricComparison:
    err = _error(float(sim), float(live), kind)
    ok = None if target is None else (bool(abs(err) <= target) if not math.isnan(err) else False)
    return MetricComparison(metric=name, sim=float(sim), live=float(live), error=err, kind=kind,
                            target=target, ok=ok)


def _aggregate_scope(experiment: str, scope: str, sim: AggregateMetrics, live: AggregateMetrics
                     ) -> ScopeComparison:
    return ScopeComparison(experiment=experiment, scope=scope, metrics=tuple(
        _compare(name, getattr(sim, name), getattr(live, name), kind, target)
        for name, kind, target in LATENCY_METRICS))


def _kendall_tau(a: Sequence[str], b: Sequence[str]) -> float:
    n = len(a)
    if n < 2:
        return 1.0
    pos = {x: i for i, x in enumerate(b)}
    concordant = discordant = 0
    for i in range(n):
        for j in range(i + 1, n):
            s = pos[a[i]] - pos[a[j]]
            if s < 0:
                concordant += 1
            elif s > 0:
                discordant += 1
    return (concordant - discordant) / (n * (n - 1) / 2)


def _order(values: dict[str, float], *, descending: bool) -> tuple[str, ...]:
    # Ties by experiment name so the order is deterministic.
    def key(name: str) -> tuple[float, str]:
        v = values[name]
        v = v if math.isfinite(v) else (-math.inf if descending else math.inf)
        return (-v if descending else v, name)

    return tuple(sorted(values, key=key))


def ranking(metric: str, sim: dict[str, RunMetrics], live: dict[str, RunMetrics]) -> RankingCheck:
    """Rank experiments by `metric`: ``violation_rate`` (lower is better, all clients) or a
    fairness index (``jain_attainment``, ...; higher is better)."""
    if metric == "violation_rate":
        sv = {k: m.overall.violation_rate for k, m in sim.items()}
        lv = {k: m.overall.violation_rate for k, m in live.items()}
        desc = False
    else:
        sv = {k: float(getattr(m.fairness, metric)) for k, m in sim.items()}
        lv = {k: float(getattr(m.fairness, metric)) for k, m in live.items()}
        desc = True
    so, lo = _order(sv, descending=desc), _order(lv, descending=desc)
    return RankingCheck(metric=metric, sim_order=so, live_order=lo, same=so == lo,
                        kendall_tau=_kendall_tau(so, lo))


def compare_results(pairs: Sequence[tuple[RunResult, RunResult]],
                    notes: Sequence[str] = ()) -> ValidationReport:
    """Compare matched (sim, live) results, one pair per experiment, all of one scenario/seed."""
    if not pairs:
        raise ValueError("compare_results needs at least one (sim, live) pair")
    scopes: list[ScopeComparison] = []
    sim_m: dict[str, RunMetrics] = {}
    live_m: dict[str, RunMetrics] = {}
    status: list[tuple[str, str]] = []
    for sim, live in pairs:
        exp = live.info.experiment
        if sim.info.experiment != exp:
            raise ValueError(f"unmatched pair: {sim.info.experiment} vs {exp}")
        sim_m[exp], live_m[exp] = sim.metrics, live.metrics
        status.append((exp, str(dict(live.info.engine_knobs).get("live_status", "unknown"))))
        for client in live.clients:
            scopes.append(_aggregate_scope(exp, client.name,
                                           sim.metrics.client(client.name).metrics,
                                           live.metrics.client(client.name).metrics))
        scopes.append(_aggregate_scope(exp, ALL_CLIENTS, sim.metrics.overall,
                                       live.metrics.overall))
        scopes.append(ScopeComparison(experiment=exp, scope="fairness", metrics=tuple(
            _compare(name, getattr(sim.metrics.fairness, name),
                     getattr(live.metrics.fairness, name), kind, target)
            for name, kind, target in FAIRNESS_METRICS)))
    rankings = (ranking("violation_rate", sim_m, live_m),
                ranking("jain_attainment", sim_m, live_m))
    judged = [m.ok for s in scopes if s.scope not in (ALL_CLIENTS, "fairness")
              for m in s.metrics if m.ok is not None]
    judged += [r.same for r in rankings] if len(pairs) > 1 else []
    first = pairs[0][1].info
    return ValidationReport(
        scenario=first.scenario, seed=first.seed, load_factor=first.load_factor,
        profile_id=first.profile_id, experiments=tuple(sim_m), scopes=tuple(scopes),
        rankings=rankings, targets_met=sum(bool(x) for x in judged), targets_total=len(judged),
        live_status=tuple(status), notes=tuple(notes),
    )


def _fmt(m: MetricComparison) -> str:
    if m.kind == "relative":
        err = "n/a" if math.isnan(m.error) else f"{m.error * 100:+.1f}%"
    else:
        err = "n/a" if math.isnan(m.error) else f"{m.error:+.3f}"
    flag = "" if m.ok is None else (" ok" if m.ok else " MISS")
    return err + flag


def format_report(report: ValidationReport) -> str:
    """A plain-text table: per experiment and client, sim / live / error of the key metrics."""
    cols = [("mean_ttft_ms", "TTFT mean ms"), ("median_ttft_ms", "TTFT p50"),
            ("p90_ttft_ms", "TTFT p90"), ("mean_tpot_ms", "TPOT mean"),
            ("mean_e2el_ms", "e2e mean ms"), ("median_e2el_ms", "e2e p50"),
            ("p90_e2el_ms", "e2e p90"), ("violation_rate", "viol rate"),
            ("output_throughput", "out tok/s")]
    lines = [f"validation: scenario {report.scenario}, seed {report.seed}, load "
             f"{report.load_factor:g}, profile {report.profile_id}"]
    header = f"{'experiment':<18} {'client':<10} " + " ".join(f"{t:>22}" for _, t in cols)
    lines += [header, " " * 30 + " ".join(f"{'sim / live / err':>22}" for _ in cols),
              "-" * len(header)]
    for s in report.scopes:
        if s.scope == "fairness":
            cells = [f"{m.metric}: {m.sim:.3f} / {m.live:.3f} ({_fmt(m)})" for m in s.metrics]
            lines.append(f"{s.experiment:<18} {'fairness':<10} " + "  ".join(cells))
            continue
        row = []
        for name, _ in cols:
            m = s.get(name)
            digits = 3 if name == "violation_rate" else 1
            row.append(f"{m.sim:.{digits}f}/{m.live:.{digits}f}/{_fmt(m)}")
        lines.append(f"{s.experiment:<18} {s.scope:<10} " + " ".join(f"{c:>22}" for c in row))
    for r in report.rankings:
        lines.append(f"ranking by {r.metric}: sim {' > '.join(r.sim_order)} | live "
                     f"{' > '.join(r.live_order)} | {'same' if r.same else 'DIFFERENT'} "
                     f"(Kendall tau {r.kendall_tau:+.2f})")
    for exp, st in report.live_status:
        if st != "complete":
            lines.append(f"live run of {exp}: {st}")
    lines.append(f"targets met: {report.targets_met}/{report.targets_total}")
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def write_report(report: ValidationReport, path: str | Path) -> None:
    """The report as JSON, atomically."""
    atomic_write_text(path, json.dumps(report.to_json(), indent=1, sort_keys=False) + "\n")


def plot_validation(report: ValidationReport, out_dir: str | Path) -> list[Path]:
    """Sim vs live scatter plots (mean TTFT, mean e2e, violation rate per experiment and client,
    with the y = x line) and the per-experiment Jain indices. PNG + SVG; returns the paths."""
    from matplotlib.figure import Figure

    out = Path(out_dir)
    stem = f"validation__{report.scenario}__load{report.load_factor:g}__seed{report.seed}"
    fig = Figure(figsize=(15, 4.6))
    panels = [("mean_ttft_ms", "mean TTFT (ms)"), ("mean_e2el_ms", "mean e2e (ms)"),
              ("violation_rate", "SLO violation rate")]
    axes = fig.subplots(1, 4)
    exps = list(report.experiments)
    markers = "osD^v<>pP*Xh"
    for ax, (metric, label) in zip(axes[:3], panels, strict=True):
        lo, hi = math.inf, -math.inf
        for s in report.scopes:
            if s.scope in ("fairness", ALL_CLIENTS):
                continue
            m = s.get(metric)
            if not (math.isfinite(m.sim) and math.isfinite(m.live)):
                continue
            k = exps.index(s.experiment)
            ax.scatter([m.live], [m.sim], marker=markers[k % len(markers)], s=36,
                       label=f"{s.experiment}/{s.scope}")
            lo, hi = min(lo, m.sim, m.live), max(hi, m.sim, m.live)
        if math.isfinite(lo):
            pad = 0.05 * (hi - lo or 1.0)
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="grey", lw=1, ls="--")
            if metric != "violation_rate":
                ax.fill_between([lo - pad, hi + pad], [(lo - pad) * 0.9, (hi + pad) * 0.9],
                                [(lo - pad) * 1.1, (hi + pad) * 1.1], color="grey", alpha=0.12)
        ax.set_xlabel(f"live {label}")
        ax.set_ylabel(f"sim {label}")
        ax.set_title(label)
    ax = axes[3]
    width = 0.38
    xs = list(range(len(exps)))
    fair = {s.experiment: s.get("jain_attainment") for s in report.scopes
            if s.scope == "fairness"}
    ax.bar([x - width / 2 for x in xs], [fair[e].sim for e in exps], width, label="sim")
    ax.bar([x + width / 2 for x in xs], [fair[e].live for e in exps], width, label="live")
    ax.set_xticks(xs, exps, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_title("Jain (SLO attainment)")
    ax.legend(fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=7,
                   bbox_to_anchor=(0.5, -0.08), frameon=False)
    fig.suptitle(f"sim vs live: {report.scenario} (load {report.load_factor:g}, seed "
                 f"{report.seed}, profile {report.profile_id}); shaded: ±10%")
    paths: list[Path] = []
    for ext in ("png", "svg"):
        dest = out / f"{stem}.{ext}"
        with atomic_temp_path(dest) as tmp:
            fig.savefig(tmp, format=ext, dpi=110, bbox_inches="tight")
        paths.append(dest)
    return paths
