"""Run the ExFairS study (issue #8) and write its report: docs/results.md and docs/figures/*.png.

    python studies/run_study.py [--jobs N] [--out DIR] [--force] [--seeds S ...]

Two sweeps run through `exfairs.sim.sweep.run_sweep` (one results file per cell, resumable: a rerun
into the same --out reuses finished cells): the study itself (studies/exfairs-study.toml) and the
"before" sweep (studies/exfairs-before.toml: ExFairS with the parameters that reproduce the rule
as it was before the study's changes). Cells are keyed by their configuration and the package
version, not by the source code: after changing a policy or the simulator, pass --force (or a
fresh --out) so no stale cell is reused.

Every number in the document is computed here from the results files; the hand-written paragraphs
state none. Same seeds give the same document, byte for byte.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from exfairs.atomic import atomic_temp_path, atomic_write_text
from exfairs.errors import InputError
from exfairs.plots import client_color, plot_aggregated, plot_fairness
from exfairs.results import RunResult, read_result
from exfairs.sim.sweep import SweepConfig, load_sweep, override, run_sweep
from exfairs.summary import Stat, SummaryRow, mean_ci95, summarize, write_summary_csv

_log = logging.getLogger("exfairs.study")

ROOT = Path(__file__).resolve().parent.parent
STUDY_SWEEP = ROOT / "studies" / "exfairs-study.toml"
BEFORE_SWEEP = ROOT / "studies" / "exfairs-before.toml"
ABLATION_SWEEP = ROOT / "studies" / "exfairs-ablation.toml"

#: The experiments that are ExFairS (one per mode); every other experiment is a baseline.
EXFAIRS_POLICY = "ExFairS"
#: The reference for "throughput within 1%": FCFS in the same mode.
REFERENCE_POLICY = "FCFS"
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
_HIGHER_IS_BETTER = {"violation_rate": False, "worst_client_attainment": True,
                     "jain_attainment": True, "jain_qoe": True, "request_throughput": True,
                     "request_goodput": True, "p99_ttft_ms": False}
_MODE_WORDS = {"priority": "priority mode", "gate": "gate mode", "engine": "engine mode"}


# ----------------------------------------------------------------------------------------------
# Data


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
        from exfairs.policies import parse_experiment

        ordered = [parse_experiment(e).name for e in self.config.experiments]
        return [e for e in dict.fromkeys(ordered) if e in present]

    def mode_of(self, experiment: str) -> str:
        return next(r.mode for r in self.rows if r.experiment == experiment)

    def policy_of(self, experiment: str) -> str:
        return next(r.policy for r in self.rows if r.experiment == experiment)


def run_study_sweep(config: SweepConfig, out_dir: Path, *, jobs: int, force: bool) -> StudyData:
    """Run (or reuse) every cell of `config` into `out_dir` and collect the results."""
    t0 = time.perf_counter()
    total = len(config.cells())

    def progress(done: int, n: int, _outcome: object) -> None:
        if done == n or done % max(1, n // 20) == 0:
            sys.stderr.write(f"  {config.name}: {done}/{n} cells, "
                             f"{time.perf_counter() - t0:.0f} s\n")

    sys.stderr.write(f"sweep {config.name!r}: {total} cells, {jobs} process(es) → {out_dir}/\n")
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
    """A cell's result without records, cached beside the full file (OUT/light/NAME): reading a
    full results file costs far more than the summary needs."""
    from exfairs.results import write_result

    cache = path.parent / "light" / path.name
    if light is None:
        if cache.is_file() and cache.stat().st_mtime >= path.stat().st_mtime:
            return read_result(cache)
        light = replace(read_result(path), records=(), policy_samples=())
    cache.parent.mkdir(exist_ok=True)
    write_result(light, cache)
    return light


def metric(res: RunResult, key: str) -> float:
    from exfairs.summary import metric_value

    return metric_value(res, key)


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


# ----------------------------------------------------------------------------------------------
# Formatting


def fmt(x: float, digits: int, scale: float = 1.0) -> str:
    """A number as the document prints it ('–' when undefined)."""
    return "–" if math.isnan(x) else f"{x * scale:.{digits}f}"


def fmt_stat(st: Stat, digits: int, scale: float = 1.0) -> str:
    """Mean ± 95% CI half-width as the document prints it."""
    if math.isnan(st.mean):
        return "–"
    if math.isnan(st.ci95):
        return fmt(st.mean, digits, scale)
    return f"{fmt(st.mean, digits, scale)} ± {fmt(st.ci95, digits, scale)}"


def fmt_diff(st: Stat, digits: int, scale: float = 1.0) -> str:
    if math.isnan(st.mean):
        return "–"
    sign = "+" if st.mean * scale >= 0 else "−"
    body = f"{sign}{abs(st.mean * scale):.{digits}f}"
    return body if math.isnan(st.ci95) else f"{body} ± {st.ci95 * scale:.{digits}f}"


def md_table(head: Sequence[str], body: Sequence[Sequence[str]], align: str = "") -> str:
    """A GitHub markdown table; `align` is one letter per column (l or r; default l then r)."""
    al = align or ("l" + "r" * (len(head) - 1))
    sep = ["---:" if a == "r" else ":---" for a in al]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def _exp_label(exp: str) -> str:
    return f"`{exp}`"


# ----------------------------------------------------------------------------------------------
# Target


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


def exfairs_experiments(data: StudyData) -> list[str]:
    return [e for e in data.experiments() if data.policy_of(e) == EXFAIRS_POLICY]


def baselines(data: StudyData) -> list[str]:
    return [e for e in data.experiments() if data.policy_of(e) != EXFAIRS_POLICY]


def reference_for(data: StudyData, experiment: str) -> str | None:
    mode = data.mode_of(experiment)
    for e in data.experiments():
        if data.policy_of(e) == REFERENCE_POLICY and data.mode_of(e) == mode:
            return e
    return None


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


def _ok(flag: bool) -> str:
    return "pass" if flag else "**FAIL**"


def target_table(checks: Sequence[TargetCheck]) -> str:
    head = ["scenario", "ExFairS", "worst-client att.", "best baseline (worst-client att.)",
            "≥ every baseline", "Jain (att.)", "≥ 0.95", "req/s vs FCFS same mode",
            "within 1%", "target"]
    body = []
    for c in checks:
        ratio = c.throughput / c.reference_throughput - 1 if c.reference_throughput else math.nan
        body.append([c.scenario, _exp_label(c.experiment), fmt(c.worst, 3),
                     f"{_exp_label(c.best_baseline)} ({fmt(c.best_baseline_worst, 3)})",
                     _ok(c.worst_ok), fmt(c.jain, 3), _ok(c.jain_ok),
                     f"{fmt(c.throughput, 3)} vs {fmt(c.reference_throughput, 3)} "
                     f"({fmt_pct(ratio)})", _ok(c.throughput_ok), _ok(c.ok)])
    return md_table(head, body, "llrlcrcrcc".replace("c", "l"))


def fmt_pct(x: float, digits: int = 2) -> str:
    if math.isnan(x):
        return "–"
    sign = "+" if x >= 0 else "−"
    return f"{sign}{abs(x) * 100:.{digits}f}%"


def target_sentences(data: StudyData, checks: Sequence[TargetCheck]) -> str:
    """Templated sentences: how many scenarios pass per ExFairS experiment, and what fails."""
    if not checks:
        return f"No results at load {TARGET_LOAD:g}: the target was not checked.\n"
    lines: list[str] = []
    n_scen = len({c.scenario for c in checks})
    for exp in exfairs_experiments(data):
        cs = [c for c in checks if c.experiment == exp]
        n_ok = sum(c.ok for c in cs)
        parts = [f"- {_exp_label(exp)} ({_MODE_WORDS.get(data.mode_of(exp), data.mode_of(exp))})"
                 f" meets the whole target in {n_ok} of {n_scen} scenarios"]
        fails = []
        w = [c for c in cs if not c.worst_ok]
        if w:
            fails.append("worst-client attainment below " + ", ".join(
                f"{_exp_label(c.best_baseline)} in {c.scenario} "
                f"({fmt(c.worst, 3)} vs {fmt(c.best_baseline_worst, 3)})" for c in w))
        j = [c for c in cs if not c.jain_ok]
        if j:
            fails.append(f"Jain over attainment below {TARGET_JAIN:g} in " + ", ".join(
                f"{c.scenario} ({fmt(c.jain, 3)})" for c in j))
        t = [c for c in cs if not c.throughput_ok]
        if t:
            fails.append("throughput more than 1% below FCFS in " + ", ".join(
                f"{c.scenario} ({fmt_pct(c.throughput / c.reference_throughput - 1)})"
                for c in t))
        lines.append(parts[0] + ("; it misses on " + "; ".join(fails) + "." if fails else "."))
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Analysis (templated from the data)


_WTL_METRICS = (("worst_client_attainment", "worst-client attainment"),
                ("jain_attainment", "Jain over attainment"),
                ("violation_rate", "violation rate"),
                ("request_throughput", "throughput"))


def wtl(data: StudyData, a: str, b: str, key: str,
        other: StudyData | None = None) -> tuple[int, int, int, list[tuple[str, float, Stat]]]:
    """Wins, ties, losses of `a` against `b` over every (scenario, load), and the per-cell
    paired differences."""
    w = t = lo = 0
    cells: list[tuple[str, float, Stat]] = []
    for scen in data.scenarios:
        for load in data.loads:
            d = paired_difference(data, scen, load, a, b, key, other)
            v = verdict(d, _HIGHER_IS_BETTER[key])
            if v == "n/a":
                continue
            cells.append((scen, load, d))
            w += v == "win"
            t += v == "tie"
            lo += v == "loss"
    return w, t, lo, cells


def wtl_tables(data: StudyData) -> str:
    exps = exfairs_experiments(data)
    base = baselines(data)
    out: list[str] = []
    n_cells = len(data.scenarios) * len(data.loads)
    for key, label in _WTL_METRICS:
        body = []
        for a in exps:
            row = [_exp_label(a)]
            for b in base:
                w, t, lo, _ = wtl(data, a, b, key)
                row.append(f"{w} / {t} / {lo}")
            body.append(row)
        out.append(f"**{label}** — wins / ties / losses of each ExFairS experiment (rows) "
                   f"against each baseline (columns) over the {n_cells} (scenario, load) "
                   "cells; a win or a loss needs the paired 95% interval over seeds to exclude "
                   "zero" + (" (lower is better)" if not _HIGHER_IS_BETTER[key] else "")
                   + ".\n\n")
        out.append(md_table(["ExFairS \\ baseline", *[_exp_label(b) for b in base]], body,
                            "l" + "r" * len(base)))
        out.append("\n")
    return "".join(out)


def baseline_sentences(data: StudyData) -> str:
    """For each baseline, one sentence per ExFairS experiment of the same mode (or priority mode
    when none): where ExFairS raises the worst client's attainment, where it lowers it."""
    lines: list[str] = []
    exps = exfairs_experiments(data)
    key = "worst_client_attainment"
    for b in baselines(data):
        same = [a for a in exps if data.mode_of(a) == data.mode_of(b)] or exps[:1]
        for a in same:
            w, t, lo, cells = wtl(data, a, b, key)
            if not cells:
                continue
            wins = [c for c in cells if verdict(c[2], True) == "win"]
            losses = [c for c in cells if verdict(c[2], True) == "loss"]
            s = (f"- Against {_exp_label(b)}, {_exp_label(a)} raises the worst client's "
                 f"attainment in {w} of {len(cells)} cells, ties in {t} and lowers it in {lo}")
            if wins:
                best = max(wins, key=lambda c: c[2].mean)
                s += (f"; the largest gain is {fmt_diff(best[2], 3)} in {best[0]} at load "
                      f"{best[1]:g}")
            if losses:
                worst = min(losses, key=lambda c: c[2].mean)
                s += (f"; the largest loss is {fmt_diff(worst[2], 3)} in {worst[0]} at load "
                      f"{worst[1]:g}")
            thr_w, thr_t, thr_l, _ = wtl(data, a, b, "request_throughput")
            s += (f". On throughput it wins {thr_w}, ties {thr_t} and loses {thr_l}.")
            lines.append(s)
    return "\n".join(lines) + "\n"


