"""The few-client fast paths give the vectorised results bit for bit (issue 13, speed).

`ExFairS._scores_few` must equal the numpy formula of `ExFairS.client_scores`, and
`PolicyQueue._select_few` and the vectorised `_select_many` must pick what the rule over every
registered client's score picks, on random hook sequences (scores with ties, infinities and lifts
included).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from exfairs.policies.base import FloatArray, Policy
from exfairs.policies.exfairs_policy import ExFairS
from exfairs.policies.queue import PolicyQueue
from exfairs.records import SLO, Request


def _vectorised(p: ExFairS, now: float) -> FloatArray:
    terms = p.urgency(now) / p.horizon_s - p.violation_rates(now)
    out: FloatArray = (1.0 - p.alpha) * p.counters + p.alpha * p.credit_tokens() * terms
    return out


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_exfairs_few_client_scores_equal_vectorised(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = ExFairS(alpha=float(rng.uniform(0, 1)), window_s=float(rng.uniform(0.5, 100)),
                horizon_s=float(rng.uniform(0.5, 20)))
    n = int(rng.integers(1, 9))
    for c in range(n):
        p.add_client(f"c{c}", float(rng.choice([1.0, 0.5, 3.0])))
    t = 0.0
    for rid in range(int(rng.integers(1, 60))):
        t += float(rng.exponential(0.5))
        client = f"c{int(rng.integers(0, n))}"
        slo = SLO(e2e_s=float(rng.uniform(0.1, 20))) if rng.random() < 0.8 else SLO()
        r = Request(request_id=rid, client=client, arrival_s=t,
                    prompt_tokens=int(rng.integers(1, 500)),
                    output_tokens=int(rng.integers(1, 200)), slo=slo)
        p.on_arrival(r, t)
        if rng.random() < 0.5:
            p.on_dispatch(r, t)
        if rng.random() < 0.3:
            p.on_service(client, 0, int(rng.integers(1, 20)), t)
        if rng.random() < 0.2:
            p.on_violation(r, t)
        elif rng.random() < 0.2:
            p.on_finish(r, t, True)
        now = t + float(rng.uniform(0, 5))
        fast = p.client_scores(now)
        assert fast.tobytes() == _vectorised(p, now).tobytes()


class _Scored(Policy):
    """Scores set by the test (few distinct values, so ties are common)."""

    def __init__(self) -> None:
        super().__init__()
        self.scores = np.zeros(0)

    def _grow(self, n_clients: int) -> None:
        self.scores = np.zeros(n_clients)

    def client_scores(self, now_s: float) -> FloatArray:
        return self.scores.copy()


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_queue_few_client_selection_equals_vectorised(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pol = _Scored()
    # Up to 40 clients: both the dense (≤ 32 registered) and the `scores_of` paths of `select`.
    n = int(rng.integers(1, 41))
    for c in range(n):
        pol.add_client(f"c{c}")
    q = PolicyQueue(pol)
    for rid in range(int(rng.integers(1, 80))):
        pol.scores = rng.choice([0.0, -0.0, 1.0, 2.5, math.inf, -math.inf], size=n)
        if rng.random() < 0.6 or len(q) == 0:
            q.push(Request(request_id=rid, client=f"c{int(rng.integers(0, n))}",
                           arrival_s=float(rng.choice([0.0, 1.0, float(rid)])),
                           prompt_tokens=1, output_tokens=1), float(rid))
        scores = pol.client_scores(0.0)
        backlogged = [int(c) for c in np.flatnonzero(q.backlog() > 0)]
        # The rule over every registered client's score, written out independently.
        expected = min(backlogged, key=lambda c: (float(scores[c]), q.head(c).arrival_s,
                                                  q.head(c).request_id))
        rev = backlogged[::-1]
        assert q._select_few(rev, scores) == expected
        assert q._select_few(rev, scores[rev], aligned=True) == expected
        idx = np.asarray(backlogged, dtype=np.int64)
        assert q._select_many(idx, scores[idx]) == expected
        assert q.select(0.0) == expected
        if rng.random() < 0.4:
            assert q.pop(float(rid)) is not None
