"""The peer baselines of issue 15 (LCF, RPM, DRR, ANDES, STATIC_PRIORITY): each one's documented
rule, on small hand-made cases (the conformance suite runs them in all three modes)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_factories import arrive, policy, pop_clients, req

from exfairs.errors import ConfigError, InputError
from exfairs.policies import PolicyQueue
from exfairs.policies.params import check_policy_params


def test_lcf_banks_idle_credit_vtc_does_not() -> None:
    # a was served 1,000 weighted tokens and is still backlogged when b arrives: VTC lifts b to
    # a's counter, LCF leaves it at 0 (b then runs alone until it catches up).
    for name, lifted in (("LCF", False), ("VTC", True)):
        p = policy(name)
        r = req(1, "a", prompt=1000, output=1)
        p.on_arrival(r, 0.0)
        p.on_dispatch(r, 0.0)
        p.on_arrival(req(2, "a", 0.5), 0.5)
        p.on_arrival(req(3, "b", 1.0), 1.0)
        assert bool(p.client_scores(1.0)[1] > 0) is lifted, name


def test_rpm_ranks_clients_over_quota_last_until_the_window_slides() -> None:
    p = policy("RPM", rpm=2, window_s=10.0)
    q = PolicyQueue(p)
    for i in range(3):
        arrive(q, req(i, "a", 0.0))
    arrive(q, req(9, "b", 0.5))
    # a is within quota for two dispatches, then b (within quota) overtakes a's third.
    assert pop_clients(q, 1.0, 3) == ["a", "a", "b"]
    assert p.client_scores(1.0)[0] == 1.0
    assert p.next_wakeup(1.0) == pytest.approx(11.0)
    assert p.client_scores(11.0)[0] == 0.0
    # Priority mode: the third request of a window is above quota.
    p2 = policy("RPM", rpm=2, window_s=10.0)
    prios = []
    for i in range(3):
        r = req(i, "a", 0.0)
        p2.on_arrival(r, 0.0)
        prios.append(p2.submission_priority(r, 0.0))
        p2.on_dispatch(r, 0.0)
    assert prios == [0, 0, 1]


def test_drr_serves_a_quantum_per_visit() -> None:
    # Requests cost w_p·prompt = 100 weighted tokens; Q = 200: two requests per visit.
    p = policy("DRR", quantum=200.0, w_p=1.0, w_q=0.0)
    q = PolicyQueue(p)
    for i in range(6):
        arrive(q, req(i, "a", 0.0, prompt=100))
        arrive(q, req(10 + i, "b", 0.0, prompt=100))
    assert pop_clients(q, 0.0) == ["a", "a", "b", "b", "a", "a", "b", "b", "a", "a", "b", "b"]


def test_drr_skips_whole_rounds_of_debt_at_once() -> None:
    # One huge request puts a deep in debt; b then gets every visit until a is positive again.
    p = policy("DRR", quantum=10.0, w_p=1.0, w_q=0.0)
    q = PolicyQueue(p)
    arrive(q, req(0, "a", 0.0, prompt=10_000))
    arrive(q, req(1, "a", 0.0, prompt=1))
    for i in range(3):
        arrive(q, req(10 + i, "b", 0.0, prompt=10))
    assert pop_clients(q, 0.0) == ["a", "b", "b", "b", "a"]


def test_drr_credits_the_next_client_when_the_head_leaves() -> None:
    # a goes into debt and to the back ([b, c, a]); when b's last request leaves, c is visited
    # next and credited, then a. Passing the new head over uncredited (the bug behind the
    # engine-mode livelock of conformance case 9) served a before c.
    p = policy("DRR", ("a", "b", "c"), quantum=100.0, w_p=1.0, w_q=0.0)
    q = PolicyQueue(p)
    for rid, c, n in [(0, "a", 150), (1, "a", 10), (2, "b", 10), (3, "c", 10), (4, "c", 10)]:
        arrive(q, req(rid, c, 0.0, prompt=n))
    assert pop_clients(q, 0.0) == ["a", "b", "c", "c", "a"]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ab"), st.integers(1, 500)), min_size=2, max_size=40),
       st.floats(10.0, 1000.0))
def test_drr_service_gap_is_bounded_while_both_backlogged(
        reqs: list[tuple[str, int]], quantum: float) -> None:
    # DRR's bound (Shreedhar and Varghese, Lemma 2 adapted): while both clients stay backlogged,
    # their dispatched prompt tokens differ by at most Q + 2·max request.
    p = policy("DRR", quantum=quantum, w_p=1.0, w_q=0.0)
    q = PolicyQueue(p)
    biggest = max(n for _, n in reqs)
    for i, (c, n) in enumerate(reqs + [(c, 1) for c in "ab" for _ in range(len(reqs))]):
        arrive(q, req(i, c, 0.0, prompt=n))
    served = {"a": 0, "b": 0}
    while all(q.backlog()):
        r = q.pop(0.0)
        assert r is not None
        served[r.client] += r.prompt_tokens
        assert abs(served["a"] - served["b"]) <= quantum + 2 * biggest


def test_andes_orders_at_risk_then_safe_then_lost() -> None:
    p = policy("ANDES", ("risk", "safe", "lost"), horizon_s=1.0)
    q = PolicyQueue(p)
    arrive(q, req(1, "safe", 0.0, e2e_s=100.0, unloaded_e2e_s=1.0))
    arrive(q, req(2, "lost", 0.0, e2e_s=2.0, unloaded_e2e_s=1.0))  # slack −3 s at t=4: q ≤ 0
    arrive(q, req(3, "risk", 0.0, e2e_s=5.5, unloaded_e2e_s=1.0))  # slack 0.5 s at t=4
    assert pop_clients(q, 4.0) == ["risk", "safe", "lost"]


def test_andes_knapsack_prefers_less_kv_only_at_high_kv_use() -> None:
    def order(inflight_tokens: int) -> list[str]:
        p = policy("ANDES", ("big", "small"), horizon_s=10.0, kv_tokens=1000, kv_high=0.5)
        if inflight_tokens:
            r = req(99, "big", 0.0, prompt=inflight_tokens, output=1)
            p.on_arrival(r, 0.0)
            p.on_dispatch(r, 0.0)
        q = PolicyQueue(p)
        # big is a little more urgent per second (shorter span), but needs 10x the KV.
        arrive(q, req(1, "big", 0.0, prompt=900, output=100, e2e_s=4.0, unloaded_e2e_s=1.0))
        arrive(q, req(2, "small", 0.0, prompt=90, output=10, e2e_s=5.0, unloaded_e2e_s=1.0))
        return pop_clients(q, 0.0)

    assert order(0) == ["big", "small"]
    assert order(600) == ["small", "big"]


def test_static_priority_is_vllm_priority_order() -> None:
    p = policy("STATIC_PRIORITY", ("low", "high", "other"), priorities="low:5,high:-1")
    q = PolicyQueue(p)
    arrive(q, req(1, "low", 0.0))
    arrive(q, req(2, "other", 0.1))
    arrive(q, req(3, "high", 0.2))
    arrive(q, req(4, "low", 0.3))
    assert pop_clients(q, 1.0) == ["high", "other", "low", "low"]
    assert p.submission_priority(req(5, "low", 1.0), 1.0) == 5


@pytest.mark.parametrize(("name", "params", "field"), [
    ("STATIC_PRIORITY", {"priorities": "a=1"}, "STATIC_PRIORITY.priorities"),
    ("STATIC_PRIORITY", {"default_priority": 0.5}, "STATIC_PRIORITY.default_priority"),
    ("RPM", {"rpm": 0}, "RPM.rpm"),
    ("DRR", {"quantum": -1.0}, "DRR.quantum"),
    ("ANDES", {"kv_high": 2.0}, "ANDES.kv_high"),
    ("ANDES", {"horizon_s": math.inf}, "ANDES.horizon_s"),
])
def test_bad_peer_parameters_name_the_field(name: str, params: dict[str, object],
                                            field: str) -> None:
    with pytest.raises(InputError) as exc:
        check_policy_params(name, params)
    assert exc.value.field == field


def test_static_priority_parse_rejects_non_integers() -> None:
    from exfairs.policies.static_priority import parse_priorities

    assert parse_priorities("a:1, b : 2".replace(" : ", ":")) == {"a": 1, "b": 2}
    with pytest.raises(ConfigError):
        parse_priorities("a:x")