def best_table(data: StudyData, key: str = "worst_client_attainment") -> str:
    """Per scenario and load: the experiment with the best mean, and ExFairS's rank."""
    head = ["scenario", *[f"load {x:g}" for x in data.loads]]
    body = []
    hib = _HIGHER_IS_BETTER[key]
    for scen in data.scenarios:
        row = [scen]
        for load in data.loads:
            vals = [(e, r.stat(key).mean) for e in data.experiments()
                    if (r := data.row(scen, load, e)) is not None]
            vals = [v for v in vals if not math.isnan(v[1])]
            if not vals:
                row.append("–")
                continue
            vals.sort(key=lambda v: (-v[1] if hib else v[1], v[0]))
            ranks = [i + 1 for i, (e, _) in enumerate(vals) if data.policy_of(e) == EXFAIRS_POLICY]
            row.append(f"{_exp_label(vals[0][0])} ({fmt(vals[0][1], 3)}); best ExFairS rank "
                       f"{min(ranks) if ranks else '–'} of {len(vals)}")
        body.append(row)
    return md_table(head, body, "l" + "l" * len(data.loads))


def identical_modes(data: StudyData) -> str:
    """How often gate and engine mode of one policy gave identical results (paired, every
    seed), as a fact for the explanation."""
    lines = []
    policies = sorted({data.policy_of(e) for e in data.experiments()})
    for pol in policies:
        gate = [e for e in data.experiments()
                if data.policy_of(e) == pol and data.mode_of(e) == "gate"]
        eng = [e for e in data.experiments()
               if data.policy_of(e) == pol and data.mode_of(e) == "engine"]
        if not gate or not eng:
            continue
        same = total = 0
        for (scen, load, exp), by_seed in data.runs.items():
            if exp != gate[0]:
                continue
            other = data.runs.get((scen, load, eng[0]), {})
            for seed, res in by_seed.items():
                if seed in other:
                    total += 1
                    same += all(metric(res, k) == metric(other[seed], k)
                                or (math.isnan(metric(res, k))
                                    and math.isnan(metric(other[seed], k)))
                                for k, *_ in COLUMNS)
        lines.append(f"- {_exp_label(gate[0])} and {_exp_label(eng[0])}: identical headline "
                     f"metrics in {same} of {total} runs.")
    return "\n".join(lines) + "\n" if lines else ""


