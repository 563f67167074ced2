"""``process = "trace"``: replay a trace's arrival pattern at the client's rate."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from exfairs.errors import ConfigError
from exfairs.scenario.arrivals import register_arrival
from exfairs.scenario.checks import check_int

if TYPE_CHECKING:
    from exfairs.scenario.table import ReadContext, Table


@register_arrival("trace")
@dataclass(frozen=True, slots=True)
class TraceArrivals:
    """Replays a trace's arrival times from row `start_row` (by arrival), keeping their pattern
    (bursts, lulls) but time-scaled so that exactly round(rate × duration_s) arrivals fall in the
    horizon: the client's mean rate over the horizon is its rate. A trace with fewer rows than
    that repeats, one mean gap after its last arrival. `offsets_s` (seconds since `start_row`'s
    arrival) is read when the scenario is loaded. The replay draws nothing random.
    TOML: ``{process = "trace", trace = NAME, start_row = 0}`` plus the trace's column keys."""

    kind: ClassVar[str]
    trace: str
    offsets_s: tuple[float, ...] = field(repr=False)
    start_row: int = 0

    def __post_init__(self) -> None:
        check_int("start_row", self.start_row, 0, 10**9)
        if len(self.offsets_s) < 2 or self.offsets_s[-1] <= 0:
            raise ConfigError("a replayed trace needs at least two distinct arrival times",
                              field="trace", value=self.trace)

    @classmethod
    def from_table(cls, t: Table, ctx: ReadContext) -> TraceArrivals:
        start = t.integer("start_row", 0)
        trace = ctx.trace(t)
        if len(trace) < 2:
            raise t.error("trace", f"{trace.source} has {len(trace)} request(s); a replay needs "
                          "at least two arrivals", t.data["trace"])
        if not isinstance(start, int) or start < 0 or start >= len(trace) - 1:
            raise t.error("start_row", f"must be in [0, {len(trace) - 2}] for the trace "
                          f"{trace.source}", start)
        offs = trace.arrival_s[start:] - trace.arrival_s[start]
        return t.build(cls, trace=t.data["trace"], offsets_s=tuple(float(x) for x in offs),
                       start_row=start)

    def _native(self, k: np.ndarray) -> np.ndarray:
        # Native time of the k-th arrival of the trace repeated end to end.
        base = np.asarray(self.offsets_s, dtype=np.float64)
        n = base.shape[0]
        period = base[-1] * n / (n - 1)  # span plus one mean gap
        return np.asarray(base[k % n] + (k // n) * period, dtype=np.float64)

    def times(self, rng: np.random.Generator, rate_rps: float, duration_s: float) -> np.ndarray:
        """Arrival times in [0, duration_s), seconds, increasing."""
        count = round(rate_rps * duration_s)
        if count < 1:
            return np.empty(0)
        k = np.arange(count + 1, dtype=np.int64)
        native = self._native(k)
        # Arrival number `count` lands exactly on the horizon, so `count` arrivals lie before it.
        times = native * (duration_s / native[-1])
        head = np.asarray(times[:count], dtype=np.float64)
        return head[head < duration_s]
