"""The engine loop as a SimPy process, and the clock it runs on.

`EngineProcess` repeats: a decision point (its `Frontend` takes in what is due), a plan
(`Scheduler.schedule`), and the step — or, on the fast path, the step and the identical
decode-only steps after it (`Scheduler.run_limit`), summed in closed form by the cost model. Other
processes never poll it: whatever must happen at a time (an arrival, an SLO deadline, a policy
sample or wake-up, a router's decision) is a SimPy event of its own whose callback calls
`attention(t)`; a sleeping engine wakes, and a run in progress is cut at its first step end at or
after `t` (strictly after, for ``strict=True``), where the next decision point then happens. A
step ends where it would step by step, so every path gives the same decision points wherever a
decision can change anything.

`SimEnvironment` schedules events at absolute times: the engine's clock is the running sum of step
durations, bit for bit, so the same float reaches every record on every path.
"""

from __future__ import annotations

import bisect
from collections.abc import Generator
from heapq import heappush
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import simpy
from simpy.events import NORMAL

from exfairs.sim.costs import StepCostModel
from exfairs.sim.plan import StepOutcome
from exfairs.sim.queues import Seq
from exfairs.sim.scheduler import Scheduler


class SimEnvironment(simpy.Environment):
    """A SimPy environment that can also schedule an event at an absolute time."""

    def at(self, time_s: float, value: Any = None) -> simpy.Event:
        """An event that fires at exactly `time_s` (≥ now) with `value`."""
        if time_s < self.now:
            raise ValueError(f"time {time_s} is in the past (now {self.now})")
        ev = simpy.Event(self)
        ev._ok = True
        ev._value = value
        # SimPy adds relative delays to `now`, which can round; the engine needs exact times.
        heappush(self._queue, (time_s, NORMAL, next(self._eid), ev))
        return ev


class Frontend(Protocol):
    """What surrounds one engine: it takes in arrivals, keeps the policy informed, and says when
    no more work will come."""

    def decide(self, now_s: float) -> None:
        """A decision point: take in everything due by `now_s` (before the next plan)."""
        ...

    def preempted(self, seqs: tuple[Seq, ...], now_s: float) -> None:
        """The plan made at `now_s` preempted `seqs`."""
        ...

    def admitted(self, seqs: tuple[Seq, ...], now_s: float) -> None:
        """The plan made at `now_s` admitted `seqs` from the waiting queue."""
        ...

    def deliver(self, out: StepOutcome) -> None:
        """A step, or a run of steps, ended: report its tokens, first tokens and finishes."""
        ...

    def exhausted(self) -> bool:
        """No request will ever arrive at this engine again."""
        ...


class EngineProcess:
    """One simulated engine: `scheduler` stepping on `env`, priced by `cost`.

    `fast=False` runs one step per event (the reference); otherwise decode-only stretches run as
    one event, cut by `attention`. The process ends when the engine is idle and its frontend is
    exhausted; `end_s` is that time and `decisions` the decision points it had.
    """

    def __init__(self, env: SimEnvironment, scheduler: Scheduler, cost: StepCostModel,
                 frontend: Frontend, *, fast: bool = True) -> None:
        self.env = env
        self.sched = scheduler
        self.cost = cost
        self.front = frontend
        self.fast = fast
        self.decisions = 0
        self.end_s = 0.0
        self.now_s = 0.0  # the engine's time: ahead of env.now only while no event is due
        self._idle: simpy.Event | None = None
        self._run_ends: list[float] | None = None
        self._run_start = 0.0
        self._cut = 0
        self._cutting = False
        self.process = env.process(self._loop())

    def attention(self, t: float, *, strict: bool = False) -> None:
        """Something happens at `t` (= now): a decision point must follow at the first step end
        ≥ `t` (> `t` when `strict`). Cheap when nothing needs to change."""
        idle = self._idle
        if idle is not None:
            if not idle.triggered:
                idle.succeed()
            return
        ends = self._run_ends
        if ends is None or t < self._run_start or (t == self._run_start and not strict):
            return  # the decision point at the run's start already saw it
        j = bisect.bisect_right(ends, t) if strict else bisect.bisect_left(ends, t)
        if j < self._cut:
            self._cut = j
            if not self._cutting:
                self._cutting = True
                self.process.interrupt()

    def _loop(self) -> Generator[simpy.Event, Any, None]:
        env = self.env
        sched = self.sched
        front = self.front
        cost = self.cost
        fast = self.fast
        now = env.now
        while True:
            self.now_s = now
            self.decisions += 1
            front.decide(now)
            plan = sched.schedule(now)
            if plan.preempted:
                front.preempted(plan.preempted, now)
            if plan.admitted:
                front.admitted(plan.admitted, now)
            if not plan.busy:
                if plan.preempted:
                    sched.report_idle_plan(plan, now)
                    continue  # the next step, at the same time
                if front.exhausted():
                    if not sched.idle():
                        raise RuntimeError("simulation stalled with requests left (a bug)")
                    break
                self._idle = env.event()
                yield self._idle
                self._idle = None
                now = env.now
                continue
            k = sched.run_limit(plan) if fast else 1
            if k == 1:
                end = now + cost.step_ms(plan) / 1000.0
                # Fast path: when no event is due up to the step's end, nothing can happen before
                # its decision point, so the engine goes on without a round trip through SimPy.
                if not fast or env.peek() <= end:
                    yield env.at(end)
                front.deliver(sched.apply(plan, end))
                now = end
                continue
            ends = _cumulative(now, cost.decode_run_ms(k, plan.decode_seqs, plan.decode_ctx,
                                                        first_step=plan.step))
            self._cut = k - 1
            if env.peek() <= ends[-1]:
                self._run_ends = ends
                self._run_start = now
                self._cutting = False
                try:
                    yield env.at(ends[-1])
                except simpy.Interrupt:
                    yield env.at(ends[self._cut])
                self._run_ends = None
            ends = ends[:self._cut + 1]
            front.deliver(sched.apply_run(plan, ends))
            now = ends[-1]
        self.end_s = now

def _cumulative(start_s: float, durations_ms: npt.NDArray[np.float64]) -> list[float]:
    """Step end times from `start_s`: the same sequential float sums as adding one step at a
    time (``end = end + ms / 1000``)."""
    seq = np.empty(len(durations_ms) + 1)
    seq[0] = start_s
    seq[1:] = durations_ms / 1000.0
    out: list[float] = np.cumsum(seq)[1:].tolist()
    return out