def throughput_decomposition(data: StudyData, load: float = TARGET_LOAD) -> str:
    """Throughput = completed requests / span (design §7; the span runs from the window start
    to the last token of a counted request). Per scenario at `load`: both factors for FCFS and
    ExFairS in each mode and VTC, means over seeds — so a throughput gap can be traced to
    unfinished requests or to a longer tail."""
    if load not in data.loads:
        return ""
    exps = [e for e in data.experiments()
            if data.policy_of(e) in (EXFAIRS_POLICY, REFERENCE_POLICY, "VTC")]
    body = []
    all_done = total = 0
    for scen in data.scenarios:
        for e in exps:
            runs = data.runs.get((scen, load, e), {})
            if not runs:
                continue
            done = [r.metrics.overall.completed / max(1, r.metrics.overall.requests)
                    for r in runs.values()]
            span = [r.metrics.overall.duration_s for r in runs.values()]
            thr = [r.metrics.overall.request_throughput for r in runs.values()]
            all_done += sum(d == 1.0 for d in done)
            total += len(done)
            body.append([scen, _exp_label(e), fmt(float(np.mean(done)), 4),
                         fmt(float(np.mean(span)), 1), fmt(float(np.mean(thr)), 3)])
    head = ["scenario", "experiment", "completed / arrived", "span (s)", "throughput (req/s)"]
    return (f"Throughput at load {load:g}, decomposed (means over seeds): every counted request "
            f"completed in {all_done} of these {total} runs, so a throughput gap between them is "
            "a difference in span: how late the last counted request finished.\n\n"
            + md_table(head, body, "llrrr"))


