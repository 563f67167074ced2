"""The widened study's document (docs/results-widened.md): the issue's target check per
(regime, scenario, load), admission's gain against the order's, where each policy wins and
loses, and the ExFairS score revisit — every number computed from `WideData`
(`exfairs.sim.study.widened_stats`), paired by seed (`exfairs.sim.study.stats.verdict`: a win
or a loss needs the paired 95% interval to exclude zero). Deterministic: the same data give the
same document, byte for byte."""

from __future__ import annotations

import math
from collections.abc import Sequence

from exfairs import __version__
from exfairs.sim.study.markdown import exp_label, fmt, fmt_diff, md_table
from exfairs.sim.study.stats import HIGHER_IS_BETTER, verdict
from exfairs.sim.study.widened import Variant, WideData
from exfairs.sim.study.widened_stats import (
    GOODPUT,
    JAIN,
    TARGET_GAIN,
    TARGET_JAIN,
    WORST,
    Cell,
    TargetRow,
    best_label,
    mean_of,
    paired,
    target_rows,
    variant_labels,
)
from exfairs.summary import Stat

# Re-exported: the numbers moved to `widened_stats`; callers import the target check here.
__all__ = [
    "GOODPUT",
    "JAIN",
    "TARGET_GAIN",
    "TARGET_JAIN",
    "WORST",
    "Cell",
    "TargetRow",
    "admission_section",
    "best_section",
    "build_widened_document",
    "mean_of",
    "paired",
    "results_section",
    "revisit_section",
    "target_rows",
    "target_section",
    "wins_losses_section",
]


def _yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


def target_section(data: WideData, rows: Sequence[TargetRow]) -> str:
    spec = data.spec
    head = ["regime", "scenario", "load", "best ExFairS variant", "worst", "best baseline "
            "without admission", "worst", "Δ worst (paired)", "+0.15", "Jain", "≥ 0.95",
            "goodput vs best baseline", "≥", "met"]
    body = []
    for r in rows:
        reg, scen, load = r.cell
        body.append([reg, _scen(data, scen), f"{load:g}", exp_label(r.exfairs), fmt(r.worst, 3),
                     exp_label(r.baseline), fmt(r.baseline_worst, 3), fmt_diff(r.gain, 3),
                     _yes(r.gain_ok), fmt(r.jain, 3), _yes(r.jain_ok),
                     f"{fmt(r.goodput, 3)} vs {fmt(r.best_goodput, 3)} "
                     f"({exp_label(r.best_goodput_label)})", _yes(r.goodput_ok), _yes(r.ok)])
    tgt = [r for r in rows if r.cell[0] == spec.target_regime and r.cell[2] in spec.target_loads]
    lines = [f"The issue's target is checked where it is set — regime `{spec.target_regime}`, "
             f"loads {', '.join(f'{x:g}' for x in spec.target_loads)} — and, for comparison, in "
             "every other cell: the best ExFairS variant (by mean worst-client attainment, with "
             "or without admission; ablation variants excluded) raises the worst client's SLO "
             f"attainment by ≥ {TARGET_GAIN:g} over the best baseline *without* admission, keeps "
             f"Jain over per-client attainment ≥ {TARGET_JAIN:g}, and has goodput (requests/s "
             "meeting every SLO) at least every baseline's without admission. Means over seeds; "
             "Δ is paired by seed (± 95% CI).\n\n"]
    n_ok = sum(r.ok for r in tgt)
    if tgt:
        lines.append(f"**Where the target is set, it is met in {n_ok} of {len(tgt)} cells.**")
    else:
        lines.append("**This run has no cell where the target is set** (its regime or loads "
                     "were not run).")
    miss = [r for r in tgt if not r.ok]
    if miss:
        parts = []
        for r in miss:
            why = [w for w, ok in (("gain", r.gain_ok), ("Jain", r.jain_ok),
                                   ("goodput", r.goodput_ok)) if not ok]
            parts.append(f"{_scen(data, r.cell[1])} at load {r.cell[2]:g} (misses on "
                         f"{' and '.join(why)}: Δ {fmt(r.worst - r.baseline_worst, 3)}, Jain "
                         f"{fmt(r.jain, 3)}, goodput {fmt(r.goodput, 3)} vs "
                         f"{fmt(r.best_goodput, 3)})")
        lines.append(" Misses: " + "; ".join(parts) + ".")
    for reg in data.regimes:
        rr = [r for r in rows if r.cell[0] == reg]
        lines.append(f" In regime `{reg}` over all loads: {sum(r.ok for r in rr)} of {len(rr)}.")
    lines.append("\n\n")
    return "".join(lines) + md_table(head, body, "llrlrlrrlrllll")


