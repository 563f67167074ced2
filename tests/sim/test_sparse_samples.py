"""Policy-sample layouts (issue 13, item 6): `simulate(..., policy_samples="sparse")`, the
default, keeps per sample only the clients heard from so far, with the values the dense samples
hold for them; "off" keeps none; records do not depend on the layout
(tests/core/test_sparse_samples_file.py: the results file)."""

from __future__ import annotations

import math

import pytest
from sim_factories import engine, profile, workload

from exfairs.errors import ConfigError
from exfairs.policies.registry import available_policies
from exfairs.records import SLO, ClientInfo, Workload
from exfairs.sim.runner import simulate


def _workload() -> Workload:
    # Clients start sending one after another (c_k from 0.3·k s), and 20 never send.
    specs = [(f"c{i % 10}", 0.3 * (i % 10) + 0.02 * i, 30 + (17 * i) % 200, 4 + (7 * i) % 40)
             for i in range(120)]
    wl = workload(specs, slo=SLO(e2e_s=3.0, ttft_s=0.5))
    return Workload(name=wl.name, seed=wl.seed,
                    clients=wl.clients + tuple(ClientInfo(f"idle{i}") for i in range(20)),
                    requests=wl.requests, duration_s=wl.duration_s)


@pytest.mark.parametrize("exp", ["QUEUE_VTC", "ENGINE_ExFairS", "ExFairS", "QUEUE_EDF",
                                 "QUEUE_DRR", "FCFS"])
def test_sparse_samples_are_the_dense_samples_of_the_clients_heard_from(exp: str) -> None:
    wl = _workload()
    index = {c.name: k for k, c in enumerate(wl.clients)}
    dense = simulate(wl, exp, profile(), engine=engine(), sample_every_s=0.25,
                     policy_samples="dense")
    sparse = simulate(wl, exp, profile(), engine=engine(), sample_every_s=0.25,
                      policy_samples="sparse")
    assert sparse.records == dense.records
    assert len(sparse.policy_samples) == len(dense.policy_samples) > 10
    sizes = set()
    for d, s in zip(dense.policy_samples, sparse.policy_samples, strict=True):
        assert d.clients is None and s.clients is not None
        assert s.time_s == d.time_s
        # Heard from by the decision that took the sample: at least every client with an
        # arrival by the sample time, never one whose first request came after the decision.
        arrived = {index[r.client] for r in wl.requests if r.arrival_s <= s.time_s}
        assert arrived <= set(s.clients) and list(s.clients) == sorted(s.clients)
        assert all(not c.startswith("idle") for c in (wl.clients[k].name for k in s.clients))
        sizes.add(len(s.clients))
        full = dict(d.values)
        for name, vals in s.values:
            assert vals == tuple(full[name][c] for c in s.clients), name
        dense_again = dict(s.dense(len(wl.clients)))
        for name, vals in dense_again.items():
            assert all(math.isnan(v) if c not in s.clients else v == full[name][c]
                       for c, v in enumerate(vals))
    assert len(sizes) > 1  # the client set grew over the run



def test_the_default_layout_is_sparse() -> None:
    wl = _workload()
    default = simulate(wl, "QUEUE_VTC", profile(), engine=engine(), sample_every_s=0.25)
    sparse = simulate(wl, "QUEUE_VTC", profile(), engine=engine(), sample_every_s=0.25,
                      policy_samples="sparse")
    assert default.policy_samples == sparse.policy_samples
    assert all(s.clients is not None for s in default.policy_samples)


@pytest.mark.parametrize("policy", available_policies())
@pytest.mark.parametrize("mode", ["", "QUEUE_", "ENGINE_"])
def test_records_do_not_depend_on_the_sample_layout(policy: str, mode: str) -> None:
    # Every registered policy in every mode: a snapshot must not change what the policy decides
    # (some snapshots advance lazy state), and "off" keeps the sample times as decision points.
    wl = _workload()
    runs = {layout: simulate(wl, mode + policy, profile(), engine=engine(), sample_every_s=0.25,
                             policy_samples=layout)
            for layout in ("sparse", "dense", "off")}
    assert runs["sparse"].records == runs["dense"].records == runs["off"].records
    assert runs["off"].policy_samples == ()
    assert runs["sparse"].steps == runs["off"].steps
    assert runs["sparse"].decision_points == runs["off"].decision_points


@pytest.mark.parametrize("bad", ["Sparse", "none", "", None, True])
def test_an_unknown_layout_is_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError) as err:
        simulate(_workload(), "FCFS", profile(), engine=engine(),
                 policy_samples=bad)  # type: ignore[arg-type]
    assert err.value.field == "policy_samples"
