"""Simulation processes: events cut decode runs where they must, time-windowed policies see the
same tokens at the same times on both paths, and a router over two engines is a new process
(not a rewrite of the engine)."""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any

import numpy as np
import simpy
from sim_factories import engine, profile, workload
from windowed_policy import WindowedLAS

from exfairs.policies import register_policy
from exfairs.policies.base import FloatArray, Policy
from exfairs.records import Workload
from exfairs.sim.costs import LinearStepCost
from exfairs.sim.plan import StepInfo, StepOutcome
from exfairs.sim.process import EngineProcess, SimEnvironment
from exfairs.sim.queues import FcfsWaiting, Seq, fcfs_victim
from exfairs.sim.runner import simulate
from exfairs.sim.scheduler import Scheduler

assert WindowedLAS.name == "TEST_LAS_WINDOW"


def test_windowed_policy_fast_path_equals_step_by_step_minimal_case() -> None:
    # The case of issue 13: a 30-token request decodes while ten one-token requests of two
    # clients queue behind it (max_num_seqs = 1). The window (0.05 s) slides during the decode
    # run; the policy must see the run's tokens at each step's end, as step by step.
    specs = [("a", 0.0, 4, 30)] + [("ab"[i % 2], 0.001 * (i + 1), 4, 1) for i in range(10)]
    wl = workload(specs, clients=["a", "b"])
    for exp in ("TEST_LAS_WINDOW", "QUEUE_TEST_LAS_WINDOW", "ENGINE_TEST_LAS_WINDOW"):
        fast = simulate(wl, exp, profile(), engine=engine(max_num_seqs=1))
        ref = simulate(wl, exp, profile(), engine=engine(max_num_seqs=1), step_by_step=True)
        assert fast.records == ref.records, exp
        assert fast.policy_samples == ref.policy_samples, exp
        assert fast.decision_points < ref.decision_points  # the fast path did skip steps
    # And the window matters: in gate mode the clients alternate once a's run has left it.
    ref = simulate(wl, "QUEUE_TEST_LAS_WINDOW", profile(), engine=engine(max_num_seqs=1))
    order = [r.request_id for r in sorted(ref.records, key=lambda r: r.finish_s or 0.0)]
    assert order == [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9]


WAKE_TIMES = (0.0555, 0.301, 1.0)


@register_policy("TEST_WAKER")
class Waker(Policy):
    """Asks to be woken at fixed times; records when its ranking is consulted."""

    def client_scores(self, now_s: float) -> FloatArray:
        return np.zeros(self.n_clients)

    def next_wakeup(self, now_s: float) -> float:
        return next((t for t in WAKE_TIMES if t > now_s), math.inf)


def test_wakeup_cuts_a_decode_run_at_the_first_step_end_after_it() -> None:
    wl = workload([("a", 0.0, 4, 60)])
    steps: list[StepInfo] = []
    res = simulate(wl, "TEST_WAKER", profile(fixed_ms=10.0), engine=engine(),
                   sample_every_s=100.0, observer=steps.append)
    # Steps end every 10 ms; wake-ups at 55.5 ms and 301 ms cut the run at 60 and 310 ms; the
    # one at 1 s comes after the request finished (600 ms) and adds no step.
    boundaries = [round(s.end_s, 6) for s in steps]
    assert boundaries == [0.01, 0.06, 0.31, 0.6]
    assert np.allclose(res.records[0].token_times_s, [0.01 * (i + 1) for i in range(60)])
    plain = simulate(wl, "FCFS", profile(fixed_ms=10.0), engine=engine(), sample_every_s=100.0)
    assert plain.decision_points < res.decision_points
    assert plain.records == res.records


# -- a router in front of two engines: new processes around the same engine model ------------------

class _EngineSide:
    """The `Frontend` of one engine behind the router: records what it produced."""

    def __init__(self, router: _Router) -> None:
        self.router = router
        self.finished: list[tuple[int, float]] = []

    def decide(self, now_s: float) -> None:
        pass

    def preempted(self, seqs: tuple[Seq, ...], now_s: float) -> None:
        pass

    def admitted(self, seqs: tuple[Seq, ...], now_s: float) -> None:
        pass

    def deliver(self, out: StepOutcome) -> None:
        for s in out.finished:
            s.finish_s = out.end_s
            self.finished.append((s.rid, out.end_s))

    def exhausted(self) -> bool:
        return self.router.done


class _Router:
    """Sends each arriving request to the engine with the fewest requests (running + waiting),
    the lower index on ties."""

    def __init__(self, env: SimEnvironment, wl: Workload, n_engines: int) -> None:
        self.env = env
        self.done = False
        cfg = engine(max_num_seqs=2, num_gpu_blocks=1000)
        cost = LinearStepCost(profile(fixed_ms=10.0).cost_model(cfg.max_num_batched_tokens))
        self.sides = [_EngineSide(self) for _ in range(n_engines)]
        self.scheds = [Scheduler(cfg, FcfsWaiting(), fcfs_victim) for _ in range(n_engines)]
        self.engines = [EngineProcess(env, sc, cost, side)
                        for sc, side in zip(self.scheds, self.sides, strict=True)]
        self.seqs = [Seq(r, 0) for r in wl.requests]
        self.placed: list[int] = []
        env.process(self._arrivals())

    def _arrivals(self) -> Generator[simpy.Event, Any, None]:
        for s in self.seqs:
            if s.arrival_s > self.env.now:
                yield self.env.at(s.arrival_s)
            loads = [len(sc.running) + len(sc.waiting) for sc in self.scheds]
            i = loads.index(min(loads))
            self.placed.append(i)
            self.scheds[i].waiting.push(s, self.env.now)
            self.engines[i].attention(self.env.now)
        self.done = True
        for e in self.engines:
            e.attention(self.env.now)


def _route(wl: Workload, n_engines: int) -> _Router:
    env = SimEnvironment(initial_time=0.0)
    router = _Router(env, wl, n_engines)
    env.run(until=simpy.AllOf(env, [e.process for e in router.engines]))
    return router


def test_router_over_two_engines() -> None:
    specs = [("a", 0.005 * i, 8, 5 + (i * 7) % 20) for i in range(24)]
    wl = workload(specs)
    router = _route(wl, 2)
    assert sorted(rid for side in router.sides for rid, _ in side.finished) == list(range(24))
    assert set(router.placed) == {0, 1}
    for s in router.seqs:
        assert s.gen == s.out and s.finish_s is not None and s.finish_s > s.arrival_s
    # Deterministic, and two engines finish sooner than one.
    again = _route(wl, 2)
    assert [side.finished for side in again.sides] == [side.finished for side in router.sides]
    single = _route(wl, 1)
    assert max(t for _, t in single.sides[0].finished) > max(
        t for side in router.sides for _, t in side.finished)
    # One engine behind the router is the plain simulator (FCFS, no preemption here).
    res = simulate(wl, "ENGINE_FCFS", profile(fixed_ms=10.0),
                   engine=engine(max_num_seqs=2, num_gpu_blocks=1000))
    assert sorted(single.sides[0].finished) == [(r.request_id, r.finish_s) for r in res.records]
