"""Facts the study document states from the runs (identical modes, preemptions, throughput's
factors, the worst-off clients) and its per-scenario results tables."""

from __future__ import annotations

import math

import numpy as np

from exfairs.sim.study.data import EXFAIRS_POLICY, REFERENCE_POLICY, StudyData, metric
from exfairs.sim.study.markdown import exp_label, fmt, fmt_stat, md_table
from exfairs.sim.study.stats import COLUMNS, TARGET_LOAD


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
        lines.append(f"- {exp_label(gate[0])} and {exp_label(eng[0])}: identical headline "
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
            body.append([scen, exp_label(e), fmt(float(np.mean(done)), 4),
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
            + md_table(["scenario", "load", *[exp_label(e) for e in exps]], body,
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


def results_tables(data: StudyData) -> str:
    """One table per (scenario, load): every experiment's headline metrics, mean ± 95% CI."""
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
                body.append([exp_label(e), *[fmt_stat(r.stat(k), d, s)
                                              for k, _, d, s in COLUMNS]])
            seeds = sorted({len(r.seeds) for r in data.rows if r.scenario == scen})
            out.append(f"Load {load:g} (mean ± 95% CI over "
                       f"{'/'.join(str(x) for x in seeds)} seeds):\n\n")
            out.append(md_table(head, body))
            out.append("\n")
    return "".join(out)
