"""EngineConfig.hook_order: the order of a gate policy's hooks in a step that finishes requests.

Two requests finish in the same step and three wait at the gate. With "step" (default) the
policy hears the whole step's tokens, then both finishes, then releases; with "stream" (the live
driver's order) it hears request by request in running-list order and releases at each finish,
so the first release is decided before the second request's last token is counted."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_factories import engine, profile, workload

from exfairs.errors import ConfigError
from exfairs.policies import register_policy
from exfairs.policies.base import FloatArray, Policy
from exfairs.records import Request
from exfairs.sim.runner import simulate


@register_policy("SIMTEST_LEAST_SERVED")
class LeastServed(Policy):
    """The client with the least weighted service (prefill + 2 × decode tokens) goes first;
    records its hooks (the last instance is kept for the test)."""

    last: ClassVar[LeastServed | None] = None

    def __init__(self) -> None:
        super().__init__()
        self.served: dict[str, float] = {}
        self.calls: list[tuple[str, object]] = []
        LeastServed.last = self

    def on_service(self, client: str, prefill_tokens: int, decode_tokens: int,
                   now_s: float) -> None:
        self.served[client] = self.served.get(client, 0.0) + prefill_tokens + 2 * decode_tokens
        self.calls.append(("service", client))

    def on_dispatch(self, request: Request, now_s: float) -> None:
        self.calls.append(("dispatch", request.request_id))

    def on_finish(self, request: Request, now_s: float, slo_met: bool) -> None:
        self.calls.append(("finish", request.request_id))

    def client_scores(self, now_s: float) -> FloatArray:
        return np.array([self.served.get(c, 0.0) for c in self.client_names], dtype=float)


# id 0 (a) and id 1 (b) are released at t = 0, prefill in step 0 (a: 1 token, b: 2) and finish
# together in step 1 (10–20 ms); ids 2, 3 (a) and 4 (b) arrive during step 0 and wait (gate of 2).
# Service before step 1: a = 1 + 2 = 3, b = 2 + 2 = 4.
SPECS = [("a", 0.0, 1, 2), ("b", 0.0, 2, 2), ("a", 0.001, 1, 1), ("a", 0.002, 1, 1),
         ("b", 0.003, 1, 1)]


def _run(order: str, *, step_by_step: bool = True) -> tuple[dict[int, float], LeastServed]:
    res = simulate(workload(SPECS, clients=["a", "b"]), "QUEUE_SIMTEST_LEAST_SERVED",
                   profile(fixed_ms=10.0), engine=engine(hook_order=order), max_inflight=2,
                   step_by_step=step_by_step)
    pol = LeastServed.last
    assert pol is not None
    return {r.request_id: r.dispatch_s for r in res.records if r.dispatch_s is not None}, pol


def test_stream_order_releases_at_each_finish_before_the_next_stream() -> None:
    dispatched, pol = _run("stream")
    # Step 1 as live: 0's token (a = 5), 0 finishes -> release the least served: b (4) -> id 4;
    # then 1's token (b = 6), 1 finishes -> a (5) -> id 2. Id 3 waits for the next finish.
    assert dispatched[4] == dispatched[2] == pytest.approx(0.02)
    assert dispatched[3] > 0.02
    i = pol.calls.index(("finish", 0))
    assert pol.calls[i - 1:i + 5] == [("service", "a"), ("finish", 0), ("dispatch", 4),
                                      ("service", "b"), ("finish", 1), ("dispatch", 2)]


def test_step_order_credits_the_whole_step_before_releasing() -> None:
    dispatched, pol = _run("step")
    # The whole step first: a = 5, b = 6; both finish; both releases go to a (ids 2, 3).
    assert dispatched[2] == dispatched[3] == pytest.approx(0.02)
    assert dispatched[4] > 0.02
    i = pol.calls.index(("finish", 0))
    assert pol.calls[i - 2:i + 4] == [("service", "a"), ("service", "b"), ("finish", 0),
                                      ("finish", 1), ("dispatch", 2), ("dispatch", 3)]


@pytest.mark.parametrize("order", ["step", "stream"])
def test_the_fast_path_gives_the_same_hooks(order: str) -> None:
    slow, pol_slow = _run(order, step_by_step=True)
    fast, pol_fast = _run(order, step_by_step=False)
    assert slow == fast and pol_slow.calls == pol_fast.calls


def test_stream_order_hears_arrivals_of_the_step_before_its_tokens() -> None:
    # id 2 arrives during step 1 (which finishes nothing): live hears it before step 1's tokens.
    specs = [("a", 0.0, 1, 3), ("b", 0.015, 1, 1)]
    seen: dict[str, list[tuple[str, object]]] = {}
    for order in ("step", "stream"):
        simulate(workload(specs, clients=["a", "b"]), "QUEUE_SIMTEST_LEAST_SERVED",
                 profile(fixed_ms=10.0), engine=engine(hook_order=order), max_inflight=2)
        assert LeastServed.last is not None
        seen[order] = LeastServed.last.calls
    # The dispatch of id 1 comes before step 1's token of client a with "stream" only.
    assert seen["stream"][:4] == [("dispatch", 0), ("service", "a"), ("dispatch", 1),
                                  ("service", "a")]
    assert seen["step"][:4] == [("dispatch", 0), ("service", "a"), ("service", "a"),
                                ("dispatch", 1)]


def test_hook_order_is_validated() -> None:
    with pytest.raises(ConfigError, match="hook_order"):
        engine(hook_order="live")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from([0.0, 0.003, 0.02, 0.1]),
                          st.integers(1, 60), st.integers(1, 20)), min_size=1, max_size=25),
       st.integers(1, 4), st.sampled_from(["QUEUE_VTC", "QUEUE_ExFairS", "QUEUE_FCFS"]),
       st.sampled_from(["chunk", "first_token"]), st.sampled_from([0.0, 0.002]))
def test_stream_order_fast_path_equals_step_by_step(
    gaps: list[tuple[str, float, int, int]], inflight: int, exp: str, credit: str,
    latency: float,
) -> None:
    t = 0.0
    specs = []
    for c, gap, p, o in gaps:
        t += gap
        specs.append((c, t, p, o))
    wl = workload(specs, clients=["a", "b", "c"])
    eng = engine(hook_order="stream", prompt_credit=credit, submit_latency_s=latency,
                 max_num_batched_tokens=64, num_gpu_blocks=40)
    prof = profile(fixed_ms=10.0, decode_seq_ms=1.0)
    slow = simulate(wl, exp, prof, engine=eng, max_inflight=inflight, step_by_step=True)
    fast = simulate(wl, exp, prof, engine=eng, max_inflight=inflight)
    assert slow.records == fast.records
    assert slow.policy_samples == fast.policy_samples
