"""PolicyQueue: tie-breaks, removal, push-back after preemption, deadline-aware order."""

from __future__ import annotations

import numpy as np
import pytest
from policy_factories import arrive, policy, pop_clients, req

from exfairs.policies import Policy, PolicyQueue
from exfairs.policies.base import FloatArray


class Fixed(Policy):
    """Scores set by the test."""

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.scores = np.asarray(scores, dtype=float)
        self.dispatched: list[int] = []

    def client_scores(self, now_s: float) -> FloatArray:
        return self.scores.copy()

    def on_dispatch(self, request: object, now_s: float) -> None:
        self.dispatched.append(request.request_id)  # type: ignore[attr-defined]


def fixed(scores: list[float], clients: tuple[str, ...] = ("a", "b", "c")) -> Fixed:
    p = Fixed(scores)
    for c in clients:
        p.add_client(c)
    return p


def test_empty_queue_pops_none() -> None:
    q = PolicyQueue(fixed([0, 0, 0]))
    assert len(q) == 0
    assert q.pop(1.0) is None
    assert q.peek(1.0) is None


def test_lowest_score_first_regardless_of_arrival() -> None:
    q = PolicyQueue(fixed([2.0, 1.0, 3.0]))
    for rid, (c, t) in enumerate([("a", 0.0), ("b", 5.0), ("c", 1.0)]):
        q.push(req(rid, c, t), t)
    assert pop_clients(q, 10.0) == ["b", "a", "c"]


def test_ties_go_to_earliest_head_arrival_then_lowest_id() -> None:
    q = PolicyQueue(fixed([0, 0, 0]))
    q.push(req(7, "a", 2.0), 2.0)
    q.push(req(5, "b", 1.0), 2.0)
    q.push(req(6, "c", 1.0), 2.0)  # same arrival as b, higher id
    assert [q.pop(3.0).request_id for _ in range(3)] == [5, 6, 7]  # type: ignore[union-attr]


def test_unbacklogged_clients_are_never_picked_even_with_best_score() -> None:
    q = PolicyQueue(fixed([-100.0, 0.0, 0.0]))
    q.push(req(1, "b", 0.0), 0.0)
    assert q.peek(1.0).client == "b"  # type: ignore[union-attr]


def test_within_client_arrival_order_and_pop_calls_on_dispatch() -> None:
    p = fixed([0, 0, 0])
    q = PolicyQueue(p)
    for rid, t in [(3, 3.0), (1, 1.0), (2, 2.0)]:
        q.push(req(rid, "a", t), t)
    assert [q.pop(4.0).request_id for _ in range(3)] == [1, 2, 3]  # type: ignore[union-attr]
    assert p.dispatched == [1, 2, 3]


def test_remove_and_membership() -> None:
    q = PolicyQueue(fixed([0, 0, 0]))
    q.push(req(1, "a", 0.0), 0.0)
    q.push(req(2, "a", 1.0), 1.0)
    assert 2 in q and len(q) == 2
    assert q.remove(1) is True
    assert q.remove(1) is False
    assert 1 not in q
    assert q.backlog().tolist() == [1, 0, 0]
    assert q.pop(2.0).request_id == 2  # type: ignore[union-attr]
    assert q.pop(2.0) is None


def test_removed_then_pushed_again_is_released_once() -> None:
    # Regression: a lazily deleted heap entry used to come back to life on re-push.
    q = PolicyQueue(fixed([0, 0, 0]))
    r1, r2 = req(1, "a", 0.0), req(2, "a", 1.0)
    q.push(r1, 1.0)
    q.push(r2, 1.0)
    q.remove(2)
    q.push(r2, 1.5)
    assert [q.pop(2.0).request_id for _ in range(2)] == [1, 2]  # type: ignore[union-attr]
    q.push(req(3, "a", 3.0), 3.0)
    assert q.pop(3.0).request_id == 3  # type: ignore[union-attr]
    assert q.pop(3.0) is None


def test_double_push_rejected() -> None:
    q = PolicyQueue(fixed([0, 0, 0]))
    q.push(req(1), 0.0)
    with pytest.raises(ValueError, match="already queued"):
        q.push(req(1), 0.0)


