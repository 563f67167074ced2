"""The study document's comparison tables and templated sentences: the target check, wins /
ties / losses against each baseline, the best experiment per cell, and before against after."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from exfairs.sim.study.data import EXFAIRS_POLICY, StudyData, baselines, exfairs_experiments
from exfairs.sim.study.markdown import exp_label, fmt, fmt_diff, fmt_pct, md_table
from exfairs.sim.study.stats import (
    HIGHER_IS_BETTER,
    TARGET_JAIN,
    TARGET_LOAD,
    TargetCheck,
    paired_difference,
    target_checks,
    verdict,
    wtl,
)

_MODE_WORDS = {"priority": "priority mode", "gate": "gate mode", "engine": "engine mode"}


WTL_METRICS = (("worst_client_attainment", "worst-client attainment"),
                ("jain_attainment", "Jain over attainment"),
                ("violation_rate", "violation rate"),
                ("request_throughput", "throughput"))


def _ok(flag: bool) -> str:
    return "pass" if flag else "**FAIL**"


def target_table(checks: Sequence[TargetCheck]) -> str:
    """The target check as a table, one row per (scenario, ExFairS experiment)."""
    head = ["scenario", "ExFairS", "worst-client att.", "best baseline (worst-client att.)",
            "≥ every baseline", "Jain (att.)", "≥ 0.95", "req/s vs FCFS same mode",
            "within 1%", "target"]
    body = []
    for c in checks:
        ratio = c.throughput / c.reference_throughput - 1 if c.reference_throughput else math.nan
        body.append([c.scenario, exp_label(c.experiment), fmt(c.worst, 3),
                     f"{exp_label(c.best_baseline)} ({fmt(c.best_baseline_worst, 3)})",
                     _ok(c.worst_ok), fmt(c.jain, 3), _ok(c.jain_ok),
                     f"{fmt(c.throughput, 3)} vs {fmt(c.reference_throughput, 3)} "
                     f"({fmt_pct(ratio)})", _ok(c.throughput_ok), _ok(c.ok)])
    return md_table(head, body, "llrlcrcrcc".replace("c", "l"))


def target_sentences(data: StudyData, checks: Sequence[TargetCheck]) -> str:
    """Templated sentences: how many scenarios pass per ExFairS experiment, and what fails."""
    if not checks:
        return f"No results at load {TARGET_LOAD:g}: the target was not checked.\n"
    lines: list[str] = []
    n_scen = len({c.scenario for c in checks})
    for exp in exfairs_experiments(data):
        cs = [c for c in checks if c.experiment == exp]
        n_ok = sum(c.ok for c in cs)
        parts = [f"- {exp_label(exp)} ({_MODE_WORDS.get(data.mode_of(exp), data.mode_of(exp))})"
                 f" meets the whole target in {n_ok} of {n_scen} scenarios"]
        fails = []
        w = [c for c in cs if not c.worst_ok]
        if w:
            fails.append("worst-client attainment below " + ", ".join(
                f"{exp_label(c.best_baseline)} in {c.scenario} "
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


def wtl_tables(data: StudyData) -> str:
    """Per headline metric: wins / ties / losses of each ExFairS experiment against each
    baseline."""
    exps = exfairs_experiments(data)
    base = baselines(data)
    out: list[str] = []
    n_cells = len(data.scenarios) * len(data.loads)
    for key, label in WTL_METRICS:
        body = []
        for a in exps:
            row = [exp_label(a)]
            for b in base:
                w, t, lo, _ = wtl(data, a, b, key)
                row.append(f"{w} / {t} / {lo}")
            body.append(row)
        out.append(f"**{label}** — wins / ties / losses of each ExFairS experiment (rows) "
                   f"against each baseline (columns) over the {n_cells} (scenario, load) "
                   "cells; a win or a loss needs the paired 95% interval over seeds to exclude "
                   "zero" + (" (lower is better)" if not HIGHER_IS_BETTER[key] else "")
                   + ".\n\n")
        out.append(md_table(["ExFairS \\ baseline", *[exp_label(b) for b in base]], body,
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
            s = (f"- Against {exp_label(b)}, {exp_label(a)} raises the worst client's "
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
    hib = HIGHER_IS_BETTER[key]
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
            row.append(f"{exp_label(vals[0][0])} ({fmt(vals[0][1], 3)}); best ExFairS rank "
                       f"{min(ranks) if ranks else '–'} of {len(vals)}")
        body.append(row)
    return md_table(head, body, "l" + "l" * len(data.loads))


def before_after(after: StudyData, before: StudyData, old: str = "the old rule",
                 new: str = "the new rule") -> str:
    """The ExFairS experiments of the study against the same experiments of the before sweep."""
    exps = [e for e in exfairs_experiments(after) if e in before.experiments()]
    if not exps:
        return "The before sweep holds no ExFairS experiment of the study.\n"
    out: list[str] = []
    body_sum = []
    for e in exps:
        row = [exp_label(e)]
        for key, _label in WTL_METRICS:
            w, t, lo, _ = wtl(after, e, e, key, before)
            row.append(f"{w} / {t} / {lo}")
        body_sum.append(row)
    n_cells = len(after.scenarios) * len(after.loads)
    out.append(f"Wins / ties / losses of {new} against {old} over the {n_cells} "
               "(scenario, load) cells (paired by seed; a win or a loss needs the 95% interval "
               "to exclude zero):\n\n")
    out.append(md_table(["experiment", *[lbl for _, lbl in WTL_METRICS]], body_sum))
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
                    scen, f"{load:g}", exp_label(e),
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