def worst_clients(data: StudyData) -> str:
    """Which client is the worst off (lowest attainment), per scenario, load and experiment: the
    most frequent over seeds, with how many seeds it was."""
    loads = [x for x in data.loads if x >= TARGET_LOAD]
    exps = [e for e in data.experiments() if data.mode_of(e) != "engine"]
    body = []
    for scen in data.scenarios:
        for load in loads:
            row = [scen, f"{load:g}"]
            for e in exps:
                runs = data.runs.get((scen, load, e), {})
                names = [r.metrics.fairness.worst_client for r in runs.values()]
                if not names:
                    row.append("–")
                    continue
                top = max(sorted(set(names)), key=names.count)
                row.append(f"{top} ({names.count(top)}/{len(names)})")
            body.append(row)
    return ("The worst-off client (lowest attainment; the most frequent over seeds):\n\n"
            + md_table(["scenario", "load", *[_exp_label(e) for e in exps]], body,
                       "lr" + "l" * len(exps)))


def preemption_sentence(data: StudyData) -> str:
    """Preemptions per run, over the whole study (a fact the explanations rely on)."""
    vals = [float(r.metrics.overall.preemptions) for by_seed in data.runs.values()
            for r in by_seed.values()]
    if not vals:
        return ""
    nz = sum(v > 0 for v in vals)
    return (f"Preemptions: {nz} of {len(vals)} runs preempted at least one request "
            f"(at most {max(vals):.0f} in one run).\n")


