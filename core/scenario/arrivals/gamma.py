"""``process = "gamma"``: gamma inter-arrival gaps with a given CV² (`cv2`)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from exfairs.scenario.arrivals import register_arrival
from exfairs.scenario.arrivals._renewal import renewal_times
from exfairs.scenario.checks import MAX_CV2, check_range

if TYPE_CHECKING:
    from exfairs.scenario.table import ReadContext, Table

_log = logging.getLogger(__name__)


@register_arrival("gamma")
@dataclass(frozen=True, slots=True)
class GammaArrivals:
    """Gamma inter-arrival gaps with squared coefficient of variation `cv2` (1 = Poisson, > 1
    burstier, < 1 more regular): shape 1/cv2, scale cv2/rate.

    TOML: ``{process = "gamma", cv2 = X}``, or ``{process = "gamma", shape = K}`` with the gamma
    shape K = 1/cv2, which is what ``vllm bench serve --burstiness`` takes (its burstiness 0.25 is
    cv2 = 4). The old key ``burstiness`` is still read, as CV² (its meaning here before), with a
    warning naming `cv2`: it is the inverse of vllm's burstiness.
    """

    kind: ClassVar[str]
    cv2: float

    def __post_init__(self) -> None:
        check_range("cv2", self.cv2, 1.0 / MAX_CV2, MAX_CV2)

    @classmethod
    def from_table(cls, t: Table, ctx: ReadContext) -> GammaArrivals:
        given = [k for k in ("cv2", "shape", "burstiness") if t.has(k)]
        if len(given) != 1:
            raise t.error("cv2", "a gamma process needs exactly one of cv2 (CV² of the gaps) "
                          "or shape (the gamma shape 1/cv2, vllm bench serve's burstiness)",
                          {k: t.data[k] for k in given} or None)
        key = given[0]
        v = float(t.number(key))
        if key == "burstiness":
            _log.warning("%s: %s: 'burstiness' is deprecated: it is read as CV², the inverse of "
                         "vllm bench serve's burstiness; write cv2 = %g (or shape = %g)",
                         t.source, t.field(key), v, 1.0 / v if v > 0 else math.inf)
        if key == "shape":
            if not 1.0 / MAX_CV2 <= v <= MAX_CV2:
                raise t.error(key, f"must be a finite number in [{1.0 / MAX_CV2:g}, "
                              f"{MAX_CV2:g}]", v)
            return t.build(cls, cv2=1.0 / v)
        return t.build(cls, cv2=v)

    def times(self, rng: np.random.Generator, rate_rps: float, duration_s: float) -> np.ndarray:
        """Arrival times in [0, duration_s), seconds, increasing."""
        k = 1.0 / self.cv2
        theta = self.cv2 / rate_rps
        return renewal_times(rng, duration_s, rate_rps * duration_s,
                             lambda n: rng.gamma(k, theta, size=n))
