"""The capacity estimate against the simulator: a saturated engine completes about that many
requests per second (the estimate ignores scheduling gaps, so it is a slight upper bound)."""

from __future__ import annotations

import numpy as np
import pytest

from exfairs.calibration.capacity import estimate_capacity_rps
from exfairs.calibration.profile import load_profile
from exfairs.scenario import load_scenario
from exfairs.sim.runner import simulate
from exfairs.workload import draw_workload


@pytest.mark.parametrize("name", ["default", "load-sweep"])
def test_saturated_simulator_throughput_matches_the_estimate(name: str) -> None:
    prof = load_profile("a100-llama2-7b")
    cost = prof.cost_model()
    sc = load_scenario(name)
    cap = estimate_capacity_rps(sc, cost, prof.engine)
    # Twice the capacity keeps the engine saturated from the first seconds to the horizon.
    w = draw_workload(sc, 0, cost, load_factor=2.0, capacity_rps=cap)
    result = simulate(w, "FCFS", prof)
    finish = np.array([r.finish_s for r in result.records if r.finish_s is not None])
    lo, hi = 0.25 * sc.duration_s, sc.duration_s
    served_rps = np.count_nonzero((finish >= lo) & (finish < hi)) / (hi - lo)
    assert served_rps == pytest.approx(cap, rel=0.15)
    assert served_rps <= cap * 1.05