def test_preempted_request_pushed_back_returns_to_front() -> None:
    q = PolicyQueue(fixed([0, 0, 0]))
    for rid, t in [(1, 0.0), (2, 1.0), (3, 2.0)]:
        q.push(req(rid, "a", t), t)
    first = q.pop(3.0)
    assert first is not None and first.request_id == 1
    q.push(first, 4.0)  # evicted by the engine, pushed back later
    assert q.pop(5.0).request_id == 1  # type: ignore[union-attr]


def test_deadline_aware_puts_late_requests_behind_ready_ones() -> None:
    q = PolicyQueue(fixed([0, 0, 0]), deadline_aware=True)
    q.push(req(1, "a", 0.0, e2e_s=100.0, unloaded_e2e_s=1.0), 0.0)
    q.push(req(2, "a", 1.0, e2e_s=2.0, unloaded_e2e_s=0.5), 1.0)  # turns late at 2.5
    q.push(req(3, "a", 2.0, e2e_s=100.0, unloaded_e2e_s=1.0), 2.0)
    # At 5 s request 2 can no longer meet its deadline although it is not the client's head:
    # it must go after request 3, which still can.
    assert [q.pop(5.0).request_id for _ in range(3)] == [1, 3, 2]  # type: ignore[union-attr]


def test_deadline_aware_push_of_already_late_request() -> None:
    q = PolicyQueue(fixed([0, 0, 0]), deadline_aware=True)
    q.push(req(1, "a", 0.0, e2e_s=1.0, unloaded_e2e_s=0.5), 3.0)  # late on arrival at the queue
    q.push(req(2, "a", 2.0, e2e_s=10.0, unloaded_e2e_s=0.5), 3.0)
    assert [q.pop(3.0).request_id for _ in range(2)] == [2, 1]  # type: ignore[union-attr]


def test_not_deadline_aware_keeps_arrival_order() -> None:
    q = PolicyQueue(fixed([0, 0, 0]), deadline_aware=False)
    q.push(req(1, "a", 0.0, e2e_s=1.0, unloaded_e2e_s=0.5), 3.0)
    q.push(req(2, "a", 2.0, e2e_s=10.0, unloaded_e2e_s=0.5), 3.0)
    assert [q.pop(3.0).request_id for _ in range(2)] == [1, 2]  # type: ignore[union-attr]


def test_late_head_changes_the_client_tie_break() -> None:
    # Client heads: a's ready head arrived at 1.0 once its earlier request turned late.
    q = PolicyQueue(fixed([0, 0, 0]), deadline_aware=True)
    q.push(req(1, "a", 0.0, e2e_s=1.0, unloaded_e2e_s=0.0), 0.0)  # late from 1.0
    q.push(req(2, "a", 3.0, e2e_s=50.0), 3.0)
    q.push(req(3, "b", 2.0, e2e_s=50.0), 3.0)
    assert [q.pop(4.0).request_id for _ in range(3)] == [3, 2, 1]  # type: ignore[union-attr]


def test_nan_scores_rejected_and_wrong_shape_rejected() -> None:
    q = PolicyQueue(fixed([float("nan"), 0, 0]))
    q.push(req(1, "a"), 0.0)
    with pytest.raises(ValueError, match="NaN"):
        q.pop(0.0)
    p = fixed([0, 0])  # 3 clients, 2 scores
    q2 = PolicyQueue(p)
    q2.push(req(1, "a"), 0.0)
    with pytest.raises(ValueError, match="shape"):
        q2.pop(0.0)


def test_unknown_client_is_a_key_error() -> None:
    q = PolicyQueue(policy("FCFS", ("a",)))
    with pytest.raises(KeyError, match="zed"):
        q.push(req(1, "zed"), 0.0)


def test_gate_driver_helper_matches_fcfs_order() -> None:
    q = PolicyQueue(policy("FCFS", ("a", "b")))
    arrive(q, req(2, "b", 0.5))
    arrive(q, req(1, "a", 0.5))
    arrive(q, req(3, "a", 0.7))
    assert [q.pop(1.0).request_id for _ in range(3)] == [1, 2, 3]  # type: ignore[union-attr]
