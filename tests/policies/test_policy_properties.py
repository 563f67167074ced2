"""Hypothesis properties of the policies (issue #2): determinism, work conservation, round robin
turns, VTC's lift and service bound, ExFairS's ranking."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from policy_factories import arrive, policy, pop_clients, req

from exfairs.policies import Policy, PolicyQueue
from exfairs.policies.vtc import VTC
from exfairs.records import Request

POLICIES = ["FCFS", "ROUND_ROBIN", "VTC", "ExFairS", "EDF"]
CLIENTS = ("a", "b", "c", "d")

# -- random event sequences -----------------------------------------------------------------------

_op = st.tuples(
    st.sampled_from(["arrive", "arrive", "pop", "pop", "serve", "finish", "preempt", "drop",
                     "violate"]),
    st.integers(0, 3),  # client / index selector
    st.integers(1, 400),  # tokens
    st.floats(0.0, 2.0, allow_nan=False),  # time step, seconds
    st.booleans(),
)
_ops = st.lists(_op, max_size=80)


@dataclass
class _Trace:
    decisions: list[tuple[str, int | None]] = field(default_factory=list)
    snapshot: dict[str, list[float]] = field(default_factory=dict)


def _run(name: str, ops: list[tuple[str, int, int, float, bool]]) -> _Trace:
    """Drive `name` through `ops` the way a gate or engine-mode driver would, checking work
    conservation at every pop."""
    p = policy(name, CLIENTS)
    q = PolicyQueue(p)
    trace = _Trace()
    now = 0.0
    next_id = 0
    queued: dict[int, Request] = {}
    running: list[Request] = []
    resolved: set[int] = set()
    for kind, sel, tokens, dt, flag in ops:
        now += dt
        if kind == "arrive":
            r = req(next_id, CLIENTS[sel], now, prompt=tokens, output=1 + tokens % 50,
                    e2e_s=3.0 if flag else None, unloaded_e2e_s=0.5)
            next_id += 1
            arrive(q, r)
            queued[r.request_id] = r
            trace.decisions.append(("priority", p.submission_priority(r, now)))
        elif kind == "pop":
            backlog = {c: sum(r.client == c for r in queued.values()) for c in CLIENTS}
            got = q.pop(now)
            if queued:
                # work conservation: something is released whenever anything is queued, and
                # it is a queued request of a backlogged client
                assert got is not None
                assert got.request_id in queued and backlog[got.client] > 0
                del queued[got.request_id]
                running.append(got)
            else:
                assert got is None
            trace.decisions.append(("pop", None if got is None else got.request_id))
        elif kind == "serve" and running:
            r = running[sel % len(running)]
            p.on_service(r.client, tokens if flag else 0, tokens % 7, now)
        elif kind == "finish" and running:
            r = running.pop(sel % len(running))
            met = flag and r.request_id not in resolved
            if not met and r.request_id not in resolved:
                p.on_violation(r, now)
            resolved.add(r.request_id)
            p.on_finish(r, now, met)
        elif kind == "preempt" and running:
            r = running.pop(sel % len(running))
            p.on_preempt(r, now)
            q.push(r, now)
            queued[r.request_id] = r
        elif kind == "drop" and queued:
            r = queued.pop(sorted(queued)[sel % len(queued)])
            assert q.remove(r.request_id)
            if r.request_id not in resolved:
                p.on_violation(r, now)
                resolved.add(r.request_id)
            p.on_drop(r, now)
        elif kind == "violate":
            pending = sorted(set(queued) | {r.request_id for r in running} - resolved)
            if pending:
                rid = pending[sel % len(pending)]
                r = queued.get(rid) or next(x for x in running if x.request_id == rid)
                p.on_violation(r, now)
                resolved.add(rid)
        assert len(q) == len(queued)
    trace.snapshot = p.state_snapshot(now)
    return trace


@pytest.mark.parametrize("name", POLICIES)
@given(ops=_ops)
def test_same_events_same_decisions_and_work_conservation(
    name: str, ops: list[tuple[str, int, int, float, bool]]
) -> None:
    first = _run(name, ops)
    second = _run(name, ops)
    assert first.decisions == second.decisions
    assert first.snapshot == second.snapshot


# -- round robin ----------------------------------------------------------------------------------

@given(order=st.lists(st.sampled_from(CLIENTS), min_size=1, max_size=40))
def test_round_robin_visits_backlogged_clients_in_turn(order: list[str]) -> None:
    q = PolicyQueue(policy("ROUND_ROBIN", CLIENTS))
    for rid, c in enumerate(order):
        arrive(q, req(rid, c, 0.01 * rid))
    seq = pop_clients(q, 10.0)
    assert sorted(seq) == sorted(order)
    last = {c: max(i for i, x in enumerate(seq) if x == c) for c in set(seq)}
    for i, a in enumerate(seq):
        nxt = next((j for j in range(i + 1, len(seq)) if seq[j] == a), None)
        if nxt is None:
            continue
        between = seq[i + 1 : nxt]
        for b in set(seq) - {a}:
            if last[b] > nxt:  # b still backlogged when a came round again
                assert between.count(b) == 1, (seq, a, b)
            else:
                assert between.count(b) <= 1, (seq, a, b)


# -- VTC: fluid model -----------------------------------------------------------------------------

@dataclass
class _Fluid:
    """Continuously backlogged clients in front of a batch holding `capacity_tokens` tokens of KV:
    a request reserves prompt + output tokens at admission, every running request decodes one
    token per step, admission stops at the first head that does not fit (VTC, Algorithm 2)."""

    policy: Policy
    lengths: dict[str, list[tuple[int, int]]]
    capacity_tokens: int
    w_p: float
    w_q: float
    now: float = 0.0
    next_id: int = 0
    served: dict[str, int] = field(default_factory=dict)  # requests drawn per client
    service: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.queue = PolicyQueue(self.policy)
        self.running: list[list[object]] = []  # [request, tokens left]
        self.free = self.capacity_tokens
        self.active: list[str] = []

    def join(self, client: str, depth: int = 2) -> None:
        """`client` becomes backlogged (and stays so: each dispatch is replaced)."""
        self.active.append(client)
        self.service.setdefault(client, 0.0)
        for _ in range(depth):
            self._new(client)

    def _new(self, client: str) -> None:
        seq = self.lengths[client]
        prompt, output = seq[self.served.get(client, 0) % len(seq)]
        self.served[client] = self.served.get(client, 0) + 1
        arrive(self.queue, req(self.next_id, client, self.now, prompt=prompt, output=output),
               self.now)
        self.next_id += 1

    def step(self) -> None:
        while True:
            head = self.queue.peek(self.now)
            if head is None or head.prompt_tokens + head.output_tokens > self.free:
                break
            r = self.queue.pop(self.now)
            assert r is head
            self.free -= r.prompt_tokens + r.output_tokens
            self.running.append([r, r.output_tokens])
            self.service[r.client] += self.w_p * r.prompt_tokens
            self._new(r.client)
        decoded: dict[str, int] = {}
        still: list[list[object]] = []
        for item in self.running:
            r, left = item
            assert isinstance(r, Request) and isinstance(left, int)
            decoded[r.client] = decoded.get(r.client, 0) + 1
            if left > 1:
                still.append([r, left - 1])
            else:
                self.free += r.prompt_tokens + r.output_tokens
        self.now += 1.0
        for c, n in sorted(decoded.items()):
            self.policy.on_service(c, 0, n, self.now)
            self.service[c] += self.w_q * n
        for item in self.running:
            r = item[0]
            assert isinstance(r, Request)
            if item not in still:
                self.policy.on_finish(r, self.now, True)
        self.running = still


_lengths = st.lists(st.tuples(st.integers(1, 256), st.integers(1, 128)), min_size=1, max_size=6)
_weights_pq = st.sampled_from([(1.0, 2.0), (1.0, 1.0), (2.0, 1.0), (1.0, 0.0), (0.0, 1.0)])


def _bound(lengths: dict[str, list[tuple[int, int]]], capacity: int, w_p: float,
           w_q: float) -> float:
    l_in = max(p for seq in lengths.values() for p, _ in seq)
    return 2.0 * max(w_p * l_in, w_q * capacity)


@given(
    per_client=st.lists(_lengths, min_size=2, max_size=4),
    w=_weights_pq,
    capacity=st.integers(400, 1500),
    steps=st.integers(20, 300),
)
def test_vtc_keeps_backlogged_service_gap_within_bound(
    per_client: list[list[tuple[int, int]]], w: tuple[float, float], capacity: int, steps: int
) -> None:
    clients = CLIENTS[: len(per_client)]
    lengths = dict(zip(clients, per_client, strict=True))
    w_p, w_q = w
    sim = _Fluid(policy("VTC", clients, w_p=w_p, w_q=w_q), lengths, capacity, w_p, w_q)
    for c in clients:
        sim.join(c)
    bound = _bound(lengths, capacity, w_p, w_q)
    for _ in range(steps):
        sim.step()
        gap = max(sim.service.values()) - min(sim.service.values())
        assert gap <= bound + 1e-9, (gap, bound, sim.service)


def test_fluid_bound_is_not_vacuous_round_robin_breaks_it() -> None:
    # Same model, a client with long prompts under round robin: the gap grows without bound.
    lengths = {"a": [(256, 1)], "b": [(1, 1)]}
    sim = _Fluid(policy("ROUND_ROBIN", ("a", "b")), lengths, 600, 1.0, 2.0)
    for c in ("a", "b"):
        sim.join(c)
    for _ in range(200):
        sim.step()
    gap = max(sim.service.values()) - min(sim.service.values())
    assert gap > _bound(lengths, 600, 1.0, 2.0)


class _NoLiftVTC(VTC):
    """VTC with the counter lift disabled: a returning client keeps its low counter."""

    def _lift_reference(self) -> float:
        return -np.inf


def _returning_gap(make: Callable[[tuple[str, ...]], Policy],
                   lengths: dict[str, list[tuple[int, int]]], capacity: int,
                   w_p: float, w_q: float, idle_steps: int, after_steps: int) -> float:
    """Client "a" is idle while the others are served `idle_steps` steps, then returns; the
    largest lead of a's service since its return over any other client's, during `after_steps`."""
    clients = tuple(lengths)
    sim = _Fluid(make(clients), lengths, capacity, w_p, w_q)
    for c in clients[1:]:
        sim.join(c)
    for _ in range(idle_steps):
        sim.step()
    base = {c: sim.service.get(c, 0.0) for c in clients}
    sim.join("a")
    worst = -np.inf
    for _ in range(after_steps):
        sim.step()
        since = {c: sim.service[c] - base[c] for c in clients}
        worst = max(worst, since["a"] - min(since[c] for c in clients[1:]))
    return float(worst)


@given(
    per_client=st.lists(_lengths, min_size=2, max_size=3),
    w=_weights_pq,
    capacity=st.integers(400, 1500),
    idle_steps=st.integers(0, 200),
    after_steps=st.integers(1, 200),
)
def test_vtc_lift_stops_returning_client_cashing_in_idle_time(
    per_client: list[list[tuple[int, int]]], w: tuple[float, float], capacity: int,
    idle_steps: int, after_steps: int,
) -> None:
    clients = CLIENTS[: len(per_client)]
    lengths = dict(zip(clients, per_client, strict=True))
    w_p, w_q = w
    gap = _returning_gap(lambda cs: policy("VTC", cs, w_p=w_p, w_q=w_q), lengths, capacity, w_p,
                         w_q, idle_steps, after_steps)
    assert gap <= _bound(lengths, capacity, w_p, w_q) + 1e-9


def test_without_lift_the_returning_client_cashes_in() -> None:
    # The property above can fail: the same scenario without the lift breaks it.
    lengths = {"a": [(100, 20)], "b": [(100, 20)]}
    args = (lengths, 800, 1.0, 2.0, 300, 150)
    bound = _bound(lengths, 800, 1.0, 2.0)
    assert _returning_gap(lambda cs: policy("VTC", cs), *args) <= bound

    def no_lift(cs: tuple[str, ...]) -> Policy:
        p = _NoLiftVTC()
        for c in cs:
            p.add_client(c)
        return p

    assert _returning_gap(no_lift, *args) > bound


# -- ExFairS ranking ------------------------------------------------------------------------------
# The FR score's ranking, on its own (order="score"); the default order adds each request's
# deadline key (tests/policies/test_exfairs_policy.py).

def _feed(p: Policy, client: str, violated: int, met: int, service_tokens: int, rid0: int) -> None:
    for i in range(violated):
        p.on_violation(req(rid0 + i, client), 0.0)
    for i in range(met):
        p.on_finish(req(rid0 + 1000 + i, client), 0.0, True)
    if service_tokens:
        p.on_dispatch(req(rid0 + 2000, client, prompt=service_tokens), 0.0)


def _first_of(p: Policy, clients: tuple[str, ...]) -> str:
    q = PolicyQueue(p)
    # Reverse arrival order so that the queue's tie-break could not produce the expected answer.
    for i, c in enumerate(reversed(clients)):
        arrive(q, req(90_000 + i, c, 1.0 + i), 10.0)
    got = q.pop(10.0)
    assert got is not None
    return got.client


@given(
    alpha=st.floats(0.01, 1.0),
    va=st.integers(0, 20), ra=st.integers(1, 20),
    vb=st.integers(0, 20), rb=st.integers(1, 20),
    service=st.integers(0, 5000),
)
def test_exfairs_higher_violation_first_at_equal_service(
    alpha: float, va: int, ra: int, vb: int, rb: int, service: int
) -> None:
    assume(va / (va + ra) > vb / (vb + rb))
    p = policy("ExFairS", ("b", "a"), alpha=alpha, order="score")
    _feed(p, "a", va, ra, service, 0)
    _feed(p, "b", vb, rb, service, 10_000)
    assert _first_of(p, ("b", "a")) == "a"


@given(
    alpha=st.floats(0.0, 0.99),
    v=st.integers(0, 20), r=st.integers(0, 20),
    sa=st.integers(0, 5000), sb=st.integers(1, 5000),
)
def test_exfairs_lower_service_first_at_equal_violation_rate(
    alpha: float, v: int, r: int, sa: int, sb: int
) -> None:
    assume(sa < sb)
    p = policy("ExFairS", ("b", "a"), alpha=alpha, order="score")
    _feed(p, "a", v, r, sa, 0)
    _feed(p, "b", v, r, sb, 10_000)
    assert _first_of(p, ("b", "a")) == "a"


@given(
    clients=st.lists(
        st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(0, 5000)),
        min_size=2, max_size=4,
    )
)
def test_exfairs_alpha_zero_orders_by_service_alone(clients: list[tuple[int, int, int]]) -> None:
    names = CLIENTS[: len(clients)]
    p = policy("ExFairS", names, alpha=0.0, order="score")
    for i, (viol, met, service) in enumerate(clients):
        _feed(p, names[i], viol, met, service, 10_000 * i)
    q = PolicyQueue(p)
    for i, c in enumerate(names):
        arrive(q, req(90_000 + i, c, 1.0 + i), 10.0)
    order = pop_clients(q, 10.0)
    # Only service matters (violations are ignored); ties fall back to arrival order.
    assert order == sorted(names, key=lambda c: (clients[names.index(c)][2], names.index(c)))
