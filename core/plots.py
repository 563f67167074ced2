"""Plots from results files (docs/design.md §8): performance, fairness and aggregated views.

Each function writes one file per format in `formats` (default PNG and SVG; ``"pdf"`` for
papers) and returns their paths. Runs are grouped by (backend, scenario, load factor): one figure
per group puts the experiments side by side, in one order everywhere
(`exfairs.summary.experiment_sort_key`) and each in the same colour in every plot
(`experiment_color`, a fixed map that does not depend on which experiments are plotted). Figure
titles name the seeds they show. Figures are built on `matplotlib.figure.Figure` directly, so no
global pyplot state or backend is touched; files are written atomically.

Only recorded data is drawn: a panel with nothing to show says "no data" instead of drawing zeros.
Per-client values are means over the group's seeds; error bars are Student-t 95% intervals over
seeds clipped to the metric's range (the panel title says when one was clipped); with a single
seed, per-client SLO attainment gets its Wilson 95% interval over that run's requests instead.
Latency distributions pool the counted requests of all seeds. `plot_aggregated` draws each metric
as lines against the load factor.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure

from exfairs.atomic import atomic_temp_path
from exfairs.metrics import FloatArray, jain_over_time
from exfairs.records import RequestRecord
from exfairs.results import RunResult
from exfairs.summary import (
    SUMMARY_METRICS,
    UNIT,
    SummaryRow,
    experiment_sort_key,
    mean_ci95,
    wilson_interval,
)

#: The figure formats written by default, and all that can be asked for.
DEFAULT_FORMATS: tuple[str, ...] = ("png", "svg")
FORMATS: tuple[str, ...] = ("png", "svg", "pdf")

# Base colours of the known policies (matplotlib's tab10); other policies get a colour from their
# name's digest, so a name keeps its colour across plots, runs and machines.
_POLICY_COLORS = {
    "FCFS": "#1f77b4",
    "ROUND_ROBIN": "#ff7f0e",
    "VTC": "#2ca02c",
    "EXFAIRS": "#d62728",
    "EDF": "#9467bd",
    "ANDES": "#8c564b",
    "DLPM": "#e377c2",
}
_SPARE_COLORS = ("#bcbd22", "#17becf", "#7f7f7f", "#393b79", "#637939", "#8c6d31", "#843c39")
_CLIENT_COLORS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
                  "#ff9da7", "#9c755f", "#bab0ac")


def experiment_color(experiment: str) -> str:
    """The colour of an experiment name (hex). The policy picks the hue; the mode its shade:
    priority mode the base colour, gate (``QUEUE_``) darker, engine (``ENGINE_``) lighter."""
    name = experiment.strip().upper()
    shade = 0.0
    for prefix, s in (("QUEUE_", -0.35), ("ENGINE_", 0.4)):
        if name.startswith(prefix):
            name, shade = name[len(prefix):], s
            break
    base = _POLICY_COLORS.get(name)
    if base is None:
        h = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "little")
        base = _SPARE_COLORS[h % len(_SPARE_COLORS)]
    rgb = np.asarray(to_rgb(base))
    target = np.ones(3) if shade > 0 else np.zeros(3)
    return to_hex(rgb + abs(shade) * (target - rgb))


def client_color(index: int) -> str:
    """The colour of the client at `index` in the workload's client order."""
    return _CLIENT_COLORS[index % len(_CLIENT_COLORS)]


# ----------------------------------------------------------------------------------------------
# Helpers

_Group = tuple[str, str, float]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def _group(results: Sequence[RunResult]) -> dict[_Group, dict[str, list[RunResult]]]:
    out: dict[_Group, dict[str, list[RunResult]]] = {}
    for r in results:
        key = (r.info.backend, r.info.scenario, float(r.info.load_factor))
        out.setdefault(key, {}).setdefault(r.info.experiment, []).append(r)
    for exps in out.values():
        for runs in exps.values():
            runs.sort(key=lambda r: r.info.seed)
    return {key: dict(sorted(exps.items(), key=lambda kv: experiment_sort_key(kv[0])))
            for key, exps in sorted(out.items())}


def _seeds_text(runs: dict[str, list[RunResult]]) -> str:
    seeds = sorted({r.info.seed for rs in runs.values() for r in rs})
    shown = ", ".join(map(str, seeds[:8])) + (", ..." if len(seeds) > 8 else "")
    return f"seed {shown}" if len(seeds) == 1 else f"mean over seeds {shown}"


def _title(key: _Group) -> str:
    backend, scenario, load = key
    return f"{scenario} — load {load:g}× — {backend}"


def _stem(kind: str, key: _Group) -> str:
    backend, scenario, load = key
    return f"{kind}_{_slug(backend)}_{_slug(scenario)}_load{load:g}"


