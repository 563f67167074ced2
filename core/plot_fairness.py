"""The fairness figure of `exfairs.plots` (per-client SLO attainment, QoE and service while
backlogged, Jain's index over time, cumulative service) and the policy-state figure; see
`exfairs.plots` for the conventions (grouping, colours, intervals). `plot_fairness` is re-exported
there."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from exfairs.metrics import FloatArray, jain_over_time
from exfairs.plot_common import (
    DEFAULT_FORMATS,
    _client_names,
    _Group,
    _group,
    _legend_by_experiment,
    _no_data,
    _save,
    _seeds_text,
    _slug,
    _span,
    _stem,
    _title,
    client_color,
    counted_records,
    experiment_color,
    finish_client_axis,
)
from exfairs.results import RunResult
from exfairs.summary import UNIT, mean_ci95, wilson_interval


def _client_interval(runs: list[RunResult], name: str, attr: str) -> tuple[float, float, float,
                                                                          str]:
    """Mean and 95% interval ends of one client's `attr` over `runs`, and the interval's kind:
    ``"t"`` (over seeds), ``"t-clipped"``, ``"wilson"`` (one run's attainment) or ``""``."""
    vals: list[float] = []
    counts: list[tuple[int, int]] = []
    for r in runs:
        for cm in r.metrics.per_client:
            if cm.client == name:
                m = cm.metrics
                vals.append(m.slo_attainment if attr == "attainment" else
                            m.mean_qoe if attr == "qoe" else cm.normalized_service)
                counts.append((m.slo_met, m.requests))
    bounds = UNIT if attr in ("attainment", "qoe") else (0.0, math.inf)
    st = mean_ci95(vals, bounds)
    if st.n == 1 and attr == "attainment" and len(counts) == 1 and counts[0][1] > 0:
        lo, hi = wilson_interval(*counts[0])
        return st.mean, lo, hi, "wilson"
    if st.n < 2:
        return st.mean, math.nan, math.nan, ""
    return st.mean, st.lo, st.hi, "t-clipped" if st.clipped else "t"


def _client_bars(ax: Axes, runs: dict[str, list[RunResult]], clients: list[str], attr: str,
                 ylabel: str) -> set[str]:
    """Grouped bars of one per-client metric; returns the kinds of interval drawn."""
    exps = list(runs)
    width = 0.8 / max(1, len(exps))
    drawn = False
    kinds: set[str] = set()
    for k, exp in enumerate(exps):
        xs, ys, lo_err, hi_err = [], [], [], []
        for ci, name in enumerate(clients):
            mean, lo, hi, kind = _client_interval(runs[exp], name, attr)
            if math.isnan(mean):
                continue
            xs.append(ci - 0.4 + width * (k + 0.5))
            ys.append(mean)
            has = kind != "" and not math.isnan(lo)
            lo_err.append(mean - lo if has else 0.0)
            hi_err.append(hi - mean if has else 0.0)
            if has:
                kinds.add(kind)
        if xs:
            drawn = True
            err = [lo_err, hi_err] if any(lo_err) or any(hi_err) else None
            ax.bar(xs, ys, width=width * 0.9, color=experiment_color(exp), label=exp,
                   yerr=err, capsize=2, ecolor="0.2")
    finish_client_axis(ax, clients, ylabel, drawn)
    return kinds


def _interval_note(kinds: set[str]) -> str:
    """Title suffix saying which intervals a panel shows."""
    parts = []
    if kinds & {"t", "t-clipped"}:
        parts.append("95% t over seeds" + (", clipped to range" if "t-clipped" in kinds else ""))
    if "wilson" in kinds:
        parts.append("95% Wilson over requests")
    return f" (bars: {'; '.join(parts)})" if parts else ""


def plot_fairness(results: Sequence[RunResult], out_dir: str | os.PathLike[str],
                  *, window_s: float | None = None,
                  formats: Sequence[str] = DEFAULT_FORMATS) -> list[Path]:
    """Per (backend, scenario, load): per-client SLO attainment, mean QoE and service while
    backlogged (bars, mean ± 95% CI over seeds), Jain's index over attainment in arrival windows
    of `window_s` seconds (default: the run's span / 20) over time, and cumulative service per
    client over time with the first client's share of backlogged service per window. Plus, for
    each experiment whose runs recorded policy samples, the policy state over time (its lowest
    seed). Returns the paths.
    """
    out = Path(out_dir)
    paths: list[Path] = []
    for key, runs in _group(results).items():
        clients = _client_names(runs)
        fig = Figure(figsize=(max(10.0, 0.5 * len(clients) * max(1, len(runs)) + 6), 13),
                     layout="constrained")
        axes = fig.subplots(3, 2)
        kinds = _client_bars(axes[0, 0], runs, clients, "attainment",
                             "SLO attainment (fraction)")
        axes[0, 0].set_ylim(0, 1.05)
        axes[0, 0].set_title("SLO attainment per client" + _interval_note(kinds),
                             fontsize="medium")
        kinds = _client_bars(axes[0, 1], runs, clients, "qoe", "mean QoE (0-1)")
        axes[0, 1].set_ylim(0, 1.05)
        axes[0, 1].set_title("Andes QoE per client" + _interval_note(kinds), fontsize="medium")
        _client_bars(axes[1, 0], runs, clients, "service",
                     "service / mean of backlogged clients'")
        axes[1, 0].axhline(1.0, color="0.3", ls="--", lw=1)
        axes[1, 0].set_title("Weighted service while backlogged (1 = as the average)")
        _cumulative_service(axes[2, 0], axes[2, 1], runs, clients)
        ax = axes[1, 1]
        lo, hi = _span([r for rs in runs.values() for r in rs])
        win = window_s if window_s is not None else (max(hi - lo, 1e-6) / 20.0
                                                     if math.isfinite(hi - lo) else 1.0)
        drawn = False
        for exp, rs in runs.items():
            curves: list[tuple[FloatArray, FloatArray]] = []
            for r in rs:
                recs = counted_records(r)
                if recs:
                    curves.append(jain_over_time(recs, r.clients, win,
                                                 start_s=r.metrics.window_start_s))
            if not curves:
                continue
            n = min(len(c[0]) for c in curves)
            t = curves[0][0][:n]
            stacked = np.stack([c[1][:n] for c in curves])
            defined = ~np.all(np.isnan(stacked), axis=0)
            if defined.any():
                v = np.nanmean(stacked[:, defined], axis=0)
                ax.plot(t[defined], v, marker="o", ms=3, color=experiment_color(exp), label=exp)
                drawn = True
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("arrival time (s)")
        ax.set_ylabel("Jain's index over SLO attainment")
        many = len({r.info.seed for rs in runs.values() for r in rs}) > 1
        ax.set_title(f"Jain's index over time ({win:.3g} s windows"
                     + (", mean over seeds)" if many else ")"))
        ax.grid(alpha=0.3)
        if not drawn:
            _no_data(ax)
        _legend_by_experiment(fig, list(runs))
        fig.suptitle(f"Fairness — {_title(key)} — {_seeds_text(runs)}")
        paths += _save(fig, out, _stem("fairness", key), formats)
        for rs in runs.values():
            with_samples = [r for r in rs if r.policy_samples]
            if with_samples:
                paths += _plot_policy_state(with_samples[0], out, key, formats)
    return paths


def _cumulative_service(ax: Axes, ax_share: Axes, runs: dict[str, list[RunResult]],
                        clients: list[str]) -> None:
    """Cumulative weighted service per client over time (VTC's main figure; each experiment's
    lowest seed, colour by client, line style by experiment) and, beside it, the first client's
    share of the service given to clients backlogged throughout each metrics window."""
    from exfairs.metrics import backlogged_service, service_timeline

    styles = ("-", "--", ":", "-.")
    drawn = shared = False
    for k, (exp, rs) in enumerate(runs.items()):
        r = rs[0]
        tl = service_timeline(r.records, r.clients, r.metrics.service_weights)
        if tl.times_s.size == 0:
            continue
        for ci, name in enumerate(tl.clients):
            ax.plot(tl.times_s, tl.service[ci], ls=styles[k % len(styles)], lw=1.2,
                    color=client_color(clients.index(name) if name in clients else ci),
                    label=f"{name} · {exp}")
            drawn = True
        win = r.metrics.fairness.service_window_s
        if not math.isfinite(win):
            continue
        bs = backlogged_service(tl, r.metrics.window_start_s, r.metrics.window_end_s, win)
        s = bs.service[:, 0] / np.nansum(bs.service, axis=1).clip(min=1e-12)
        ok = bs.compared & ~np.isnan(s)
        if ok.any():
            mid = (bs.edges_s[:-1] + bs.edges_s[1:]) / 2.0
            ax_share.plot(mid[ok], s[ok], marker="o", ms=3, color=experiment_color(exp),
                          label=exp)
            shared = True
    ax.set_xlabel("time since run start (s)")
    ax.set_ylabel("cumulative weighted service (tokens / weight)")
    ax.set_title("Service per client over time (lowest seed; colour = client)",
                 fontsize="medium")
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize="x-small", ncol=2)
    else:
        _no_data(ax)
    first = clients[0] if clients else "first client"
    ax_share.set_ylim(0, 1.05)
    ax_share.set_xlabel("time since run start (s)")
    ax_share.set_ylabel(f"{first}'s share of backlogged service")
    ax_share.set_title("Share while backlogged, per metrics window (lowest seed)",
                       fontsize="medium")
    ax_share.grid(alpha=0.3)
    if not shared:
        _no_data(ax_share)


