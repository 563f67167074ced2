"""Decisions cost O(compared clients), not O(registered clients) (issue 13, item 6).

`Policy.scores_of(indices)` must be `client_scores()[indices]` bit for bit for every registered
policy (overrides compute only the asked clients), and `state_snapshot_of` the snapshot
restricted, on random hook sequences driven through a `PolicyQueue`; `add_clients` must register
exactly as `add_client` one by one (tests/sim/test_idle_clients.py: a simulation does not change
with idle registered clients).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_factories import req

from exfairs.policies import Policy, PolicyQueue, available_policies, make_policy
from exfairs.policies.registry import policy_class

POLICIES = [n for n in available_policies()
            if not policy_class(n).__module__.startswith("test_")]
# ExFairS variants whose scores take other paths (early violations, other orders).
VARIANTS = [(n, {}) for n in POLICIES] + [
    ("ExFairS", {"early_violations": True}), ("ExFairS", {"order": "arrival"}),
    ("ExFairS", {"order": "score"}), ("ExFairS", {"early_violations": True, "order": "arrival"}),
]
N_CLIENTS = 14  # > the few-client thresholds, so both paths of every policy run


def _check(p: Policy, now: float, rng: np.random.Generator) -> None:
    full = np.asarray(p.client_scores(now), dtype=np.float64)
    for size in (1, 3, 8, 11, N_CLIENTS):
        idx = rng.permutation(N_CLIENTS)[:size].astype(np.int64)
        got = np.asarray(p.scores_of(idx, now), dtype=np.float64)
        assert got.shape == idx.shape
        assert got.tobytes() == full[idx].tobytes(), (type(p).__name__, size)
    # Sparse samples: `state_snapshot_of` is the full snapshot restricted, value for value.
    snap = p.state_snapshot(now)
    some = sorted(rng.permutation(N_CLIENTS)[:5].tolist())
    sub = p.state_snapshot_of(some, now)
    assert list(sub) == list(snap)
    for k, vals in sub.items():
        assert np.asarray(vals).tobytes() == np.asarray([snap[k][c] for c in some]).tobytes(), k


@pytest.mark.parametrize(("name", "params"), VARIANTS,
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in p.items())}"
                              for n, p in VARIANTS])
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_scores_of_equals_client_scores_subset(name: str, params: dict[str, object],
                                               seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = make_policy(name, params)
    p.add_clients([(f"c{c}", float(rng.choice([1.0, 0.5, 3.0]))) for c in range(N_CLIENTS)])
    q = PolicyQueue(p)
    running: list = []
    t = 0.0
    for rid in range(int(rng.integers(1, 70))):
        t += float(rng.exponential(0.3))
        e2e = float(rng.uniform(0.2, 10)) if rng.random() < 0.8 else None
        r = req(rid, f"c{int(rng.integers(0, N_CLIENTS))}", t, prompt=int(rng.integers(1, 300)),
                output=int(rng.integers(1, 100)), e2e_s=e2e,
                unloaded_e2e_s=float(rng.uniform(0, 1)))
        p.on_arrival(r, t)
        q.push(r, t)
        if rng.random() < 0.5 and len(q):
            running.append(q.pop(t))
        if running and rng.random() < 0.4:
            x = running[int(rng.integers(0, len(running)))]
            p.on_service(x.client, 0, int(rng.integers(1, 20)), t)
        if running and rng.random() < 0.2:
            x = running.pop(int(rng.integers(0, len(running))))
            if rng.random() < 0.5:
                p.on_violation(x, t)
                p.on_finish(x, t, False)
            else:
                p.on_finish(x, t, True)
        _check(p, t + float(rng.uniform(0, 3)), rng)
        if running:
            # The default choose_victim asks scores_of for the running clients only.
            assert p.choose_victim(running, t) in running


@pytest.mark.parametrize("name", POLICIES)
def test_add_clients_registers_as_add_client(name: str) -> None:
    pairs = [("x", 1.0), ("y", 2.0), ("x", 1.0), ("z", 0.5)]
    one, bulk = make_policy(name), make_policy(name)
    expected = [one.add_client(n, w) for n, w in pairs]
    assert bulk.add_clients(pairs) == expected == [0, 1, 0, 2]
    assert list(bulk.client_names) == list(one.client_names)
    assert bulk.weights.tobytes() == one.weights.tobytes()
    assert (np.asarray(bulk.client_scores(0.0)).tobytes()
            == np.asarray(one.client_scores(0.0)).tobytes())


def test_add_clients_rejects_bad_weight_naming_it() -> None:
    from exfairs.errors import ConfigError
    with pytest.raises(ConfigError, match="weight"):
        make_policy("VTC").add_clients([("a", 1.0), ("b", 0.0)])

