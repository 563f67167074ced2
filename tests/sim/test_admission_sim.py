"""SLO-aware admission and hopeless requests in the simulator (issue 15): defaults change
nothing, rejected requests are their own outcome and a violation, the fast path equals step by
step, and the mode restrictions are reported."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from sim_factories import engine, profile, workload

from exfairs.errors import ConfigError
from exfairs.metrics import compute_metrics
from exfairs.policies.admission import AdmissionConfig
from exfairs.records import SLO, Outcome, Workload
from exfairs.sim.plan import StepInfo
from exfairs.sim.runner import simulate

PROF = profile(fixed_ms=10.0, decode_seq_ms=1.0, prefill_token_ms=0.01)
ENG = engine(max_num_seqs=16, num_gpu_blocks=400)
ENG4 = engine(max_num_seqs=4, num_gpu_blocks=400)  # 4 decoders: 14-ms steps, 0.7 s per request


def _overload(gap_s: float = 0.01, n: int = 600) -> Workload:
    # Two clients; each request alone takes ~0.56 s (50 steps of 11 ms plus its prefill); e2e
    # SLO 1.2 s. Default: 100 requests/s for 6 s, far over capacity, so queued requests soon
    # become hopeless.
    specs = [("a" if i % 3 else "b", i * gap_s, 20, 50) for i in range(n)]
    wl = workload(specs, clients=["a", "b"], slo=SLO(e2e_s=1.2))
    return replace(wl, requests=tuple(replace(r, unloaded_e2e_s=0.56) for r in wl.requests))


@pytest.mark.parametrize("exp", ["QUEUE_VTC", "ENGINE_ExFairS", "VTC"])
def test_default_admission_changes_nothing(exp: str) -> None:
    wl = _overload()
    a = simulate(wl, exp, PROF, engine=ENG)
    b = simulate(wl, exp, PROF, engine=ENG, admission=AdmissionConfig())
    assert a.records == b.records


@pytest.mark.parametrize("spec", ["hopeless=demote", "hopeless=reject",
                                  "hopeless=reject,limit=predictive", "limit=predictive",
                                  "hopeless=reject,limit=feedback",
                                  "limit=predictive+feedback"])
@pytest.mark.parametrize("exp", ["QUEUE_FCFS", "QUEUE_ExFairS", "QUEUE_DRR"])
def test_admission_fast_path_equals_step_by_step(exp: str, spec: str) -> None:
    wl = _overload()
    adm = AdmissionConfig.parse(spec)
    fast = simulate(wl, exp, PROF, engine=ENG, admission=adm)
    slow = simulate(wl, exp, PROF, engine=ENG, admission=adm, step_by_step=True)
    assert fast.records == slow.records


def test_rejected_requests_are_violations_reported_apart() -> None:
    wl = _overload(gap_s=0.12, n=250)  # ~1.5x what 4 decoders serve (0.7 s per 4)
    base = simulate(wl, "QUEUE_FCFS", PROF, engine=ENG4)
    rej = simulate(wl, "QUEUE_FCFS", PROF, engine=ENG4,
                   admission=AdmissionConfig(hopeless="reject"))
    rejected = [r for r in rej.records if r.outcome is Outcome.REJECTED]
    assert rejected and not any(r.outcome is Outcome.REJECTED for r in base.records)
    for r in rejected:  # refused at the gate once it could not make it, never run
        assert r.finish_s is not None and r.finish_s + 0.56 > r.arrival_s + 1.2
        assert r.generated_tokens == 0 and r.dispatch_s is None
    m_base = compute_metrics(base.records, wl.clients)
    m_rej = compute_metrics(rej.records, wl.clients)
    assert m_rej.overall.rejected == len(rejected) and m_base.overall.rejected == 0
    assert m_rej.overall.violations >= m_rej.overall.rejected
    # The unloaded-latency rule alone is too lax to help here: requests released with a little
    # slack are late at the loaded pace (0.7 s, not 0.56 s) — measured, not assumed.
    assert m_rej.overall.slo_met >= m_base.overall.slo_met - 2


def test_predictive_limit_keeps_admitted_requests_on_time() -> None:
    # Tight budgets: 16 decoders make steps of 26 ms, 1.4 s for 50 tokens; the limit keeps the
    # batch small enough that what is admitted meets its SLO.
    wl = _overload()
    base = simulate(wl, "QUEUE_FCFS", PROF, engine=ENG)
    lim = simulate(wl, "QUEUE_FCFS", PROF, engine=ENG,
                   admission=AdmissionConfig(hopeless="reject", limit="predictive"))
    served = [r for r in lim.records if r.outcome.completed]
    late = [r for r in served if r.outcome is Outcome.VIOLATED]
    assert len(late) <= 0.1 * len(served)
    assert (compute_metrics(lim.records, wl.clients).overall.slo_met
            > compute_metrics(base.records, wl.clients).overall.slo_met)


def test_feedback_limit_learns_a_batch_that_keeps_admitted_requests_on_time() -> None:
    # 20 requests/s for 30 s, ~2x what 16 decoders serve, whose 1.4-s latency misses the 1.2-s
    # SLO; without a cost model the feedback limit learns a smaller batch from the late
    # finishes and rejects picks that would be late at the observed pace (~30x the requests on
    # time of the fixed gate, measured; predictive, with the model, ~45x).
    wl = _overload(gap_s=0.05)
    base = simulate(wl, "QUEUE_FCFS", PROF, engine=ENG)
    fb = simulate(wl, "QUEUE_FCFS", PROF, engine=ENG,
                  admission=AdmissionConfig(hopeless="reject", limit="feedback"))
    rej = simulate(wl, "QUEUE_FCFS", PROF, engine=ENG,
                   admission=AdmissionConfig(hopeless="reject"))
    m = {k: compute_metrics(r.records, wl.clients).overall
         for k, r in (("base", base), ("fb", fb), ("rej", rej))}
    assert m["fb"].slo_met > 10 * max(m["base"].slo_met, m["rej"].slo_met)
    served = [r for r in fb.records if r.outcome.completed]
    late = sum(r.outcome is Outcome.VIOLATED for r in served)
    served_rej = [r for r in rej.records if r.outcome.completed]
    late_rej = sum(r.outcome is Outcome.VIOLATED for r in served_rej)
    assert late / len(served) < 0.5 * late_rej / len(served_rej)


@pytest.mark.parametrize(("exp", "spec"), [("VTC", "hopeless=demote"),
                                           ("FCFS", "hopeless=reject"),
                                           ("ExFairS", "limit=predictive"),
                                           ("VTC", "limit=feedback"),
                                           ("ENGINE_VTC", "limit=feedback"),
                                           ("ENGINE_VTC", "limit=predictive+feedback")])
def test_unsupported_mode_is_a_config_error(exp: str, spec: str) -> None:
    with pytest.raises(ConfigError) as exc:
        simulate(_overload(), exp, PROF, engine=ENG, admission=AdmissionConfig.parse(spec))
    assert exc.value.field == "admission"


def test_engine_mode_demotion_reorders_the_waiting_queue() -> None:
    wl = _overload(gap_s=0.12, n=250)
    a = simulate(wl, "ENGINE_FCFS", PROF, engine=ENG4)
    b = simulate(wl, "ENGINE_FCFS", PROF, engine=ENG4,
                 admission=AdmissionConfig(hopeless="demote"))
    first = [[r.request_id for r in sorted(x.records, key=lambda r: r.first_token_s or 0.0)]
             for x in (a, b)]
    assert first[0] != first[1]
    assert first[0] == sorted(first[0])  # FCFS: arrival order; demoted: hopeless ones later


# -- engine mode: the admission decides inside the scheduler (EngineAdmission) ---------------------

@pytest.mark.parametrize("spec", ["hopeless=reject", "limit=predictive",
                                  "hopeless=reject,limit=predictive",
                                  "hopeless=demote,limit=predictive"])
@pytest.mark.parametrize("exp", ["ENGINE_FCFS", "ENGINE_ExFairS", "ENGINE_DRR"])
def test_engine_admission_fast_path_equals_step_by_step(exp: str, spec: str) -> None:
    wl = _overload()
    adm = AdmissionConfig.parse(spec)
    fast = simulate(wl, exp, PROF, engine=ENG, admission=adm)
    slow = simulate(wl, exp, PROF, engine=ENG, admission=adm, step_by_step=True)
    assert fast.records == slow.records
    assert fast.policy_samples == slow.policy_samples and fast.steps == slow.steps


def test_engine_mode_rejects_hopeless_waiting_requests_before_they_run() -> None:
    wl = _overload(gap_s=0.12, n=250)  # ~1.5x what 4 decoders serve
    ran: set[int] = set()

    def observe(step: StepInfo) -> None:
        ran.update(rid for rid, _, _ in step.scheduled)

    base = simulate(wl, "ENGINE_FCFS", PROF, engine=ENG4)
    rej = simulate(wl, "ENGINE_FCFS", PROF, engine=ENG4, observer=observe,
                   admission=AdmissionConfig(hopeless="reject"))
    rejected = [r for r in rej.records if r.outcome is Outcome.REJECTED]
    assert rejected and not any(r.outcome is Outcome.REJECTED for r in base.records)
    for r in rejected:  # refused in the waiting queue once it could not make it, never run
        assert r.finish_s is not None and r.finish_s + 0.56 > r.arrival_s + 1.2
        assert r.generated_tokens == 0 and r.request_id not in ran
        assert r.error is not None and "engine" in r.error
    m = compute_metrics(rej.records, wl.clients)
    assert m.overall.rejected == len(rejected)
    assert m.overall.violations >= m.overall.rejected
    # What is not rejected is served, and rejecting frees capacity: fewer served late.
    served = [r for r in rej.records if r.outcome.completed]
    assert len(served) + len(rejected) == len(wl.requests)
    late = sum(r.outcome is Outcome.VIOLATED for r in served)
    assert late < sum(r.outcome is Outcome.VIOLATED for r in base.records)


def test_engine_mode_predictive_limit_caps_running_and_keeps_them_on_time() -> None:
    wl = _overload()
    running: list[list[int]] = [[], []]

    def observer(i: int) -> Any:
        return lambda step: running[i].append(step.num_running)

    base = simulate(wl, "ENGINE_FCFS", PROF, engine=ENG, observer=observer(0))
    lim = simulate(wl, "ENGINE_FCFS", PROF, engine=ENG, observer=observer(1),
                   admission=AdmissionConfig(hopeless="reject", limit="predictive"))
    # Without the limit max_num_seqs (16) run; with it the batch stays smaller.
    assert max(running[0]) == 16 and max(running[1]) < 16
    served = [r for r in lim.records if r.outcome.completed]
    late = [r for r in served if r.outcome is Outcome.VIOLATED]
    assert len(late) <= 0.1 * len(served)
    assert (compute_metrics(lim.records, wl.clients).overall.slo_met
            > compute_metrics(base.records, wl.clients).overall.slo_met)


def test_engine_admission_preempted_requests_are_readmitted_not_rejected() -> None:
    # A small cache: requests are preempted back into the waiting queue; once admitted, a
    # request is served to the end (never REJECTED), whatever its deadline says later.
    eng = engine(max_num_seqs=16, num_gpu_blocks=60, block_size=4)
    wl = _overload(gap_s=0.02, n=300)
    admitted: set[int] = set()

    def observe(step: StepInfo) -> None:
        admitted.update(step.admitted)

    res = simulate(wl, "ENGINE_VTC", PROF, engine=eng, observer=observe,
                   admission=AdmissionConfig(hopeless="reject", limit="predictive"))
    assert any(r.preemptions for r in res.records)
    assert any(r.outcome is Outcome.REJECTED for r in res.records)
    for r in res.records:
        if r.request_id in admitted:
            assert r.outcome.completed
        else:
            assert r.outcome is Outcome.REJECTED