def _plot_policy_state(result: RunResult, out: Path, key: _Group,
                       formats: Sequence[str] = DEFAULT_FORMATS) -> list[Path]:
    samples = result.policy_samples
    metrics: list[str] = []
    for s in samples:
        for name, _ in s.values:
            if name not in metrics:
                metrics.append(name)
    fig = Figure(figsize=(10, 3.2 * len(metrics)), layout="constrained")
    axes = fig.subplots(len(metrics), 1, squeeze=False)[:, 0]
    names = [c.name for c in result.clients]
    for ax, metric in zip(axes, metrics, strict=True):
        t = np.asarray([s.time_s for s in samples if any(n == metric for n, _ in s.values)])
        # Sparse samples are laid out by client index (NaN where a client is left out).
        rows = [dict(s.dense(len(names)))[metric] for s in samples
                if any(n == metric for n, _ in s.values)]
        width = min(len(v) for v in rows)
        vals = np.asarray([v[:width] for v in rows], dtype=np.float64)
        for ci in range(width):
            ax.plot(t, vals[:, ci], color=client_color(ci), lw=1.3,
                    label=names[ci] if ci < len(names) else f"client {ci}")
        ax.set_xlabel("time since run start (s)")
        ax.set_ylabel(metric)
        ax.set_title(f"policy state: {metric}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", ncol=min(width, 5), title="client")
    fig.suptitle(f"{result.info.experiment} policy state — {_title(key)} — "
                 f"seed {result.info.seed}")
    stem = f"{_stem('policy', key)}_{_slug(result.info.experiment)}_seed{result.info.seed}"
    return _save(fig, out, stem, formats)
