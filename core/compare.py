"""Two sets of runs side by side, with paired differences (`exfairs-sim compare A B`).

Runs of A and B are paired by (scenario, load factor, seed): the same workload under two
experiments, two parameter settings or two backends. Pairing removes the workload's own
variation from the comparison, so a difference that is invisible between two seed-averaged
means with wide intervals can still be clear: for each metric the table gives both means, the
mean of the paired differences B − A and its Student-t 95% interval over the pairs (none with one
pair), and a verdict (``B better`` / ``A better`` when the interval excludes 0, else ``~``).
When A and B are single runs they are paired whatever their keys.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

from exfairs.atomic import atomic_write_text
from exfairs.errors import InputError
from exfairs.results import RunResult
from exfairs.summary import SUMMARY_METRICS, SummaryMetric, mean_ci95, metric_value

#: The compared metrics: the sweep summary's, then latencies as `vllm bench serve` names them.
COMPARED_METRICS: tuple[SummaryMetric, ...] = (*SUMMARY_METRICS, *(
    SummaryMetric(key, label, False) for key, label in (
        ("mean_ttft_ms", "mean TTFT (ms)"), ("mean_tpot_ms", "mean TPOT (ms)"),
        ("p99_itl_ms", "p99 ITL (ms)"), ("mean_e2el_ms", "mean end-to-end latency (ms)"))))

_Key = tuple[str, float, int]


@dataclass(frozen=True, slots=True)
class PairedDiff:
    """One metric over `n` pairs: the means of A and B and of the differences B − A, with the
    difference's 95% CI half-width (NaN with one pair) and the verdict."""

    key: str
    label: str
    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    ci95: float
    verdict: str


@dataclass(frozen=True, slots=True)
class ClientDiff:
    """One client's SLO attainment, mean over the pairs, in A and B."""

    client: str
    attainment_a: float
    attainment_b: float


@dataclass(frozen=True, slots=True)
class Comparison:
    """A and B compared on one (scenario, load factor), over `seeds`."""

    scenario: str
    load_factor: float
    label_a: str
    label_b: str
    seeds: tuple[int, ...]
    metrics: tuple[PairedDiff, ...]
    clients: tuple[ClientDiff, ...]


def _label(runs: Sequence[RunResult]) -> str:
    names = sorted({f"{r.info.experiment} ({r.info.backend})" for r in runs})
    return ", ".join(names)


def _by_key(runs: Sequence[RunResult], side: str) -> dict[_Key, RunResult]:
    out: dict[_Key, RunResult] = {}
    for r in runs:
        key = (r.info.scenario, float(r.info.load_factor), r.info.seed)
        if key in out:
            raise InputError(
                f"side {side} has two runs of scenario {key[0]!r}, load {key[1]:g}, seed {key[2]} "
                f"({out[key].info.experiment} and {r.info.experiment}); give one experiment per "
                "side (a file, or a directory of one experiment's runs)", field=side,
                value=r.info.experiment)
        out[key] = r
    return out


def pair_runs(a: Sequence[RunResult], b: Sequence[RunResult]
              ) -> list[tuple[RunResult, RunResult]]:
    """The (A, B) pairs: single runs pair directly; otherwise by (scenario, load factor, seed).
    InputError when nothing pairs or one side repeats a key."""
    if not a or not b:
        raise InputError("no results to compare", field="A" if not a else "B", value=0)
    if len(a) == 1 and len(b) == 1:
        return [(a[0], b[0])]
    ka, kb = _by_key(a, "A"), _by_key(b, "B")
    keys = sorted(set(ka) & set(kb))
    if not keys:
        raise InputError("no run of A has the scenario, load factor and seed of a run of B",
                         field="A/B", value=None)
    return [(ka[k], kb[k]) for k in keys]


def _verdict(spec: SummaryMetric, diff: float, ci: float) -> str:
    if math.isnan(diff) or math.isnan(ci) or abs(diff) <= ci:
        return "~"
    better_b = (diff > 0) == spec.higher_is_better
    return "B better" if better_b else "A better"


