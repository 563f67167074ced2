"""ExFairS starvation freedom (issue #17): a continuously backlogged client is dispatched within
the bound of the module docstring, whatever the arrivals, SLOs, violations and service."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st
from policy_factories import arrive, policy, req

from exfairs.policies import PolicyQueue
from exfairs.policies.exfairs_policy import ExFairS

CLIENTS = ("a", "b", "c", "d")
W_P, W_Q = 1.0, 2.0
MAX_PROMPT, MAX_OUTPUT = 64, 16


@dataclass
class _Gate:
    """A gate in front of a toy engine: each round some requests arrive, some clients are told of
    violations, every in-flight request decodes one token, then one request is dispatched."""

    p: ExFairS
    names: tuple[str, ...]
    weights: tuple[float, ...]
    now: float = 0.0
    rid: int = 0
    inflight: list[list[object]] = field(default_factory=list)  # [request, tokens left]
    # client → (pops counted so far when its wait began, bound on the pops until it is served)
    waits: dict[str, tuple[int, int]] = field(default_factory=dict)
    pops: int = 0
    longest: int = 0

    def __post_init__(self) -> None:
        self.q = PolicyQueue(self.p)

    def add(self, client: str, prompt: int, output: int, slo_scale: float | None) -> None:
        unloaded = 0.01 * (prompt + output)
        e2e = None if slo_scale is None else slo_scale * unloaded
        arrive(self.q, req(self.rid, client, self.now, prompt=prompt, output=output, e2e_s=e2e,
                           unloaded_e2e_s=unloaded), self.now)
        self.rid += 1

    def bound(self, i: int) -> int:
        """The docstring's bound on the pops before client i is served, from the state now."""
        c = self.p.counters
        a = self.p.alpha
        pending = sum(int(left) for r, left in self.inflight  # type: ignore[misc]
                      if r.client == self.names[i])  # type: ignore[attr-defined]
        c_i = c[i] + W_Q * pending / self.weights[i]
        b_max = self.p.credit_requests * (W_P * MAX_PROMPT + W_Q * MAX_OUTPUT)
        top = c_i + 2 * a * b_max / (1 - a)
        # j can be dispatched while c_j ≤ top, and each dispatch raises c_j by ≥ w_p / weight_j.
        return 1 + sum(math.floor((top - c[j]) * self.weights[j] / W_P + 1e-9) + 1
                       for j in range(len(self.names)) if j != i and c[j] <= top + 1e-9)

    def round(self, violated: list[str]) -> None:
        for client in violated:
            self.p.on_violation(req(10**6 + self.rid, client), self.now)
            self.rid += 1
        self.now += 1.0
        decoded: dict[str, int] = {}
        still = []
        for item in self.inflight:
            r, left = item
            decoded[r.client] = decoded.get(r.client, 0) + 1  # type: ignore[attr-defined]
            if left > 1:  # type: ignore[operator]
                still.append([r, left - 1])  # type: ignore[operator]
            else:
                self.p.on_finish(r, self.now, False)  # type: ignore[arg-type]
        self.inflight = still
        for client, n in sorted(decoded.items()):
            self.p.on_service(client, 0, n, self.now)
        backlog = self.q.backlog()
        for i, name in enumerate(self.names):
            if backlog[i] and name not in self.waits:
                self.waits[name] = (self.pops, self.bound(i))
        r = self.q.pop(self.now)
        if r is None:
            return
        self.pops += 1
        self.inflight.append([r, r.output_tokens])
        start, limit = self.waits.pop(r.client)
        self.longest = max(self.longest, self.pops - start)
        for name, (start, limit) in self.waits.items():
            assert self.pops - start < limit, (name, self.pops - start, limit)


_request = st.tuples(st.sampled_from(range(4)), st.integers(1, MAX_PROMPT),
                     st.integers(1, MAX_OUTPUT))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 4),
    alpha=st.floats(0.0, 0.95),
    order=st.sampled_from(["deadline", "arrival"]),
    horizon=st.floats(0.5, 30.0),
    credit=st.floats(0.0, 16.0),
    weights=st.lists(st.sampled_from([1.0, 2.0, 0.5]), min_size=4, max_size=4),
    slo=st.lists(st.one_of(st.none(), st.floats(0.5, 50.0)), min_size=4, max_size=4),
    rounds=st.lists(st.tuples(st.lists(_request, max_size=4),
                              st.lists(st.sampled_from(range(4)), max_size=3)),
                    min_size=10, max_size=80),
)
def test_backlogged_client_is_served_within_the_bound(
    n: int, alpha: float, order: str, horizon: float, credit: float, weights: list[float],
    slo: list[float | None], rounds: list[tuple[list[tuple[int, int, int]], list[int]]],
) -> None:
    names = CLIENTS[:n]
    p = policy("ExFairS", names, weights[:n], alpha=alpha, order=order, horizon_s=horizon,
               credit_requests=credit, w_p=W_P, w_q=W_Q)
    assert isinstance(p, ExFairS)
    g = _Gate(p, names, tuple(weights[:n]))
    for arrivals, violated in rounds:
        for k, prompt, output in arrivals:
            g.add(names[k % n], prompt, output, slo[k % n])
        # Client a stays backlogged throughout (the property's premise, and the hard case).
        if not g.q.backlog()[0]:
            g.add("a", MAX_PROMPT, MAX_OUTPUT, slo[0])
        g.round([names[k % n] for k in violated])


def test_the_bound_is_not_vacuous_score_order_starves() -> None:
    """The same gate with ``order = "score"`` (the rule kept from before issue #8): a client with
    violations outranks one without for as long as it is backlogged."""
    p = policy("ExFairS", ("a", "b"), order="score", alpha=0.7)
    assert isinstance(p, ExFairS)
    g = _Gate(p, ("a", "b"), (1.0, 1.0))
    served = []
    for _ in range(100):
        for c in ("a", "b"):
            if not g.q.backlog()[CLIENTS.index(c)]:
                g.add(c, 8, 4, None)
        g.q.policy.on_violation(req(10**6 + g.rid, "b"), g.now)
        g.rid += 1
        r = g.q.peek(g.now)
        assert r is not None
        served.append(r.client)
        g.q.pop(g.now)
        p.on_service(r.client, 0, 4, g.now)
    assert served.count("a") == 0
    # The default order serves both under the same events.
    p2 = policy("ExFairS", ("a", "b"), alpha=0.7)
    assert isinstance(p2, ExFairS)
    g2 = _Gate(p2, ("a", "b"), (1.0, 1.0))
    for _ in range(100):
        for c in ("a", "b"):
            if not g2.q.backlog()[CLIENTS.index(c)]:
                g2.add(c, 8, 4, None)
        g2.round(["b"])
    assert g2.longest < 20
