"""`simulate(admission_profile=...)`: the predictive limit prices requests with the given
profile (as a live gate does with the profile its run was prepared with), independently of the
step costs the simulation runs on."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sim_factories import engine, profile, workload

from exfairs.policies.admission import AdmissionConfig
from exfairs.records import SLO, Outcome, Workload
from exfairs.sim.costs import LinearStepCost
from exfairs.sim.runner import simulate

FAST = profile(fixed_ms=10.0, decode_seq_ms=1.0, prefill_token_ms=0.01)
SLOW = profile(fixed_ms=20.0, decode_seq_ms=2.0, prefill_token_ms=0.02)
ENG = engine(max_num_seqs=16, num_gpu_blocks=400)
ADMIT = AdmissionConfig.parse("hopeless=reject,limit=predictive")


def _overload() -> Workload:
    specs = [("a" if i % 3 else "b", i * 0.02, 20, 50) for i in range(300)]
    wl = workload(specs, clients=["a", "b"], slo=SLO(e2e_s=1.2))
    return replace(wl, requests=tuple(replace(r, unloaded_e2e_s=0.56) for r in wl.requests))


@pytest.mark.parametrize("exp", ["QUEUE_ExFairS", "ENGINE_ExFairS"])
def test_the_runs_own_profile_as_admission_profile_changes_nothing(exp: str) -> None:
    wl = _overload()
    a = simulate(wl, exp, FAST, engine=ENG, admission=ADMIT)
    b = simulate(wl, exp, FAST, engine=ENG, admission=ADMIT, admission_profile=FAST)
    assert a.records == b.records


@pytest.mark.parametrize("exp", ["QUEUE_ExFairS", "ENGINE_ExFairS"])
def test_the_limit_follows_the_admission_profile_not_the_step_costs(exp: str) -> None:
    """Same step costs (FAST); a limit priced with SLOW predicts every request slower, so it
    admits fewer at once than one priced with FAST, and equals a run whose own costs are SLOW's
    as far as the limit is concerned (step costs differ, so records do not)."""
    wl = _overload()
    fast_cost = LinearStepCost(FAST.cost_model(ENG.max_num_batched_tokens))
    own = simulate(wl, exp, FAST, engine=ENG, admission=ADMIT, step_cost=fast_cost)
    priced_slow = simulate(wl, exp, FAST, engine=ENG, admission=ADMIT, step_cost=fast_cost,
                           admission_profile=SLOW)
    assert own.records != priced_slow.records

    def peak_running(res: object) -> int:
        events = sorted([(r.dispatch_s, 1) for r in res.records  # type: ignore[attr-defined]
                         if r.outcome is not Outcome.REJECTED]
                        + [(r.finish_s, -1) for r in res.records  # type: ignore[attr-defined]
                           if r.outcome is not Outcome.REJECTED])
        run = peak = 0
        for _, d in events:
            run += d
            peak = max(peak, run)
        return peak

    assert peak_running(priced_slow) <= peak_running(own)
