"""EDF (least slack): hand-built orders."""

from __future__ import annotations

from policy_factories import arrive, policy, pop_clients, req

from exfairs.policies import PolicyQueue
from exfairs.policies.edf import LATE_OFFSET_S, NO_DEADLINE_PRIORITY


def test_least_slack_first_across_clients() -> None:
    q = PolicyQueue(policy("EDF", ("a", "b", "c")))
    arrive(q, req(1, "a", 0.0, e2e_s=10.0, unloaded_e2e_s=1.0))  # latest start 9
    arrive(q, req(2, "b", 0.5, e2e_s=5.0, unloaded_e2e_s=3.0))  # latest start 2.5
    arrive(q, req(3, "c", 0.2, e2e_s=6.0, unloaded_e2e_s=1.0))  # latest start 5.2
    assert pop_clients(q, 1.0) == ["b", "c", "a"]


def test_hopeless_requests_go_after_savable_ones_and_no_deadline_last() -> None:
    q = PolicyQueue(policy("EDF", ("a", "b", "c")))
    arrive(q, req(1, "a", 0.0, e2e_s=1.0, unloaded_e2e_s=0.5))  # late from 0.5
    arrive(q, req(2, "b", 0.1))  # no deadline
    arrive(q, req(3, "c", 0.2, e2e_s=100.0, unloaded_e2e_s=1.0))
    assert pop_clients(q, 2.0) == ["c", "a", "b"]


def test_request_turning_late_while_queued_loses_its_place() -> None:
    q = PolicyQueue(policy("EDF", ("a", "b")))
    arrive(q, req(1, "a", 0.0, e2e_s=2.0, unloaded_e2e_s=1.0))  # latest start 1.0
    arrive(q, req(2, "b", 0.0, e2e_s=9.0, unloaded_e2e_s=1.0))  # latest start 8.0
    assert q.peek(0.5).client == "a"  # type: ignore[union-attr]
    assert pop_clients(q, 1.5) == ["b", "a"]


def test_priority_mode_uses_the_request_itself() -> None:
    p = policy("EDF", ("a",))
    r = req(1, "a", 0.0, e2e_s=2.0, unloaded_e2e_s=0.5)
    assert p.submission_priority(r, 0.0) == 1500
    assert p.submission_priority(r, 1.6) == round((LATE_OFFSET_S + 2.0) * 1000)
    assert p.submission_priority(req(2, "a"), 0.0) == NO_DEADLINE_PRIORITY


def test_dispatch_and_drop_clear_the_client_score() -> None:
    p = policy("EDF", ("a", "b"))
    q = PolicyQueue(p)
    r = req(1, "a", 0.0, e2e_s=2.0)
    arrive(q, r)
    assert p.client_scores(0.0)[0] == 2.0
    q.pop(0.0)
    assert p.client_scores(0.0)[0] == float("inf")
    p.on_preempt(r, 0.5)
    assert p.client_scores(0.5)[0] == 2.0
    p.on_drop(r, 0.6)
    assert p.client_scores(0.6)[0] == float("inf")