def _scen(data: WideData, scen: str) -> str:
    return f"{scen} (held out)" if scen in data.spec.held_out else scen


def admission_section(data: WideData) -> str:
    """Admission's gain (each policy with admission against itself without) and the order's
    gain under the same admission (ExFairS with admission against the best other policy with
    it), per regime and load, counted over scenarios."""
    adm = [v for v in data.variants if v.admitted and not v.ablation]
    plain = {v.experiment: v.label for v in data.variants if not v.admitted and not v.ablation}
    pairs = [(v.label, plain[v.experiment]) for v in adm if v.experiment in plain]
    ex_adm = [v.label for v in adm if v.is_exfairs]
    other_adm = [v.label for v in adm if not v.is_exfairs]
    head = ["regime", "load", "admission's gain: mean Δ worst (with − without, same policy)",
            "wins / ties / losses", "order's gain: ExFairS − best other policy, same admission",
            "wins / ties / losses"]
    body = []
    for reg in data.regimes:
        for load in data.loads:
            cells = [(reg, s, load) for s in data.scenarios]
            d_adm = [paired(data, c, a, b, WORST) for c in cells for a, b in pairs]
            w_adm = _wtl(d_adm, True)
            d_ord = []
            for c in cells:
                if not ex_adm or not other_adm:
                    continue
                e, _ = best_label(data, c, ex_adm, WORST)
                o, _ = best_label(data, c, other_adm, WORST)
                d_ord.append(paired(data, c, e, o, WORST))
            w_ord = _wtl(d_ord, True)
            body.append([reg, f"{load:g}", _mean_str(d_adm), w_adm, _mean_str(d_ord), w_ord])
    return ("Two questions, on worst-client attainment: how much does admission add to a fixed "
            "order (each policy run with admission against itself without, over "
            f"{len(pairs)} policies × {len(data.scenarios)} scenarios per row), and how much does "
            "the order add under the same admission (the best ExFairS variant with admission "
            "against the best other policy with it, one comparison per scenario)? Means of the "
            "paired differences; a win or loss needs the paired 95% interval over seeds to "
            "exclude zero.\n\n" + md_table(head, body, "lrrlrl"))


def _wtl(diffs: Sequence[Stat], higher: bool) -> str:
    v = [verdict(d, higher) for d in diffs]
    return f"{v.count('win')} / {v.count('tie')} / {v.count('loss')}"


def _mean_str(diffs: Sequence[Stat]) -> str:
    """The mean of the differences' means, signed ('–' when none is defined)."""
    m = [d.mean for d in diffs if not math.isnan(d.mean)]
    return fmt_diff(Stat(sum(m) / len(m), math.nan, len(m)), 3) if m else "–"


def _group(cells: Sequence[Cell]) -> str:
    """Cells in words, grouped by regime and load ('own at 1.0: exfairs-1, exfairs-2')."""
    by: dict[tuple[str, float], list[str]] = {}
    for reg, scen, load in cells:
        by.setdefault((reg, load), []).append(scen)
    return "; ".join(f"{reg} at {load:g}: {', '.join(s)}" for (reg, load), s in by.items())


