"""VTC: charges, counter lift, and hand-built orders."""

from __future__ import annotations

import pytest
from policy_factories import arrive, policy, pop_clients, req

from exfairs.policies import PolicyQueue
from exfairs.policies.vtc import VTC


def vtc(clients: tuple[str, ...] = ("a", "b"), weights: tuple[float, ...] | None = None,
        **params: float) -> VTC:
    p = policy("VTC", clients, weights, **params)
    assert isinstance(p, VTC)
    return p


def test_charges_prompt_at_dispatch_and_decode_as_served_not_prefill() -> None:
    p = vtc(w_p=1.0, w_q=2.0)
    q = PolicyQueue(p)
    arrive(q, req(1, "a", 0.0, prompt=100, output=5))
    q.pop(0.0)
    assert p.counters.tolist() == [100.0, 0.0]
    p.on_service("a", 100, 0, 0.1)  # the prefill itself: already charged
    assert p.counters.tolist() == [100.0, 0.0]
    p.on_service("a", 0, 3, 0.2)
    assert p.counters.tolist() == [106.0, 0.0]
    assert p.state_snapshot(0.2) == {"counter": [106.0, 0.0]}


def test_weights_divide_charges() -> None:
    p = vtc(weights=(1.0, 4.0))
    q = PolicyQueue(p)
    arrive(q, req(1, "a", 0.0, prompt=40))
    arrive(q, req(2, "b", 0.0, prompt=40))
    q.pop(0.0)
    q.pop(0.0)
    p.on_service("b", 0, 10, 1.0)
    assert p.counters.tolist() == [40.0, 10.0 + 2.0 * 10 / 4.0]


def test_redispatch_after_preemption_is_not_charged_again() -> None:
    p = vtc()
    q = PolicyQueue(p)
    r = req(1, "a", 0.0, prompt=50)
    arrive(q, r)
    q.pop(0.0)
    p.on_preempt(r, 1.0)
    q.push(r, 1.0)
    assert p.waiting_counts().tolist() == [1, 0]
    q.pop(2.0)
    assert p.counters.tolist() == [50.0, 0.0]
    assert p.waiting_counts().tolist() == [0, 0]


def test_smallest_counter_first_long_prompts_lose_turns() -> None:
    # a sends 300-token prompts, b 100-token prompts: b gets three dispatches per a's one.
    p = vtc(w_p=1.0, w_q=0.0)
    q = PolicyQueue(p)
    for i in range(4):
        arrive(q, req(i, "a", 0.001 * i, prompt=300))
        arrive(q, req(100 + i, "b", 0.001 * i + 0.0005, prompt=100))
    assert pop_clients(q, 1.0, 5) == ["a", "b", "b", "b", "a"]


def test_lift_to_min_counter_of_backlogged_clients() -> None:
    p = vtc(("a", "b", "c"), w_q=0.0)
    q = PolicyQueue(p)
    # a and b are served for a while; c is idle.
    for i in range(6):
        arrive(q, req(i, "a" if i % 2 == 0 else "b", 0.0, prompt=100))
    pop_clients(q, 1.0, 4)  # a=200, b=200 charged; one request each still waiting
    assert p.counters.tolist() == [200.0, 200.0, 0.0]
    arrive(q, req(50, "c", 2.0, prompt=100))
    assert p.counters.tolist() == [200.0, 200.0, 200.0]
    # c does not cash in idle time: the three alternate by arrival instead of c running alone.
    assert pop_clients(q, 2.0) == ["a", "b", "c"]


def test_no_lift_while_client_still_waiting() -> None:
    p = vtc(w_q=0.0)
    q = PolicyQueue(p)
    arrive(q, req(1, "a", 0.0, prompt=10))
    arrive(q, req(2, "b", 0.0, prompt=500))
    q.pop(0.0)  # a (counter 0 vs 0, earlier id), a = 10
    q.pop(0.0)  # b = 500
    arrive(q, req(3, "a", 1.0))
    arrive(q, req(4, "a", 1.0))
    assert p.counters[0] == 10.0  # nothing waiting → lift to min start tag in flight (0)
    arrive(q, req(5, "b", 1.0))  # b: lift to min waiting counter (a: 10) → stays 500
    assert p.counters.tolist() == [10.0, 500.0]


def test_lift_when_nothing_waiting_uses_oldest_unfinished_start_tag() -> None:
    # Priority mode: every request is dispatched at submission, so nothing is ever waiting.
    p = vtc(w_q=0.0)
    prios = []
    for rid, c in enumerate(["a", "a", "a", "b"]):
        r = req(rid, c, float(rid), prompt=100)
        p.on_arrival(r, r.arrival_s)
        prios.append(p.submission_priority(r, r.arrival_s))
        p.on_dispatch(r, r.arrival_s)
    # a's requests got start tags 0, 100, 200; b arrives while they are all unfinished and is
    # lifted to the oldest one's tag (0), so the engine serves b right after a's first.
    assert prios == [0, 100, 200, 0]
    p.on_finish(req(0, "a"), 5.0, True)
    r = req(9, "b", 6.0, prompt=100)
    p.on_arrival(r, 6.0)
    assert p.submission_priority(r, 6.0) == 100  # b (100) vs oldest unfinished tag (100)


def test_lift_when_idle_uses_last_client_to_leave() -> None:
    p = vtc(w_q=0.0)
    q = PolicyQueue(p)
    r = req(1, "a", 0.0, prompt=300)
    arrive(q, r)
    q.pop(0.0)
    p.on_finish(r, 1.0, True)
    arrive(q, req(2, "b", 2.0))
    assert p.counters.tolist() == [300.0, 300.0]


def test_dropped_waiting_request_no_longer_counts_as_backlog() -> None:
    p = vtc(w_q=0.0)
    q = PolicyQueue(p)
    r = req(1, "a", 0.0)
    arrive(q, r)
    q.remove(1)
    p.on_violation(r, 1.0)
    p.on_drop(r, 1.0)
    assert p.waiting_counts().tolist() == [0, 0]


def test_choose_victim_prefers_highest_counter_then_latest() -> None:
    p = vtc(w_q=0.0)
    q = PolicyQueue(p)
    rs = [req(1, "a", 0.0, prompt=10), req(2, "b", 0.1, prompt=50), req(3, "b", 0.2, prompt=5)]
    for r in rs:
        arrive(q, r)
    while len(q):
        q.pop(1.0)
    assert p.choose_victim(rs, 1.0).request_id == 3
    with pytest.raises(ValueError):
        p.choose_victim([], 1.0)
