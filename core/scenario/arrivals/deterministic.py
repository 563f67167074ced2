"""``process = "deterministic"``: evenly spaced arrivals."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from exfairs.scenario.arrivals import register_arrival

if TYPE_CHECKING:
    from exfairs.scenario.table import ReadContext, Table


@register_arrival("deterministic")
@dataclass(frozen=True, slots=True)
class DeterministicArrivals:
    """Evenly spaced arrivals, 1/rate apart, from a random phase in [0, 1/rate) so that
    deterministic clients do not all arrive together at 0. TOML: ``{process = "deterministic"}``."""

    kind: ClassVar[str]

    @classmethod
    def from_table(cls, t: Table, ctx: ReadContext) -> DeterministicArrivals:
        return cls()

    def times(self, rng: np.random.Generator, rate_rps: float, duration_s: float) -> np.ndarray:
        """Arrival times in [0, duration_s), seconds, increasing."""
        gap = 1.0 / rate_rps
        phase = float(rng.uniform(0.0, gap))
        n = max(0, math.ceil((duration_s - phase) / gap))
        times = phase + gap * np.arange(n, dtype=np.float64)
        return times[times < duration_s]
