"""ROUND_ROBIN and FCFS: hand-built orders."""

from __future__ import annotations

from policy_factories import arrive, policy, pop_clients, req

from exfairs.policies import PolicyQueue


def test_fcfs_is_global_arrival_order() -> None:
    q = PolicyQueue(policy("FCFS", ("a", "b", "c")))
    for rid, (c, t) in enumerate([("a", 0.0), ("a", 0.1), ("b", 0.2), ("c", 0.3), ("a", 0.4)]):
        arrive(q, req(rid, c, t))
    assert pop_clients(q, 1.0) == ["a", "a", "b", "c", "a"]


def test_round_robin_cycles_through_backlogged_clients() -> None:
    q = PolicyQueue(policy("ROUND_ROBIN", ("a", "b", "c")))
    rid = 0
    # a floods first, then b, then c (arrival order a..., b..., c...)
    for c, n in [("a", 4), ("b", 2), ("c", 3)]:
        for _ in range(n):
            arrive(q, req(rid, c, 0.01 * rid))
            rid += 1
    assert pop_clients(q, 1.0) == ["a", "b", "c", "a", "b", "c", "a", "c", "a"]


def test_round_robin_returning_client_joins_front_of_rotation() -> None:
    q = PolicyQueue(policy("ROUND_ROBIN", ("a", "b", "c")))
    for rid in range(3):
        arrive(q, req(rid, "a", 0.0))
        arrive(q, req(10 + rid, "b", 0.0))
    assert pop_clients(q, 0.5, 2) == ["a", "b"]
    arrive(q, req(20, "c", 1.0))  # never served: goes before a and b
    assert pop_clients(q, 1.0) == ["c", "a", "b", "a", "b"]


def test_round_robin_priority_interleaves_by_request_index() -> None:
    p = policy("ROUND_ROBIN", ("a", "b"))
    prios = []
    for rid, c in enumerate(["a", "a", "a", "b", "a", "b"]):
        r = req(rid, c, float(rid))
        p.on_arrival(r, r.arrival_s)
        prios.append((c, p.submission_priority(r, r.arrival_s)))
        p.on_dispatch(r, r.arrival_s)
    assert prios == [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("a", 4), ("b", 2)]
