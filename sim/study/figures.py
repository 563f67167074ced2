"""The study's figures (PNG, into the document's figure folder): the aggregated and per-client
fairness plots of `exfairs.plots`, policy state over time, and ExFairS before and after."""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from exfairs.atomic import atomic_temp_path
from exfairs.plots import client_color, plot_aggregated, plot_fairness
from exfairs.results import RunResult, read_result
from exfairs.sim.study.data import StudyData, baselines, exfairs_experiments
from exfairs.sim.study.stats import TARGET_LOAD
from exfairs.summary import Stat, SummaryRow


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
    drawn = [(exp, name, path) for exp, name in panels
             if (path := data.files.get((scenario, load, exp, seed))) is not None]
    return _policy_state_png(scenario, load, seed, drawn, {}, out)


def _policy_state_png(scenario: str, load: float, seed: int,
                      panels: Sequence[tuple[str, str, Path]], cache: dict[Path, RunResult],
                      out: Path) -> Path | None:
    """`policy_state_figure` from the panels' result files; `cache` holds files already read
    (and receives those read here)."""
    drawn: list[tuple[str, str, RunResult]] = []
    for exp, name, path in panels:
        if path not in cache:
            cache[path] = read_result(path)
        drawn.append((exp, name, cache[path]))
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


#: The document takes PNGs only: the plots' other default format (SVG, drawn after the PNG, so
#: leaving it out changes no PNG) was drawn and thrown away.
_PNG = ("png",)


def _copy_pngs(paths: Sequence[Path], fig_dir: Path, prefix: str = "") -> list[Path]:
    """The PNGs among `paths` (those named `prefix`…) copied into `fig_dir`."""
    made = []
    for p in paths:
        if p.suffix == ".png" and p.name.startswith(prefix):
            dest = fig_dir / p.name
            shutil.copyfile(p, dest)
            made.append(dest)
    return made


def _aggregated_task(rows: Sequence[SummaryRow], fig_dir: Path) -> list[Path]:
    """The aggregated figures of `rows` (one per scenario among them) into `fig_dir`."""
    with tempfile.TemporaryDirectory(prefix="exfairs-study-") as tmp:
        return _copy_pngs(plot_aggregated(list(rows), Path(tmp), formats=_PNG), fig_dir)


def _scenario_task(scenario: str, load: float, seed: int,
                   state_panels: Sequence[tuple[str, str, Path]], fair_files: Sequence[Path],
                   fig_dir: Path) -> list[Path]:
    """One scenario's policy-state and fairness figures into `fig_dir`; each results file is
    read once for both."""
    cache: dict[Path, RunResult] = {}
    made = []
    state_png = _policy_state_png(scenario, load, seed, state_panels, cache, fig_dir)
    if state_png is not None:
        made.append(state_png)
    full = [replace(cache[f] if f in cache else read_result(f), policy_samples=())
            for f in fair_files]
    with tempfile.TemporaryDirectory(prefix="exfairs-study-") as tmp:
        made += _copy_pngs(plot_fairness(full, Path(tmp), formats=_PNG), fig_dir, "fairness")
    return made


def _before_after_task(after: StudyData, before: StudyData, fig_dir: Path) -> list[Path]:
    png = before_after_figure(after, before, fig_dir)
    return [] if png is None else [png]


def make_figures(data: StudyData, before: StudyData | None, fig_dir: Path, *,
                 jobs: int = 1) -> list[Path]:
    """Every figure of the document, PNG only, into `fig_dir` (old PNGs there are removed).

    With `jobs` > 1 the figures are drawn in that many worker processes (one task per scenario
    and kind; each figure is drawn by the same code either way, so the files are the same)."""
    fig_dir.mkdir(parents=True, exist_ok=True)
    for old in fig_dir.glob("*.png"):
        old.unlink()
    seed = min(data.config.seeds)
    state_panels = [(e, "fr") for e in exfairs_experiments(data)
                    if data.mode_of(e) in ("priority", "gate")]
    state_panels += [(e, "counter") for e in baselines(data)
                     if data.policy_of(e) == "VTC" and data.mode_of(e) == "gate"]
    load = TARGET_LOAD if TARGET_LOAD in data.loads else data.loads[0]
    fair_exps = [e for e in data.experiments() if data.mode_of(e) != "engine"]
    tasks: list[tuple[Callable[..., list[Path]], tuple[Any, ...]]] = []
    by_scenario: dict[str, list[SummaryRow]] = {}
    for row in data.rows:
        by_scenario.setdefault(row.scenario, []).append(row)
    tasks += [(_aggregated_task, (rows, fig_dir)) for rows in by_scenario.values()]
    for scen in data.scenarios:
        panels = [(e, n, path) for e, n in state_panels
                  if (path := data.files.get((scen, load, e, seed))) is not None]
        fair = [data.files[(scen, load, e, s)]
                for e in fair_exps for s in sorted(data.runs.get((scen, load, e), {}))]
        tasks.append((_scenario_task, (scen, load, seed, panels, fair, fig_dir)))
    if before is not None:
        tasks.append((_before_after_task, (data, before, fig_dir)))
    made: list[Path] = []
    if jobs <= 1:
        for fn, args in tasks:
            made += fn(*args)
    else:
        with ProcessPoolExecutor(max_workers=min(jobs, len(tasks))) as pool:
            for paths in pool.map(_call, tasks):
                made += paths
    return sorted(made)


def _call(task: tuple[Callable[..., list[Path]], tuple[Any, ...]]) -> list[Path]:
    fn, args = task
    return fn(*args)


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