# ----------------------------------------------------------------------------------------------
# Before / after


def before_after(after: StudyData, before: StudyData, old: str = "the old rule",
                 new: str = "the new rule") -> str:
    """The ExFairS experiments of the study against the same experiments of the before sweep."""
    exps = [e for e in exfairs_experiments(after) if e in before.experiments()]
    if not exps:
        return "The before sweep holds no ExFairS experiment of the study.\n"
    out: list[str] = []
    body_sum = []
    for e in exps:
        row = [_exp_label(e)]
        for key, _label in _WTL_METRICS:
            w, t, lo, _ = wtl(after, e, e, key, before)
            row.append(f"{w} / {t} / {lo}")
        body_sum.append(row)
    n_cells = len(after.scenarios) * len(after.loads)
    out.append(f"Wins / ties / losses of {new} against {old} over the {n_cells} "
               "(scenario, load) cells (paired by seed; a win or a loss needs the 95% interval "
               "to exclude zero):\n\n")
    out.append(md_table(["experiment", *[lbl for _, lbl in _WTL_METRICS]], body_sum))
    out.append("\nPer cell (old → new, means over seeds; Δ = new − old, paired, ± 95% CI):\n\n")
    head = ["scenario", "load", "experiment", "worst-client att. old → new", "Δ",
            "Jain (att.) old → new", "violation rate old → new", "req/s old → new"]
    body = []
    for scen in after.scenarios:
        for load in after.loads:
            for e in exps:
                ra, rb = after.row(scen, load, e), before.row(scen, load, e)
                if ra is None or rb is None:
                    continue
                d = paired_difference(after, scen, load, e, e, "worst_client_attainment",
                                      before)
                body.append([
                    scen, f"{load:g}", _exp_label(e),
                    f"{fmt(rb.stat('worst_client_attainment').mean, 3)} → "
                    f"{fmt(ra.stat('worst_client_attainment').mean, 3)}",
                    fmt_diff(d, 3),
                    f"{fmt(rb.stat('jain_attainment').mean, 3)} → "
                    f"{fmt(ra.stat('jain_attainment').mean, 3)}",
                    f"{fmt(rb.stat('violation_rate').mean, 3)} → "
                    f"{fmt(ra.stat('violation_rate').mean, 3)}",
                    f"{fmt(rb.stat('request_throughput').mean, 3)} → "
                    f"{fmt(ra.stat('request_throughput').mean, 3)}"])
    out.append(md_table(head, body, "lrlrrrrr"))
    before_checks = target_checks(before)
    if before_checks:
        out.append(f"\nThe target check with {old} (against the study's baselines):\n\n")
        merged = StudyData(before.config, before.out_dir,
                           tuple(r for r in after.rows if r.policy != EXFAIRS_POLICY)
                           + before.rows, before.runs, before.files)
        merged = replace(merged, config=replace(
            before.config, experiments=tuple(dict.fromkeys(
                before.config.experiments + after.config.experiments))))
        checks = target_checks(merged)
        out.append(target_table(checks))
        out.append("\n" + target_sentences(merged, checks))
    return "".join(out)


