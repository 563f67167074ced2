"""The study's figures (PNG, into the document's figure folder): the aggregated and per-client
fairness plots of `exfairs.plots`, policy state over time, and ExFairS before and after."""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from exfairs.atomic import atomic_temp_path
from exfairs.plots import client_color, plot_aggregated, plot_fairness
from exfairs.results import RunResult, read_result
from exfairs.sim.study.data import StudyData, baselines, exfairs_experiments
from exfairs.sim.study.stats import TARGET_LOAD
from exfairs.summary import Stat


def _save_png(fig: Figure, path: Path) -> Path:
    """Write `fig` as PNG atomically (no half-written figure) with a world-readable mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_temp_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    path.chmod(0o644)  # the temp file's private mode would survive the rename
    return path


def policy_state_figure(data: StudyData, scenario: str, load: float, seed: int,
                        panels: Sequence[tuple[str, str]], out: Path) -> Path | None:
    """Per-client policy state over time, one panel per (experiment, state name)."""
    drawn: list[tuple[str, str, RunResult]] = []
    for exp, name in panels:
        path = data.files.get((scenario, load, exp, seed))
        if path is not None:
            drawn.append((exp, name, read_result(path)))
    if not drawn:
        return None
    fig = Figure(figsize=(10, 2.8 * len(drawn)), layout="constrained")
    axes = fig.subplots(len(drawn), 1, squeeze=False)[:, 0]
    for ax, (exp, name, res) in zip(axes, drawn, strict=True):
        t = [s.time_s for s in res.policy_samples if any(n == name for n, _ in s.values)]
        vals = [dict(s.dense(len(res.clients)))[name] for s in res.policy_samples
                if any(n == name for n, _ in s.values)]
        if not vals:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            continue
        arr = np.asarray(vals, dtype=np.float64)
        for ci, c in enumerate(res.clients[: arr.shape[1]]):
            ax.plot(t, arr[:, ci], color=client_color(ci), lw=1.1, label=c.name)
        ax.set_title(f"{exp}: {name}")
        ax.set_xlabel("time since run start (s)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small", ncol=min(5, arr.shape[1]), loc="best")
    fig.suptitle(f"Policy state — {scenario} — load {load:g} — seed {seed}")
    return _save_png(fig, out / f"policy-state_{scenario}_load{load:g}.png")


def make_figures(data: StudyData, before: StudyData | None, fig_dir: Path) -> list[Path]:
    """Every figure of the document, PNG only, into `fig_dir` (old PNGs there are removed)."""
    fig_dir.mkdir(parents=True, exist_ok=True)
    for old in fig_dir.glob("*.png"):
        old.unlink()
    made: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="exfairs-study-") as tmp_name:
        tmp = Path(tmp_name)
        for p in plot_aggregated(list(data.rows), tmp / "agg"):
            if p.suffix == ".png":
                dest = fig_dir / p.name
                shutil.copyfile(p, dest)
                made.append(dest)
        seed = min(data.config.seeds)
        state_panels = [(e, "fr") for e in exfairs_experiments(data)
                        if data.mode_of(e) in ("priority", "gate")]
        state_panels += [(e, "counter") for e in baselines(data)
                         if data.policy_of(e) == "VTC" and data.mode_of(e) == "gate"]
        load = TARGET_LOAD if TARGET_LOAD in data.loads else data.loads[0]
        fair_exps = [e for e in data.experiments() if data.mode_of(e) != "engine"]
        for scen in data.scenarios:
            state_png = policy_state_figure(data, scen, load, seed, state_panels, fig_dir)
            if state_png is not None:
                made.append(state_png)
            full = [read_result(data.files[(scen, load, e, s)])
                    for e in fair_exps for s in sorted(data.runs.get((scen, load, e), {}))]
            full = [replace(r, policy_samples=()) for r in full]
            for p in plot_fairness(full, tmp / "fair"):
                if p.suffix == ".png" and p.name.startswith("fairness"):
                    dest = fig_dir / p.name
                    shutil.copyfile(p, dest)
                    made.append(dest)
        if before is not None:
            ba_png = before_after_figure(data, before, fig_dir)
            if ba_png is not None:
                made.append(ba_png)
    return sorted(made)


def before_after_figure(after: StudyData, before: StudyData, out: Path) -> Path | None:
    """Bars of the old and the new rule per (scenario, load) for each ExFairS experiment of both
    sweeps; None when they share none."""
    exps = [e for e in exfairs_experiments(after) if e in before.experiments()]
    if not exps:
        return None
    keys = [("worst_client_attainment", "worst-client attainment"),
            ("jain_attainment", "Jain over attainment"),
            ("request_throughput", "throughput (req/s)")]
    fig = Figure(figsize=(4.6 * len(keys), 3.2 * len(exps)), layout="constrained")
    axes = fig.subplots(len(exps), len(keys), squeeze=False)
    labels = [f"{s.removeprefix('exfairs-')}/{x:g}" for s in after.scenarios for x in after.loads]
    xs = np.arange(len(labels))
    for i, e in enumerate(exps):
        for j, (key, title) in enumerate(keys):
            ax = axes[i, j]
            for k, (data, name, color) in enumerate(((before, "old rule", "#999999"),
                                                     (after, "new rule", "#d62728"))):
                ys, es = [], []
                for s in after.scenarios:
                    for x in after.loads:
                        r = data.row(s, x, e)
                        st = r.stat(key) if r else Stat(math.nan, math.nan, 0)
                        ys.append(st.mean)
                        es.append(0.0 if math.isnan(st.ci95) else st.ci95)
                ax.bar(xs + (k - 0.5) * 0.4, ys, width=0.38, color=color, label=name,
                       yerr=es, capsize=2, ecolor="0.2")
            ax.set_xticks(xs, labels, rotation=90, fontsize="x-small")
            ax.set_title(f"{e}: {title}", fontsize="small")
            ax.grid(axis="y", alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize="x-small")
    fig.suptitle("ExFairS before and after the study's changes (scenario/load; mean ± 95% CI)")
    return _save_png(fig, out / "exfairs-before-after.png")