def wins_losses_section(data: WideData) -> str:
    """Per main variant, generated plain words: in how many cells it is among the best on
    worst-client attainment (not clearly behind the best-mean experiment, paired) and on
    goodput, and where it is clearly behind."""
    labels = [v.label for v in data.main_variants()]
    lines = []
    n = len(data.cells())
    spread_lines = []
    plain = variant_labels(data, admitted=False)
    for reg in data.regimes:
        for load in data.loads:
            spreads = []
            for scen in data.scenarios:
                vals = [mean_of(data, (reg, scen, load), lab, WORST) for lab in plain]
                vals = [x for x in vals if not math.isnan(x)]
                if vals:
                    spreads.append(max(vals) - min(vals))
            if spreads:
                spread_lines.append([reg, f"{load:g}", fmt(min(spreads), 3),
                                     fmt(sum(spreads) / len(spreads), 3), fmt(max(spreads), 3)])
    for lab in labels:
        among: dict[str, list[Cell]] = {WORST: [], GOODPUT: []}
        behind: dict[str, list[Cell]] = {WORST: [], GOODPUT: []}
        for cell in data.cells():
            for key in (WORST, GOODPUT):
                best, _ = best_label(data, cell, labels, key)
                if best == "–" or not data.runs.get((*cell, lab)):
                    continue
                if best == lab:
                    among[key].append(cell)
                    continue
                d = paired(data, cell, lab, best, key)
                (behind if verdict(d, HIGHER_IS_BETTER[key]) == "loss" else among)[key].append(
                    cell)
        s = (f"- {exp_label(lab)}: among the best on worst-client attainment in "
             f"{len(among[WORST])} of {n} cells")
        s += _by_regime(data, among[WORST])
        if behind[WORST]:
            worst_gap = min(
                ((c, paired(data, c, lab, best_label(data, c, labels, WORST)[0], WORST))
                 for c in behind[WORST]), key=lambda t: t[1].mean)
            s += (f"; clearly behind the best in {len(behind[WORST])} (furthest in "
                  f"{worst_gap[0][1]}, {worst_gap[0][0]} at load {worst_gap[0][2]:g}: "
                  f"{fmt_diff(worst_gap[1], 3)})")
        s += (f". On goodput it is among the best in {len(among[GOODPUT])} cells and clearly "
              f"behind in {len(behind[GOODPUT])}.")
        lines.append(s)
    return ("Per regime and load, the spread of worst-client attainment among the experiments "
            "*without* admission (max − min of their means, over the scenarios: least, mean and "
            "largest spread). A small spread means ordering alone cannot matter there.\n\n"
            + md_table(["regime", "load", "least", "mean", "largest"], spread_lines, "lrrrr")
            + "\nPer experiment, over all (regime, scenario, load) cells, against the "
            "experiment with the best mean in each cell (paired by seed; \"among the best\" = "
            "the best, or not clearly behind it):\n\n" + "\n".join(lines) + "\n")


def best_section(data: WideData) -> str:
    """Per (regime, scenario) and load: the experiment with the best mean worst-client
    attainment, with and without admission."""
    head = ["regime", "scenario", *[f"load {x:g}" for x in data.loads]]
    body = []
    plain = variant_labels(data, admitted=False)
    admitted = variant_labels(data, admitted=True)
    for reg in data.regimes:
        for scen in data.scenarios:
            row = [reg, _scen(data, scen)]
            for load in data.loads:
                cell = (reg, scen, load)
                b, bv = best_label(data, cell, plain, WORST)
                a, av = best_label(data, cell, admitted, WORST)
                txt = f"{exp_label(b)} {fmt(bv, 3)}" if b != "–" else "–"
                if a != "–":
                    txt += f"; with admission {exp_label(a.split(' + ')[0])} {fmt(av, 3)}"
                row.append(txt)
            body.append(row)
    return ("Best mean worst-client attainment per cell, without admission and with it "
            "(the experiment name; with admission it runs "
            + ", ".join(sorted({data.variant(x).label.split(' + ')[1] for x in admitted}))
            + "):\n\n" + md_table(head, body, "ll" + "l" * len(data.loads)))


def _by_regime(data: WideData, cells: Sequence[Cell]) -> str:
    per = {reg: sum(1 for c in cells if c[0] == reg) for reg in data.regimes}
    tot = len(data.scenarios) * len(data.loads)
    return " (" + ", ".join(f"{reg} {k} of {tot}" for reg, k in per.items()) + ")"


def revisit_section(data: WideData) -> str:
    """Each ablation variant against the default ExFairS of the same arm, over every cell and
    over the held-out scenarios alone."""
    abl = [v for v in data.variants if v.ablation]
    if not abl:
        return "No ablation variants in the spec.\n"
    keys = ((WORST, "worst-client att."), (JAIN, "Jain (att.)"), (GOODPUT, "goodput"),
            ("violation_rate", "violation rate"))
    head = ["variant", "against", *[f"{lbl}: W / T / L, mean Δ" for _, lbl in keys],
            "held out: worst W / T / L"]
    body = []
    verdict_lines = []
    for v in abl:
        base = _default_of(data, v)
        if base is None:
            continue
        row = [exp_label(v.label), exp_label(base)]
        counts = {}
        for key, _ in keys:
            diffs = [paired(data, c, v.label, base, key) for c in data.cells()]
            row.append(f"{_wtl(diffs, HIGHER_IS_BETTER[key])}, {_mean_str(diffs)}")
            counts[key] = [verdict(d, HIGHER_IS_BETTER[key]) for d in diffs]
        held = [paired(data, c, v.label, base, WORST) for c in data.cells()
                if c[1] in data.spec.held_out]
        row.append(_wtl(held, True))
        body.append(row)
        w, lo = counts[WORST].count("win"), counts[WORST].count("loss")
        gw, gl = counts[GOODPUT].count("win"), counts[GOODPUT].count("loss")
        word = ("better than the default more often than worse" if w > lo and gw >= gl
                else "worse than the default more often than better" if lo > w
                else "not better than the default overall")
        verdict_lines.append(f"- {exp_label(v.label)} is {word} on worst-client attainment "
                             f"({w} wins, {lo} losses of {len(counts[WORST])} cells; goodput "
                             f"{gw} wins, {gl} losses).")
    return ("Each variant changes one ExFairS parameter from its default and runs with the same "
            "admission as the default it is compared with, in every (regime, scenario, load) "
            "cell; W / T / L = cells where the variant's paired 95% interval is better / "
            "includes zero / is worse; mean Δ = variant − default averaged over cells.\n\n"
            + md_table(head, body, "ll" + "r" * (len(head) - 2)) + "\n"
            + "\n".join(verdict_lines) + "\n")


