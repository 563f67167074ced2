"""``process = "poisson"``: exponential inter-arrival gaps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from exfairs.scenario.arrivals import register_arrival
from exfairs.scenario.arrivals._renewal import renewal_times

if TYPE_CHECKING:
    from exfairs.scenario.table import ReadContext, Table


@register_arrival("poisson")
@dataclass(frozen=True, slots=True)
class PoissonArrivals:
    """Exponential inter-arrival gaps (a Poisson process). TOML: ``{process = "poisson"}``."""

    kind: ClassVar[str]

    @classmethod
    def from_table(cls, t: Table, ctx: ReadContext) -> PoissonArrivals:
        return cls()

    def times(self, rng: np.random.Generator, rate_rps: float, duration_s: float) -> np.ndarray:
        """Arrival times in [0, duration_s), seconds, increasing."""
        return renewal_times(rng, duration_s, rate_rps * duration_s,
                             lambda n: rng.exponential(1.0 / rate_rps, size=n))
