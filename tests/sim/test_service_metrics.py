"""Service metrics that move (issue #17): on a 1 : 2 overload FCFS's service Jain is far from 1
and every fair experiment's is near 1, with the light client's service share near one half."""

from __future__ import annotations

import pytest
from sim_factories import engine, profile, workload

from exfairs.metrics import compute_metrics
from exfairs.sim.runner import simulate

PROMPT, OUTPUT = 64, 32
ENGINE = dict(max_num_seqs=4, max_num_batched_tokens=256, block_size=16, num_gpu_blocks=64)
WINDOW = (10.0, 50.0)


def _overload_metrics(exp: str) -> tuple[float, float]:
    # light sends 8 requests/s, heavy 16/s: the engine serves about 10/s, so each alone is
    # over its fair half.
    specs = [("heavy", i / 16.0, PROMPT, OUTPUT) for i in range(16 * 50)]
    specs += [("light", 0.01 + i / 8.0, PROMPT, OUTPUT) for i in range(8 * 50)]
    wl = workload(specs, clients=["light", "heavy"])
    res = simulate(wl, exp, profile(fixed_ms=10.0, prefill_token_ms=0.05, decode_seq_ms=0.5),
                   engine=engine(**ENGINE))
    m = compute_metrics(res.records, wl.clients, window=WINDOW, service_window_s=5.0)
    assert m.fairness.service_windows == 8  # both queued throughout the 8 windows
    return m.fairness.jain_service, m.client("light").backlogged_service_share


@pytest.mark.parametrize("exp", ["QUEUE_FCFS", "FCFS"])
def test_fcfs_service_jain_is_far_from_one(exp: str) -> None:
    jain, light = _overload_metrics(exp)
    # Service follows the arrival rates, 1 : 2: Jain = 9/10, the light share 1/3.
    assert jain == pytest.approx(0.9, abs=0.02)
    assert light == pytest.approx(1 / 3, abs=0.03)


@pytest.mark.parametrize("exp", ["QUEUE_VTC", "VTC", "ENGINE_VTC", "QUEUE_ExFairS", "ExFairS",
                                 "ENGINE_ExFairS"])
def test_fair_experiments_service_jain_near_one(exp: str) -> None:
    jain, light = _overload_metrics(exp)
    assert jain > 0.98
    assert 0.45 <= light <= 0.55
