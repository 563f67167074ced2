"""Priority mode with ``hook_order="stream"`` (the live driver's order): the driver fixes a
request's priority when it hears the arrival — mid-step, before the step's outputs, with the
deadlines resolved at their own times — and the engine sees the request at the next
``schedule()`` (or after ``submit_latency_s``). Found replaying cpu-val-burst seed 1 ExFairS
(benchmarks/results/validation/replay.md): arrivals during a 0.56 s prefill step all got their
priority at the step's end in the simulator, in another order than live."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
from sim_factories import engine, profile, workload

from exfairs.errors import InputError
from exfairs.policies import register_policy
from exfairs.policies.base import FloatArray, Policy
from exfairs.records import SLO, Request
from exfairs.sim.runner import simulate


@register_policy("SIMTEST_PRIO_PROBE")
class PrioProbe(Policy):
    """Priority = tokens served so far; records when each hook came (last instance kept)."""

    last: ClassVar[PrioProbe | None] = None

    def __init__(self) -> None:
        super().__init__()
        self.served = 0
        self.calls: list[tuple[str, int, float]] = []
        PrioProbe.last = self

    def on_service(self, client: str, prefill_tokens: int, decode_tokens: int,
                   now_s: float) -> None:
        self.served += prefill_tokens + decode_tokens

    def submission_priority(self, request: Request, now_s: float) -> int:
        self.calls.append(("priority", self.served, now_s))
        return self.served

    def on_violation(self, request: Request, now_s: float) -> None:
        self.calls.append(("violation", request.request_id, now_s))

    def client_scores(self, now_s: float) -> FloatArray:
        return np.zeros(self.n_clients)


# Request 0 prefills 400 tokens in one 410 ms step (10 ms + 1 ms per token); request 1 arrives
# at 0.1 s, during it; its TTFT SLO (50 ms) passes at 0.15 s, still during it.
SPECS = [("a", 0.0, 400, 3), ("a", 0.1, 8, 2)]
COSTS = dict(fixed_ms=10.0, prefill_token_ms=1.0)


def _run(order: str, *, step_by_step: bool = True, **kw: object) -> tuple[object, PrioProbe]:
    wl = workload(SPECS, clients=["a"], slo=SLO(ttft_s=0.05))
    res = simulate(wl, "SIMTEST_PRIO_PROBE", profile(**COSTS),  # type: ignore[arg-type]
                   engine=engine(hook_order=order), step_by_step=step_by_step, **kw)
    probe = PrioProbe.last
    assert probe is not None
    return res, probe


@pytest.mark.parametrize("step_by_step", [True, False])
def test_an_arrival_mid_step_is_heard_at_its_time_before_the_steps_outputs(
        step_by_step: bool) -> None:
    res, probe = _run("stream", step_by_step=step_by_step)
    first, second = [c for c in probe.calls if c[0] == "priority"]
    assert first == ("priority", 0, 0.0)
    # Heard at 0.1 s, before request 0's prefill was credited (at its first token, 0.41 s).
    assert second == ("priority", 0, 0.1)
    assert ("violation", 1, 0.1 + 0.05) in probe.calls  # the driver wakes at the deadline
    rec = {r.request_id: r for r in res.records}  # type: ignore[attr-defined]
    assert rec[1].dispatch_s == 0.1
    assert rec[1].first_token_s is not None and rec[1].first_token_s > 0.41  # the next step


def test_the_step_order_hears_it_at_the_step_end() -> None:
    # The behaviour before: at the decision point after the step, request 0's prompt and first
    # token credited by then.
    _res, probe = _run("step")
    assert [c for c in probe.calls if c[0] == "priority"][1] == ("priority", 401, 0.41)
    # Heard after its deadline: resolved at the next decision point (request 1's first token).
    assert ("violation", 1, pytest.approx(0.41 + 0.018)) in probe.calls


def test_a_submission_reaches_the_engine_after_its_own_latency() -> None:
    # Heard at 0.1 s; seen by the engine 0.35 s later, after the step that ends at 0.41 s.
    res, _probe = _run("stream", submit_latencies={1: 0.35})
    rec = {r.request_id: r for r in res.records}  # type: ignore[attr-defined]
    assert rec[1].dispatch_s == 0.1
    # Request 0 is done at 0.43 s (two 10 ms decode steps); the idle engine starts request 1's
    # 18 ms prefill when it sees it, at 0.45 s.
    assert rec[1].first_token_s == pytest.approx(0.45 + 0.018)


def test_seen_times_move_when_a_request_is_seen_not_its_deadlines() -> None:
    res, probe = _run("stream", seen_s={1: 0.12})
    assert [c for c in probe.calls if c[0] == "priority"][1] == ("priority", 0, 0.12)
    assert ("violation", 1, 0.1 + 0.05) in probe.calls  # deadline from the arrival, 0.1 s
    rec = {r.request_id: r for r in res.records}  # type: ignore[attr-defined]
    assert rec[1].arrival_s == 0.1 and rec[1].dispatch_s == 0.12


@pytest.mark.parametrize("seen", [{1: 0.05}, {0: 0.2}, {1: float("nan")}])
def test_seen_times_before_the_arrival_or_out_of_order_are_refused(
        seen: dict[int, float]) -> None:
    with pytest.raises(InputError, match="seen_s"):
        _run("stream", seen_s=seen)