def compare(a: Sequence[RunResult], b: Sequence[RunResult]) -> list[Comparison]:
    """Compare A with B (see the module docstring), one `Comparison` per (scenario, load)."""
    groups: dict[tuple[str, float], list[tuple[RunResult, RunResult]]] = {}
    for ra, rb in pair_runs(a, b):
        groups.setdefault((ra.info.scenario, float(ra.info.load_factor)), []).append((ra, rb))
    out: list[Comparison] = []
    for (scenario, load), pairs in sorted(groups.items()):
        diffs: list[PairedDiff] = []
        for spec in COMPARED_METRICS:
            va = [metric_value(x, spec.key) for x, _ in pairs]
            vb = [metric_value(y, spec.key) for _, y in pairs]
            d = mean_ci95([y - x for x, y in zip(va, vb, strict=True)])
            diffs.append(PairedDiff(
                key=spec.key, label=spec.label, n=d.n, mean_a=mean_ci95(va).mean,
                mean_b=mean_ci95(vb).mean, mean_diff=d.mean, ci95=d.ci95,
                verdict=_verdict(spec, d.mean, d.ci95)))
        names: list[str] = []
        for x, y in pairs:
            for c in (*x.clients, *y.clients):
                if c.name not in names:
                    names.append(c.name)

        def attainment(run: RunResult, name: str) -> float:
            for cm in run.metrics.per_client:
                if cm.client == name:
                    return cm.metrics.slo_attainment
            return math.nan

        clients = tuple(ClientDiff(
            client=n, attainment_a=mean_ci95([attainment(x, n) for x, _ in pairs]).mean,
            attainment_b=mean_ci95([attainment(y, n) for _, y in pairs]).mean) for n in names)
        out.append(Comparison(
            scenario=scenario, load_factor=load, label_a=_label([x for x, _ in pairs]),
            label_b=_label([y for _, y in pairs]),
            seeds=tuple(sorted({x.info.seed for x, _ in pairs})), metrics=tuple(diffs),
            clients=clients))
    return out


def _fmt(x: float) -> str:
    if math.isnan(x):
        return "-"
    return f"{x:.4g}" if abs(x) < 1e5 else f"{x:.3e}"


def format_comparison(comparisons: Sequence[Comparison]) -> str:
    """The comparisons as fixed-width text tables."""
    lines: list[str] = []
    for c in comparisons:
        lines.append(f"{c.scenario} — load {c.load_factor:g} — {len(c.seeds)} paired seed(s) "
                     f"{', '.join(map(str, c.seeds))}")
        lines.append(f"  A = {c.label_a}")
        lines.append(f"  B = {c.label_b}")
        rows = [["metric", "A", "B", "B − A", "95% CI", "verdict"]]
        for d in c.metrics:
            ci = "-" if math.isnan(d.ci95) else f"±{_fmt(d.ci95)}"
            rows.append([d.key, _fmt(d.mean_a), _fmt(d.mean_b), _fmt(d.mean_diff), ci,
                         d.verdict])
        rows.append(["", "", "", "", "", ""])
        rows.append(["SLO attainment of", "A", "B", "B − A", "", ""])
        for cl in c.clients:
            rows.append([f"  {cl.client}", _fmt(cl.attainment_a), _fmt(cl.attainment_b),
                         _fmt(cl.attainment_b - cl.attainment_a), "", ""])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            cells = [v.ljust(w) if i in (0, 5) else v.rjust(w)
                     for i, (v, w) in enumerate(zip(r, widths, strict=True))]
            lines.append(("  " + "  ".join(cells)).rstrip())
        lines.append("")
    return "\n".join(lines)


def _num(x: float) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else x


def write_comparison_json(comparisons: Sequence[Comparison], path: str | os.PathLike[str]
                          ) -> None:
    """The comparisons as JSON (null for undefined values), atomically."""
    doc = [{
        "scenario": c.scenario, "load_factor": c.load_factor, "a": c.label_a, "b": c.label_b,
        "seeds": list(c.seeds),
        "metrics": {d.key: {"n": d.n, "a": _num(d.mean_a), "b": _num(d.mean_b),
                            "diff": _num(d.mean_diff), "ci95": _num(d.ci95),
                            "verdict": d.verdict} for d in c.metrics},
        "client_attainment": {cl.client: {"a": _num(cl.attainment_a),
                                          "b": _num(cl.attainment_b)} for cl in c.clients},
    } for c in comparisons]
    atomic_write_text(path, json.dumps(doc, indent=1, allow_nan=False) + "\n")