def _default_of(data: WideData, v: Variant) -> str | None:
    for u in data.variants:
        if (not u.ablation and u.experiment == v.experiment and u.admitted == v.admitted
                and v.label.startswith(u.label + " [")):
            return u.label
    return None


def results_section(data: WideData) -> str:
    """Per (regime, scenario): every main variant's worst-client attainment and goodput at
    each load (means over seeds), and rejected requests per run at the highest load."""
    out = []
    top = max(data.loads)
    for reg in data.regimes:
        for scen in data.scenarios:
            head = ["experiment", *[f"worst @{x:g}" for x in data.loads],
                    *[f"goodput @{x:g}" for x in data.loads], f"rejected @{top:g}"]
            body = []
            for v in data.main_variants():
                cells = [(reg, scen, x) for x in data.loads]
                if not any(data.runs.get((*c, v.label)) for c in cells):
                    continue
                body.append([exp_label(v.label),
                             *[fmt(mean_of(data, c, v.label, WORST), 3) for c in cells],
                             *[fmt(mean_of(data, c, v.label, GOODPUT), 2) for c in cells],
                             fmt(mean_of(data, (reg, scen, top), v.label, "rejected"), 1)])
            out.append(f"### {_scen(data, scen)}, regime `{reg}`\n\n"
                       + md_table(head, body) + "\n")
    return "".join(out)


def build_widened_document(data: WideData, *, command: str, explanation: str = "") -> str:
    """The whole document (deterministic)."""
    spec = data.spec
    rows = target_rows(data)
    regimes = "; ".join(f"`{r}`: " + (", ".join(f"`{k} = {v}`" for k, v in kn)
                                      or "the profile's own knobs") for r, kn in spec.regimes)
    arms = "; ".join(f"`{a.name}` ({a.admission.label if a.admission.active else 'no admission'}:"
                     f" {', '.join(exp_label(e) for e in a.experiments)})" for a in spec.arms)
    abls = "; ".join(f"`{a.name}` ({', '.join(f'{k} = {v}' for k, v in a.params)})"
                     for a in spec.ablations) or "none"
    parts = [
        "# ExFairS widened study (issue 15): results\n\n",
        "<!-- Generated by studies/run_widened.py from the results files; do not edit by hand: "
        "rerun the command below. -->\n\n",
        f"Reproduce ({spec.n_cells()} simulations):\n\n```\n{command}\n```\n\n",
        f"Package version {__version__}; spec `{spec.name}`"
        + (f" ({spec.description.rstrip('.')})" if spec.description else "") + "; profile "
        f"`{spec.profile}`; regimes {regimes}; scenarios "
        f"{', '.join(_scen(data, s) for s in data.scenarios)}; load factors "
        f"{', '.join(f'{x:g}' for x in spec.load_factors)}; seeds "
        f"{', '.join(str(s) for s in spec.seeds)}; arms {arms}; ablation variants {abls}. "
        "Metrics follow docs/design.md §7; a rejected request counts as a violation. The "
        "companion study with the capped sequence limit only and the modes' details is "
        "[results.md](results.md).\n\n",
    ]
    if explanation.strip():
        parts.append("## How to read it\n\n" + explanation.strip() + "\n\n")
    parts += [
        "## Target check\n\n", target_section(data, rows), "\n",
        "## Admission's gain and the order's\n\n", admission_section(data), "\n",
        "## Where each policy wins and loses\n\n", wins_losses_section(data), "\n",
        best_section(data) if variant_labels(data, admitted=True) else "", "\n",
        "## ExFairS score revisit\n\n", revisit_section(data), "\n",
        "## Results per scenario and regime\n\n",
        "Means over seeds: worst-client SLO attainment and goodput (requests/s meeting every "
        "SLO) at each load, and rejected requests per run (counted as violations).\n\n",
        results_section(data),
    ]
    return "".join(parts).rstrip() + "\n"