# ----------------------------------------------------------------------------------------------
# Figures


def _save_png(fig: Figure, path: Path) -> Path:
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
        vals = [dict(s.values)[name] for s in res.policy_samples
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


# ----------------------------------------------------------------------------------------------
# Document


def results_tables(data: StudyData) -> str:
    out: list[str] = []
    head = ["experiment", *[c[1] for c in COLUMNS]]
    for scen in data.scenarios:
        out.append(f"### {scen}\n\n")
        for load in data.loads:
            body = []
            for e in data.experiments():
                r = data.row(scen, load, e)
                if r is None:
                    continue
                body.append([_exp_label(e), *[fmt_stat(r.stat(k), d, s)
                                              for k, _, d, s in COLUMNS]])
            seeds = sorted({len(r.seeds) for r in data.rows if r.scenario == scen})
            out.append(f"Load {load:g} (mean ± 95% CI over "
                       f"{'/'.join(str(x) for x in seeds)} seeds):\n\n")
            out.append(md_table(head, body))
            out.append("\n")
    return "".join(out)


def live_section(live_dir: Path) -> str:
    files = sorted(live_dir.glob("validation*.md")) if live_dir.is_dir() else []
    if not files:
        return ("Not yet run: no `validation*.md` in `benchmarks/results/`. `exfairs-live "
                "validate` writes the sim-vs-live error table there; rerunning this script then "
                "includes it here.\n")
    out = []
    for f in files:
        text = f.read_text(encoding="utf-8")
        # Demote the included file's headings below this section's.
        text = "\n".join("###" + line if line.startswith("#") else line
                         for line in text.splitlines())
        out.append(f"From `benchmarks/results/{f.name}`:\n\n{text.strip()}\n")
    return "\n".join(out)


def relpath(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target, start)).as_posix()


@dataclass(frozen=True, slots=True)
class Prose:
    """The hand-written paragraphs (no numbers in them: every number is generated)."""

    setup: str
    explanation: str
    changes: str
    target: str