def counted_records(result: RunResult) -> list[RequestRecord]:
    """The records that the run's metrics counted: arrivals in the metrics window
    ``[window_start_s, window_end_s)`` (the last arrival included when the window was the whole
    run, i.e. ends at the last arrival)."""
    start, end = result.metrics.window_start_s, result.metrics.window_end_s
    last = max((r.arrival_s for r in result.records), default=end)
    return [r for r in result.records
            if start <= r.arrival_s and (r.arrival_s < end or (end == last and r.arrival_s == end))]


def _client_names(runs: dict[str, list[RunResult]]) -> list[str]:
    names: list[str] = []
    for rs in runs.values():
        for r in rs:
            for c in r.clients:
                if c.name not in names:
                    names.append(c.name)
    return names


def _no_data(ax: Axes) -> None:
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="0.4")


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """`formats` as a tuple, or InputError naming the first unknown one."""
    from exfairs.errors import InputError

    out = tuple(f.strip().lower() for f in formats)
    for f in out:
        if f not in FORMATS:
            raise InputError(f"unknown plot format (choose from {', '.join(FORMATS)})",
                             field="--plot-format", value=f)
    if not out:
        raise InputError("give at least one format", field="--plot-format", value="")
    return out


def _save(fig: Figure, out_dir: Path, stem: str,
          formats: Sequence[str] = DEFAULT_FORMATS) -> list[Path]:
    paths: list[Path] = []
    for ext in check_formats(formats):
        dest = out_dir / f"{stem}.{ext}"
        with atomic_temp_path(dest) as tmp:
            fig.savefig(tmp, format=ext, dpi=110)
        paths.append(dest)
    return paths


def _legend_by_experiment(fig: Figure, experiments: Sequence[str]) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(color=experiment_color(e), label=e) for e in experiments]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6),
               frameon=False, title="experiment")


def _grouped_boxes(ax: Axes, runs: dict[str, list[RunResult]], clients: list[str],
                   value: str, ylabel: str) -> None:
    exps = list(runs)
    width = 0.8 / max(1, len(exps))
    drawn = False
    for k, exp in enumerate(exps):
        data: list[FloatArray] = []
        pos: list[float] = []
        for ci, name in enumerate(clients):
            vals = []
            for r in runs[exp]:
                for rec in counted_records(r):
                    if rec.client != name:
                        continue
                    v = rec.ttft_s if value == "ttft" else rec.e2e_s
                    if v is not None:
                        vals.append(v)
            if vals:
                data.append(np.asarray(vals))
                pos.append(ci - 0.4 + width * (k + 0.5))
        if data:
            drawn = True
            bp = ax.boxplot(data, positions=pos, widths=width * 0.85, patch_artist=True,
                            showfliers=True, flierprops={"markersize": 2, "alpha": 0.5},
                            medianprops={"color": "black"}, manage_ticks=False)
            for patch in bp["boxes"]:
                patch.set_facecolor(experiment_color(exp))
                patch.set_alpha(0.85)
    ax.set_xticks(range(len(clients)), clients, rotation=30 if len(clients) > 6 else 0)
    ax.set_xlim(-0.6, len(clients) - 0.4)
    ax.set_xlabel("client")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    if not drawn:
        _no_data(ax)


def _span(results: Sequence[RunResult]) -> tuple[float, float]:
    lo, hi = math.inf, -math.inf
    for r in results:
        for rec in r.records:
            lo = min(lo, rec.arrival_s)
            if rec.token_times_s:
                hi = max(hi, rec.token_times_s[-1])
    return lo, hi


def _bin_width(lo: float, hi: float) -> float:
    span = max(hi - lo, 1e-9)
    return max(span / 40.0, 1e-3)


# ----------------------------------------------------------------------------------------------
# Performance


def plot_performance(results: Sequence[RunResult], out_dir: str | os.PathLike[str], *,
                     formats: Sequence[str] = DEFAULT_FORMATS) -> list[Path]:
    """Per (backend, scenario, load): per-client TTFT and end-to-end latency distributions of the
    counted requests, and output throughput over time (mean over seeds), experiments side by
    side. Returns the paths written (one per format)."""
    out = Path(out_dir)
    paths: list[Path] = []
    for key, runs in _group(results).items():
        clients = _client_names(runs)
        fig = Figure(figsize=(max(8.0, 0.55 * len(clients) * max(1, len(runs)) + 4), 11),
                     layout="constrained")
        ax1, ax2, ax3 = fig.subplots(3, 1)
        _grouped_boxes(ax1, runs, clients, "ttft", "TTFT (s)")
        ax1.set_title("Time to first token per client (counted requests, all seeds)")
        _grouped_boxes(ax2, runs, clients, "e2e", "end-to-end latency (s)")
        ax2.set_title("End-to-end latency per client (completed requests, all seeds)")
        lo, hi = _span([r for rs in runs.values() for r in rs])
        drawn = False
        if math.isfinite(lo) and math.isfinite(hi) and hi > lo:
            width = _bin_width(lo, hi)
            edges = np.arange(lo, hi + width, width)
            for exp, rs in runs.items():
                curves = []
                for r in rs:
                    times = [t for rec in r.records for t in rec.token_times_s]
                    counts, _ = np.histogram(np.asarray(times), bins=edges)
                    curves.append(counts / width)
                ax3.plot((edges[:-1] + edges[1:]) / 2, np.mean(curves, axis=0),
                         color=experiment_color(exp), label=exp, lw=1.5)
                drawn = True
        ax3.set_xlabel("time since run start (s)")
        ax3.set_ylabel("output throughput (tokens/s)")
        many = len({r.info.seed for rs in runs.values() for r in rs}) > 1
        ax3.set_title("Output tokens per second over time (all requests"
                      + (", mean over seeds)" if many else ")"))
        ax3.grid(alpha=0.3)
        if not drawn:
            _no_data(ax3)
        _legend_by_experiment(fig, list(runs))
        fig.suptitle(f"Performance — {_title(key)} — {_seeds_text(runs)}")
        paths += _save(fig, out, _stem("performance", key), formats)
    return paths


