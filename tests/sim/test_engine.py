"""Engine model: hand-computed traces, queueing theory, configuration, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sim_factories import engine, profile, workload

from exfairs.errors import ConfigError, InputError
from exfairs.records import SLO, ClientInfo, Outcome, Request, Workload
from exfairs.rng import stream
from exfairs.sim.config import EngineConfig
from exfairs.sim.plan import StepInfo
from exfairs.sim.runner import simulate

MODES = ["FCFS", "QUEUE_FCFS", "ENGINE_FCFS"]


@pytest.mark.parametrize("exp", MODES)
@pytest.mark.parametrize("step_by_step", [False, True])
def test_three_request_trace_by_hand(exp: str, step_by_step: bool) -> None:
    # Step cost 10 ms + 0.1 ms per prefill token + 1 ms per decode sequence; a 64-token budget,
    # two sequences at most. Hand-computed schedule:
    #  s1 [0, 16.4 ms]      A prefill 64/100                    (64 tokens → 16.4 ms)
    #  s2 [16.4, 32.8]      A prefill 36 (done: token 1), B arrived at 10 ms: prefill 28/30
    #  s3 [32.8, 44.0]      A decode (token 2), B prefill 2 (done: token 1); C (20 ms) waits:
    #                       two sequences run                   (10 + 0.2 + 1 = 11.2 ms)
    #  s4 [44.0, 56.0]      A decode (token 3, finished), B decode (token 2, finished)  (12 ms)
    #  s5 [56.0, 67.0]      C prefill 10 (token 1)              (11 ms)
    #  s6 [67.0, 78.0]      C decode (token 2, finished)        (11 ms)
    prof = profile(fixed_ms=10.0, prefill_token_ms=0.1, decode_seq_ms=1.0)
    eng = engine(max_num_seqs=2, max_num_batched_tokens=64, block_size=16, num_gpu_blocks=100)
    wl = workload([("a", 0.0, 100, 3), ("b", 0.010, 30, 2), ("c", 0.020, 10, 2)])
    res = simulate(wl, exp, prof, engine=eng, step_by_step=step_by_step)
    a, b, c = res.records
    assert a.token_times_s == pytest.approx((0.0328, 0.0440, 0.0560), abs=1e-12)
    assert b.token_times_s == pytest.approx((0.0440, 0.0560), abs=1e-12)
    assert c.token_times_s == pytest.approx((0.0670, 0.0780), abs=1e-12)
    assert (a.first_token_s, a.finish_s) == (a.token_times_s[0], a.token_times_s[-1])
    assert (c.first_token_s, c.finish_s) == (c.token_times_s[0], c.token_times_s[-1])
    assert res.steps == 6
    assert res.sim_end_s == pytest.approx(0.078, abs=1e-12)
    assert all(r.outcome is Outcome.FINISHED and r.preemptions == 0 for r in res.records)
    assert a.dispatch_s == 0.0  # submitted (or released) at the first decision point


@pytest.mark.parametrize("exp", ["FCFS", "QUEUE_FCFS", "ENGINE_FCFS"])
@pytest.mark.parametrize("step_by_step", [False, True])
def test_preemption_trace_by_hand(exp: str, step_by_step: bool) -> None:
    # Every step 10 ms; 4 blocks of 4 tokens. A and B (4-token prompts, 6 outputs) are admitted
    # together (1 block each) and emit tokens 1..5 at 10..50 ms, growing to 2 blocks each. At the
    # step starting at 50 ms A needs a third block, none is free: B (the newer) is preempted,
    # A emits its 6th token and finishes at 60 ms. B then recomputes prompt + 5 generated tokens
    # (9 tokens, 3 blocks) in one step and emits its 6th token at 70 ms.
    prof = profile(fixed_ms=10.0)
    eng = engine(max_num_seqs=2, max_num_batched_tokens=64, block_size=4, num_gpu_blocks=4)
    wl = workload([("a", 0.0, 4, 6), ("b", 0.0, 4, 6)])
    steps: list[StepInfo] = []
    res = simulate(wl, exp, prof, engine=eng, step_by_step=step_by_step, observer=steps.append)
    a, b = res.records
    assert a.token_times_s == pytest.approx((0.01, 0.02, 0.03, 0.04, 0.05, 0.06), abs=1e-12)
    assert b.token_times_s == pytest.approx((0.01, 0.02, 0.03, 0.04, 0.05, 0.07), abs=1e-12)
    assert (a.preemptions, b.preemptions) == (0, 1)
    pre = [s for s in steps if s.preempted]
    assert len(pre) == 1 and pre[0].preempted == (1,) and pre[0].start_s == pytest.approx(0.05)
    recompute = next(s for s in steps if s.start_s == pytest.approx(0.06))
    assert recompute.scheduled == ((1, 9, 0),)  # prompt + 5 generated, from scratch
    assert max(s.blocks_in_use for s in steps) <= 4


def test_md1_mean_wait_matches_pollaczek_khinchine() -> None:
    # One sequence at a time, every step (one prefill = the whole request) costs D: an M/D/1
    # queue. Pollaczek–Khinchine: Wq = ρ·D / (2·(1 − ρ)).
    d_s, lam, n = 0.1, 7.0, 20_000
    rho = lam * d_s
    rng = stream(1, "md1", "arrivals")
    arrivals = np.cumsum(rng.exponential(1.0 / lam, n))
    wl = workload([("a", float(t), 8, 1) for t in arrivals])
    res = simulate(wl, "FCFS", profile(fixed_ms=d_s * 1000.0),
                   engine=engine(max_num_seqs=1, max_num_batched_tokens=64))
    waits = np.array([r.first_token_s - r.arrival_s - d_s for r in res.records])
    assert waits.min() >= -1e-9
    expected = rho * d_s / (2 * (1 - rho))
    # Batch means over 20 batches (after a warm-up batch) for the confidence interval.
    batches = waits[n // 20:].reshape(19, -1).mean(axis=1)
    half = 2.861 * batches.std(ddof=1) / math.sqrt(len(batches))  # t(0.995, 18)
    assert abs(batches.mean() - expected) <= half, (batches.mean(), expected, half)
    # ... and the CI is informative (not so wide that anything passes).
    assert half < 0.2 * expected


def test_engine_config_validation_names_the_field() -> None:
    with pytest.raises(ConfigError) as ei:
        engine(max_num_seqs=0)
    assert ei.value.field == "max_num_seqs"
    with pytest.raises(ConfigError) as ei:
        engine(scheduling_policy="lifo")
    assert ei.value.field == "scheduling_policy"
    with pytest.raises(ConfigError) as ei:
        engine(long_prefill_token_threshold=-1)
    assert ei.value.field == "long_prefill_token_threshold"
    with pytest.raises(ConfigError) as ei:
        engine(max_num_seqs=64, max_num_batched_tokens=32)
    assert ei.value.field == "max_num_batched_tokens"
    with pytest.raises(ConfigError) as ei:
        engine(enable_chunked_prefill=False, max_num_batched_tokens=512, max_model_len=2048)
    assert ei.value.field == "max_num_batched_tokens"
    with pytest.raises(ConfigError) as ei:
        engine(enable_chunked_prefill=1)
    assert ei.value.field == "enable_chunked_prefill"


def test_engine_config_from_profile() -> None:
    prof = profile(num_gpu_blocks=77, block_size=8, max_num_seqs=5, max_num_batched_tokens=300,
                   max_model_len=1000)
    cfg = EngineConfig.from_profile(prof)
    assert (cfg.num_gpu_blocks, cfg.block_size, cfg.max_num_seqs, cfg.max_num_batched_tokens,
            cfg.max_model_len) == (77, 8, 5, 300, 1000)
    assert cfg.enable_chunked_prefill and cfg.long_prefill_token_threshold == 0
    assert cfg.scheduling_policy == "fcfs" and cfg.kv_capacity_tokens == 616
    cfg2 = EngineConfig.from_profile(prof, max_num_seqs=3, scheduling_policy="priority")
    assert (cfg2.max_num_seqs, cfg2.scheduling_policy, cfg2.num_gpu_blocks) == (3, "priority", 77)
    with pytest.raises(ConfigError) as ei:
        EngineConfig.from_profile(prof, max_num_seq=3)
    assert ei.value.field == "max_num_seq"


def test_unservable_requests_fail_and_are_recorded() -> None:
    prof = profile()
    eng = engine(block_size=16, num_gpu_blocks=4, max_model_len=100)
    wl = workload([("a", 0.0, 90, 20),   # over max_model_len
                   ("a", 0.1, 40, 40),   # 79 tokens: 5 blocks > 4
                   ("a", 0.2, 30, 30)])  # 59 tokens: 4 blocks, fits
    res = simulate(wl, "QUEUE_FCFS", prof, engine=eng)
    r0, r1, r2 = res.records
    assert r0.outcome is Outcome.FAILED and "max_model_len" in (r0.error or "")
    assert r1.outcome is Outcome.FAILED and "blocks" in (r1.error or "")
    assert r0.generated_tokens == 0 and r0.token_times_s == ()
    assert r2.outcome is Outcome.FINISHED and r2.generated_tokens == 30


def test_slo_outcomes() -> None:
    prof = profile(fixed_ms=10.0)
    eng = engine(max_num_seqs=1)
    # Each request: 1 prefill step + 4 decode steps = 50 ms alone; the second waits 50 ms.
    wl = workload([("a", 0.0, 8, 5), ("b", 0.0, 8, 5)], slo=SLO(e2e_s=0.075))
    res = simulate(wl, "FCFS", prof, engine=eng)
    assert [r.outcome for r in res.records] == [Outcome.FINISHED, Outcome.VIOLATED]
    assert res.records[1].e2e_s == pytest.approx(0.1)


def test_same_input_gives_identical_results() -> None:
    wl = _random_workload(seed=3, n=300)
    prof = profile(fixed_ms=5.0, prefill_token_ms=0.02, decode_seq_ms=0.3, decode_ctx_ms=0.001)
    eng = engine(max_num_seqs=6, max_num_batched_tokens=256, block_size=8, num_gpu_blocks=120)
    for exp in ("VTC", "QUEUE_VTC", "ENGINE_VTC", "ENGINE_FCFS"):
        r1 = simulate(wl, exp, prof, engine=eng, sample_every_s=0.5)
        r2 = simulate(wl, exp, prof, engine=eng, sample_every_s=0.5)
        assert r1 == r2
        assert len(r1.policy_samples) >= int(r1.sim_end_s / 0.5)


@pytest.mark.parametrize("exp", ["FCFS", "QUEUE_FCFS", "ENGINE_FCFS", "VTC", "QUEUE_VTC",
                                 "ENGINE_VTC", "ROUND_ROBIN", "QUEUE_ROUND_ROBIN"])
def test_fast_path_equals_step_by_step(exp: str) -> None:
    wl = _random_workload(seed=7, n=400, slo=SLO(e2e_s=3.0, ttft_s=1.0))
    prof = profile(fixed_ms=5.0, decode_fixed_ms=1.0, prefill_token_ms=0.02,
                   prefill_attn_ms=1e-5, decode_seq_ms=0.3, decode_ctx_ms=0.001, floor_ms=5.5)
    eng = engine(max_num_seqs=6, max_num_batched_tokens=256, block_size=8, num_gpu_blocks=100)
    fast = simulate(wl, exp, prof, engine=eng, sample_every_s=0.25)
    ref = simulate(wl, exp, prof, engine=eng, sample_every_s=0.25, step_by_step=True)
    assert fast.records == ref.records
    assert fast.policy_samples == ref.policy_samples
    assert (fast.steps, fast.sim_end_s) == (ref.steps, ref.sim_end_s)
    assert fast.decision_points < ref.decision_points  # the fast path did skip steps
    assert sum(r.preemptions for r in ref.records) > 0  # and the workload exercises preemption


def test_bad_arguments() -> None:
    wl = workload([("a", 0.0, 8, 2)])
    with pytest.raises(ConfigError):
        simulate(wl, "FCFS", profile(), sample_every_s=0.0)
    with pytest.raises(ConfigError):
        simulate(wl, "QUEUE_FCFS", profile(), max_inflight=0)
    with pytest.raises(InputError):
        simulate(wl, "NOPE", profile())
    bad = Workload(name="x", seed=0, clients=(ClientInfo("a"),),
                   requests=(Request(0, "zz", 0.0, 8, 2),), duration_s=1.0)
    with pytest.raises(InputError):
        simulate(bad, "FCFS", profile())
    unsorted = Workload(name="x", seed=0, clients=(ClientInfo("a"),),
                        requests=(Request(0, "a", 1.0, 8, 2), Request(1, "a", 0.5, 8, 2)),
                        duration_s=1.0)
    with pytest.raises(InputError):
        simulate(unsorted, "FCFS", profile())


def test_priority_mode_uses_priority_engine() -> None:
    wl = workload([("a", 0.0, 8, 2)])
    assert simulate(wl, "FCFS", profile()).engine.scheduling_policy == "priority"  # type: ignore[union-attr]
    assert simulate(wl, "QUEUE_FCFS", profile()).engine.scheduling_policy == "fcfs"  # type: ignore[union-attr]


def _random_workload(seed: int, n: int, slo: SLO | None = None) -> Workload:
    rng = stream(seed, "sim-test", "workload")
    t = np.cumsum(rng.exponential(0.02, n))
    prompts = rng.integers(1, 200, n)
    outs = rng.integers(1, 60, n)
    clients = rng.integers(0, 3, n)
    return workload([(f"c{int(c)}", float(a), int(p), int(o))
                     for c, a, p, o in zip(clients, t, prompts, outs, strict=True)],
                    clients=["c0", "c1", "c2"], slo=slo)