def build_document(data: StudyData, before: StudyData | None, *, doc_path: Path,
                   ablation: StudyData | None = None,
                   fig_paths: Sequence[Path], live_dir: Path, prose: Prose,
                   command: str) -> str:
    """The whole markdown document, from the data (deterministic)."""
    from exfairs import __version__

    cfg = data.config
    fig_rel = {p.name: relpath(p, doc_path.parent) for p in fig_paths}
    checks = target_checks(data)
    n_cells = len(cfg.cells()) + sum(len(x.config.cells()) for x in (before, ablation) if x)
    engine = ", ".join(f"`{k} = {v}`" for k, v in cfg.engine) or "the profile's defaults"
    parts: list[str] = []
    parts.append("# ExFairS study: results\n\n")
    parts.append("<!-- Generated by studies/run_study.py from the results files; do not edit by "
                 "hand: rerun the command below. -->\n\n")
    parts.append(f"Reproduce (about {n_cells} simulations):\n\n```\n{command}\n```\n\n")
    parts.append(f"Package version {__version__}; sweep `{cfg.name}`; profile `{cfg.profile}`; "
                 f"engine knobs {engine}; "
                 f"scenarios {', '.join(data.scenarios)}; experiments "
                 f"{', '.join(_exp_label(e) for e in data.experiments())}; seeds "
                 f"{', '.join(str(s) for s in cfg.seeds)}; load factors "
                 f"{', '.join(f'{x:g}' for x in data.loads)}.\n\n")
    parts.append("## Setup\n\n" + prose.setup.strip() + "\n\n")
    parts.append("## Target check (load 1.0)\n\n")
    parts.append(f"The issue's target, at load {TARGET_LOAD:g} in every scenario: ExFairS's "
                 "worst-client SLO attainment at least every baseline's, Jain's index over "
                 f"per-client attainment ≥ {TARGET_JAIN:g}, and request throughput within "
                 f"{TARGET_THROUGHPUT_LOSS:.0%} of FCFS (in the same mode). Means over seeds.\n\n")
    parts.append(target_table(checks) + "\n" + target_sentences(data, checks) + "\n")
    parts.append(prose.target.strip() + "\n\n")
    parts.append("## Where ExFairS wins and where it loses\n\n")
    parts.append(baseline_sentences(data) + "\n")
    parts.append("Best experiment by worst-client attainment (mean over seeds):\n\n")
    parts.append(best_table(data) + "\n")
    parts.append(wtl_tables(data))
    parts.append("Facts the explanation below relies on:\n\n")
    parts.append(identical_modes(data))
    parts.append(preemption_sentence(data) + "\n")
    parts.append(throughput_decomposition(data) + "\n")
    parts.append(worst_clients(data) + "\n")
    parts.append("### Why\n\n" + prose.explanation.strip() + "\n\n")
    state = sorted(n for n in fig_rel if n.startswith("policy-state_"))
    if state:
        parts.append("Policy state over time (first seed, load "
                     f"{TARGET_LOAD:g}): ExFairS's score `fr` per client (higher goes first) "
                     "and VTC's counters (lower goes first).\n\n")
        parts += [f"![{n}]({fig_rel[n]})\n\n" for n in state]
    if before is not None:
        parts.append("## Changes to ExFairS, before and after\n\n")
        parts.append(prose.changes.strip() + "\n\n")
        old = ", ".join(f"`{k} = {v}`" for _, kv in before.config.policy_params for k, v in kv)
        parts.append(f"The old rule is ExFairS with {old or 'its defaults'} "
                     f"(`studies/{BEFORE_SWEEP.name}`); the new rule is ExFairS's defaults.\n\n")
        parts.append(before_after(data, before) + "\n")
        if "exfairs-before-after.png" in fig_rel:
            parts.append(f"![before and after]({fig_rel['exfairs-before-after.png']})\n\n")
    if ablation is not None:
        parts.append("### A candidate change on its own: early violations\n\n")
        kv = ", ".join(f"`{k} = {v}`" for _, p in ablation.config.policy_params for k, v in p)
        parts.append(f"The adopted rule (\"new\") against the same rule with {kv or 'its defaults'}"
                     f" (\"old\" below; `studies/{ABLATION_SWEEP.name}`).\n\n")
        parts.append(before_after(data, ablation, old="the variant", new="the adopted rule")
                     + "\n")
    parts.append("## Results per scenario and load\n\n")
    parts.append("Columns: SLO violation rate (violations / requests arrived in the measured "
                 "window), the worst client's SLO attainment, Jain's index over per-client "
                 "attainment and over per-client mean QoE, request throughput and goodput "
                 "(requests/s; goodput counts requests that met their SLO), and p99 TTFT in "
                 "seconds (docs/design.md §7).\n\n")
    parts.append(results_tables(data))
    agg = sorted(n for n in fig_rel if n.startswith("aggregated_"))
    fair = sorted(n for n in fig_rel if n.startswith("fairness_"))
    if agg or fair:
        parts.append("## Figures\n\n")
        parts.append("Aggregated (every summary metric, experiments side by side, mean ± 95% CI "
                     "over seeds):\n\n")
        parts += [f"![{n}]({fig_rel[n]})\n\n" for n in agg]
        parts.append(f"Per-client attainment, QoE and service at load {TARGET_LOAD:g} "
                     "(priority and gate modes):\n\n")
        parts += [f"![{n}]({fig_rel[n]})\n\n" for n in fair]
    parts.append("## Live validation\n\n" + live_section(live_dir) + "\n")
    return "".join(parts).rstrip() + "\n"