# ----------------------------------------------------------------------------------------------
# Fairness


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
    ax.set_xticks(range(len(clients)), clients, rotation=30 if len(clients) > 6 else 0)
    ax.set_xlim(-0.6, len(clients) - 0.4)
    ax.set_xlabel("client")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    if not drawn:
        _no_data(ax)
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


# ----------------------------------------------------------------------------------------------
# Aggregated


def plot_aggregated(rows: Sequence[SummaryRow], out_dir: str | os.PathLike[str], *,
                    formats: Sequence[str] = DEFAULT_FORMATS) -> list[Path]:
    """Per (backend, scenario): every summary metric against the load factor — one line per
    experiment (mean over seeds, markers at the measured loads) with 95% intervals over seeds
    clipped to the metric's range (a panel says when clipping happened). Returns the paths."""
    out = Path(out_dir)
    paths: list[Path] = []
    groups: dict[tuple[str, str], list[SummaryRow]] = {}
    for r in rows:
        groups.setdefault((r.backend, r.scenario), []).append(r)
    for (backend, scenario), grp in sorted(groups.items()):
        exps = sorted({r.experiment for r in grp}, key=experiment_sort_key)
        loads = sorted({r.load_factor for r in grp})
        ncols = 3
        nrows = math.ceil(len(SUMMARY_METRICS) / ncols)
        fig = Figure(figsize=(5.2 * ncols, 3.4 * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        # Experiments side by side at each load (a small dodge) so equal results stay visible.
        span = (loads[-1] - loads[0]) if len(loads) > 1 else 1.0
        dodge = {e: (k - (len(exps) - 1) / 2) * 0.012 * span for k, e in enumerate(exps)}
        for ax, spec in zip(axes, SUMMARY_METRICS, strict=False):
            drawn = clipped = False
            for exp in exps:
                pts = sorted((r.load_factor, r.stat(spec.key)) for r in grp
                             if r.experiment == exp and not math.isnan(r.stat(spec.key).mean))
                if not pts:
                    continue
                xs = np.asarray([x for x, _ in pts]) + dodge[exp]
                ys = np.asarray([st.mean for _, st in pts])
                lo = np.asarray([st.mean - st.lo if st.n > 1 else 0.0 for _, st in pts])
                hi = np.asarray([st.hi - st.mean if st.n > 1 else 0.0 for _, st in pts])
                clipped |= any(st.clipped for _, st in pts)
                err = np.vstack([lo, hi]) if (lo.any() or hi.any()) else None
                ax.errorbar(xs, ys, yerr=err, color=experiment_color(exp), label=exp,
                            marker="o", ms=4, lw=1.5, capsize=3)
                drawn = True
            ax.set_xticks(loads, [f"{x:g}×" for x in loads])
            ax.set_xlabel("load factor (× capacity)")
            ax.set_ylabel(spec.label)
            if spec.bounds[1] == 1.0:
                ax.set_ylim(-0.02, 1.02)
            ax.set_title(spec.label + (" ↑" if spec.higher_is_better else " ↓")
                         + (" (CI clipped to range)" if clipped else ""), fontsize="medium")
            ax.grid(alpha=0.3)
            if not drawn:
                _no_data(ax)
        for ax in axes[len(SUMMARY_METRICS):]:
            ax.set_visible(False)
        _legend_by_experiment(fig, exps)
        seeds = sorted({len(r.seeds) for r in grp})
        fig.suptitle(f"Aggregated — {scenario} — {backend} — mean ± 95% CI over "
                     f"{'/'.join(str(s) for s in seeds)} seed(s)")
        paths += _save(fig, out, f"aggregated_{_slug(backend)}_{_slug(scenario)}", formats)
    return paths
