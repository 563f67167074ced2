"""The widened study's numbers (`exfairs.sim.study.widened_doc` writes them as the document):
per-cell means over seeds, paired differences, the best label of a set, and the issue's target
check per (regime, scenario, load), all computed from `WideData`.

Split from `exfairs.sim.study.widened_doc`, which re-exports the target check's names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from exfairs.sim.study.data import metric
from exfairs.sim.study.stats import HIGHER_IS_BETTER
from exfairs.sim.study.widened import WideData
from exfairs.summary import Stat, mean_ci95

#: The issue's target (issue 15): worst-client attainment gain over the best baseline without
#: admission, Jain over per-client attainment, goodput at least every baseline's.
TARGET_GAIN = 0.15
TARGET_JAIN = 0.95
WORST = "worst_client_attainment"
JAIN = "jain_attainment"
GOODPUT = "request_goodput"
#: Goodput "at least every baseline's": equal within this relative tolerance counts (goodput
#: is a ratio of counts and spans; identical runs give identical values, so this only absorbs
#: float noise).
GOODPUT_RTOL = 1e-9

Cell = tuple[str, str, float]  # (regime, scenario, load)


def mean_of(data: WideData, cell: Cell, label: str, key: str) -> float:
    """Mean over seeds of metric `key` (NaN when the label has no runs there)."""
    runs = data.runs.get((*cell, label), {})
    return mean_ci95([metric(r, key) for _, r in sorted(runs.items())]).mean


def paired(data: WideData, cell: Cell, a: str, b: str, key: str) -> Stat:
    """Mean and 95% CI over seeds of (a − b) in `key`, paired by seed."""
    ra = data.runs.get((*cell, a), {})
    rb = data.runs.get((*cell, b), {})
    return mean_ci95([metric(ra[s], key) - metric(rb[s], key) for s in sorted(set(ra) & set(rb))])


def best_label(data: WideData, cell: Cell, labels: Sequence[str], key: str) -> tuple[str, float]:
    """The label with the best mean of `key` (ties: the first in spec order)."""
    hib = HIGHER_IS_BETTER[key]
    best, best_v = "–", math.nan
    for lab in labels:
        v = mean_of(data, cell, lab, key)
        if math.isnan(v):
            continue
        if math.isnan(best_v) or (v > best_v if hib else v < best_v):
            best, best_v = lab, v
    return best, best_v


def variant_labels(data: WideData, *, exfairs: bool | None = None, admitted: bool | None = None,
            ablation: bool = False) -> list[str]:
    return [v.label for v in data.variants
            if v.ablation == ablation
            and (exfairs is None or v.is_exfairs == exfairs)
            and (admitted is None or v.admitted == admitted)]


@dataclass(frozen=True, slots=True)
class TargetRow:
    """The target check in one (regime, scenario, load), on means over seeds; `gain` is paired
    by seed against the best baseline without admission."""

    cell: Cell
    exfairs: str
    worst: float
    baseline: str
    baseline_worst: float
    gain: Stat
    jain: float
    goodput: float
    best_goodput: float
    best_goodput_label: str

    @property
    def gain_ok(self) -> bool:
        return self.worst - self.baseline_worst >= TARGET_GAIN

    @property
    def jain_ok(self) -> bool:
        return self.jain >= TARGET_JAIN

    @property
    def goodput_ok(self) -> bool:
        return self.goodput >= self.best_goodput * (1 - GOODPUT_RTOL)

    @property
    def ok(self) -> bool:
        return self.gain_ok and self.jain_ok and self.goodput_ok


def target_rows(data: WideData) -> list[TargetRow]:
    """One row per (regime, scenario, load): the best ExFairS variant (with or without
    admission, ablation variants excluded) against the best baseline without admission."""
    ex = variant_labels(data, exfairs=True)
    base = variant_labels(data, exfairs=False, admitted=False)
    out = []
    for cell in data.cells():
        e, ew = best_label(data, cell, ex, WORST)
        b, bw = best_label(data, cell, base, WORST)
        if e == "–" or b == "–":
            continue
        g, gv = best_label(data, cell, base, GOODPUT)
        out.append(TargetRow(cell, e, ew, b, bw, paired(data, cell, e, b, WORST),
                             mean_of(data, cell, e, JAIN), mean_of(data, cell, e, GOODPUT), gv,
                             g))
    return out