# ----------------------------------------------------------------------------------------------
# CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_study.py", description="Run the ExFairS study sweeps and write docs/results.md "
        "and docs/figures/ from their results.")
    p.add_argument("--jobs", type=int, default=2, help="parallel processes (default 2)")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "exfairs-study",
                   help="results directory (default results/exfairs-study); the before sweep "
                        "goes to OUT/before")
    p.add_argument("--force", action="store_true",
                   help="recompute every cell (needed after code changes: cells are keyed by "
                        "configuration and package version, not by source)")
    p.add_argument("--seeds", type=int, nargs="+", help="override the sweep files' seeds")
    p.add_argument("--scenarios", nargs="+", help="override the sweep files' scenarios")
    p.add_argument("--loads", type=float, nargs="+", help="override the sweep files' loads")
    p.add_argument("--sweep", type=Path, default=STUDY_SWEEP, help="the study sweep file")
    p.add_argument("--before", type=Path, default=BEFORE_SWEEP,
                   help="the before sweep file ('none' to skip)")
    p.add_argument("--ablation", type=Path, default=ABLATION_SWEEP,
                   help="the ablation sweep file ('none' to skip)")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "results.md",
                   help="the document to write (default docs/results.md)")
    p.add_argument("--figures", type=Path, default=ROOT / "docs" / "figures",
                   help="figure folder (default docs/figures; its PNGs are replaced)")
    p.add_argument("--live-dir", type=Path, default=ROOT / "benchmarks" / "results",
                   help="where the live validation reports are (validation*.md)")
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    return p


def _overrides(ns: argparse.Namespace) -> dict[str, object]:
    return {"seeds": tuple(ns.seeds) if ns.seeds else None,
            "scenarios": tuple(ns.scenarios) if ns.scenarios else None,
            "load_factors": tuple(ns.loads) if ns.loads else None}


def _command(ns: argparse.Namespace) -> str:
    parts = ["python studies/run_study.py", f"--jobs {ns.jobs}"]
    if ns.seeds:
        parts.append("--seeds " + " ".join(str(s) for s in ns.seeds))
    if ns.scenarios:
        parts.append("--scenarios " + " ".join(ns.scenarios))
    if ns.loads:
        parts.append("--loads " + " ".join(f"{x:g}" for x in ns.loads))
    return " ".join(parts)


def main(argv: Sequence[str] | None = None,
         prose_loader: Callable[[], Prose] | None = None) -> int:
    """Run the sweeps and write the document; returns the exit code (2 on bad input)."""
    ns = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if ns.jobs < 1:
            raise InputError("must be ≥ 1", field="--jobs", value=ns.jobs)
        t0 = time.perf_counter()
        config = override(load_sweep(ns.sweep), _overrides(ns))
        data = run_study_sweep(config, ns.out, jobs=ns.jobs, force=ns.force)
        before = None
        if str(ns.before).lower() != "none":
            bconf = override(load_sweep(ns.before), _overrides(ns))
            before = run_study_sweep(bconf, ns.out / "before", jobs=ns.jobs, force=ns.force)
        ablation = None
        if str(ns.ablation).lower() != "none":
            aconf = override(load_sweep(ns.ablation), _overrides(ns))
            ablation = run_study_sweep(aconf, ns.out / "ablation", jobs=ns.jobs, force=ns.force)
        figs = [] if ns.no_figures else make_figures(data, before, ns.figures)
        prose = (prose_loader or _default_prose)()
        doc = build_document(data, before, ablation=ablation, doc_path=ns.doc, fig_paths=figs,
                             live_dir=ns.live_dir, prose=prose, command=_command(ns))
        ns.doc.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(ns.doc, doc)
        size = sum(p.stat().st_size for p in figs)
        sys.stderr.write(f"wrote {ns.doc} and {len(figs)} figures ({size / 1e6:.1f} MB) in "
                         f"{time.perf_counter() - t0:.0f} s\n")
        return 0
    except InputError as exc:
        sys.stderr.write(f"run_study.py: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("\nrun_study.py: interrupted; finished cells are kept\n")
        return 130


def _default_prose() -> Prose:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import prose

    return Prose(setup=prose.SETUP, explanation=prose.EXPLANATION, changes=prose.CHANGES,
                 target=prose.TARGET)


if __name__ == "__main__":
    raise SystemExit(main())
