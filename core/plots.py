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

The module holds the performance and aggregated figures; the fairness figure is in
`exfairs.plot_fairness` and what all figures share (colours, grouping, saving) in
`exfairs.plot_common`, both re-exported here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from exfairs.plot_common import (
    DEFAULT_FORMATS,
    FORMATS,
    _bin_width,
    _client_names,
    _group,
    _grouped_boxes,
    _legend_by_experiment,
    _no_data,
    _save,
    _seeds_text,
    _slug,
    _span,
    _stem,
    _title,
    check_formats,
    client_color,
    counted_records,
    experiment_color,
)
from exfairs.plot_fairness import plot_fairness
from exfairs.results import RunResult
from exfairs.summary import SUMMARY_METRICS, SummaryRow, experiment_sort_key

__all__ = ["DEFAULT_FORMATS", "FORMATS", "SUMMARY_METRICS", "check_formats", "client_color",
           "counted_records", "experiment_color", "plot_aggregated", "plot_fairness",
           "plot_performance"]


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
