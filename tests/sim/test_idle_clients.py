"""Idle registered clients change no decision (issue 13, item 6): the same requests from the
same senders give identical records whether or not hundreds of clients that never send are
registered behind them, in every mode of the policies that rank clients."""

from __future__ import annotations

import pytest
from sim_factories import engine, profile, workload

from exfairs.records import SLO, ClientInfo, Workload
from exfairs.sim.runner import simulate


@pytest.mark.parametrize("exp", ["QUEUE_VTC", "ENGINE_VTC", "VTC", "QUEUE_ExFairS",
                                 "ENGINE_ExFairS", "ExFairS", "ENGINE_EDF",
                                 "QUEUE_ROUND_ROBIN", "QUEUE_DRR"])
def test_idle_registered_clients_change_nothing(exp: str) -> None:
    # 12 senders (more than the few-client paths handle), overloaded so that queues build up,
    # deadlines pass and the engine preempts.
    specs = [(f"c{i % 12}", 0.01 * i, 40 + (37 * i) % 300, 5 + (13 * i) % 60) for i in range(150)]
    small = workload(specs, slo=SLO(e2e_s=2.0, ttft_s=0.5))
    big = Workload(name=small.name, seed=small.seed,
                   clients=small.clients + tuple(ClientInfo(f"idle{i}") for i in range(300)),
                   requests=small.requests, duration_s=small.duration_s)
    cfg = engine(num_gpu_blocks=60)
    a = simulate(small, exp, profile(), engine=cfg, sample_every_s=1e9)
    b = simulate(big, exp, profile(), engine=cfg, sample_every_s=1e9)
    assert a.records == b.records
    assert a.steps == b.steps
