"""Replay: step durations taken from a recorded run instead of a cost model (issue 12).

`ReplayStepCost` makes simulated step k end where recorded step k ended (on the run clock), so
the simulated engine keeps the recorded engine's clock at every step boundary and any remaining
difference between the two runs comes from the scheduler model, not from step costs. It needs the
engine's current time, which `simulate` hands it through `bind_clock` (`ClockedStepCost`), and it
prices steps one at a time: run it with ``simulate(..., step_by_step=True)``.
`exfairs.live.replay` builds it from a live run's step log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from exfairs.sim.plan import StepPlan

#: Shortest step a replay prices (ms): a simulated step that starts after its recorded end
#: (the simulator ran behind) still takes some time, so the clock keeps moving forward.
MIN_STEP_MS = 1e-3


@runtime_checkable
class ClockedStepCost(Protocol):
    """A step-cost model that needs the engine's current time (seconds)."""

    def bind_clock(self, now_s: Callable[[], float]) -> None:
        """Receive the function giving the engine's time at the start of each step."""
        ...


class ReplayStepCost:
    """Simulated step k ends at `ends_s[k]` (run-clock seconds): its duration is that end minus
    the engine's time when the step starts (at least `MIN_STEP_MS`). Steps beyond the record
    take `fallback_ms`. `calls` counts the steps priced so far."""

    def __init__(self, ends_s: Sequence[float], fallback_ms: float) -> None:
        if not fallback_ms > 0:
            raise ValueError(f"fallback_ms must be > 0, got {fallback_ms}")
        self.ends_s = [float(x) for x in ends_s]
        self.fallback_ms = float(fallback_ms)
        self.calls = 0
        self._now: Callable[[], float] | None = None

    def bind_clock(self, now_s: Callable[[], float]) -> None:
        self._now = now_s

    def step_ms(self, plan: StepPlan) -> float:
        if self._now is None:
            raise RuntimeError("ReplayStepCost needs the engine clock (bind_clock); "
                               "use it through simulate()")
        k = self.calls
        self.calls += 1
        if k >= len(self.ends_s):
            return self.fallback_ms
        return max(MIN_STEP_MS, (self.ends_s[k] - self._now()) * 1000.0)

    def decode_run_ms(self, n_steps: int, decode_seqs: int, decode_ctx: int,
                      first_step: int = 0) -> npt.NDArray[np.float64]:
        raise NotImplementedError("a replay prices one step at a time: simulate it with "
                                  "step_by_step=True")
