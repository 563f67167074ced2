"""Property tests: engine invariants over random workloads and knobs (hypothesis)."""

from __future__ import annotations

import os
from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st
from sim_factories import engine, profile, workload

from exfairs.records import Outcome
from exfairs.sim.plan import StepInfo
from exfairs.sim.runner import simulate

EXPERIMENTS = ["FCFS", "QUEUE_FCFS", "ENGINE_FCFS", "VTC", "QUEUE_VTC", "ENGINE_VTC",
               "ROUND_ROBIN", "ENGINE_ROUND_ROBIN"]
FCFS_EXPERIMENTS = ("FCFS", "QUEUE_FCFS", "ENGINE_FCFS")


@st.composite
def cases(draw: st.DrawFn) -> tuple:
    n = draw(st.integers(1, 25))
    specs = []
    t = 0.0
    for _ in range(n):
        t += draw(st.sampled_from([0.0, 0.001, 0.01, 0.05, 0.3]))
        specs.append((draw(st.sampled_from(["a", "b", "c"])), t, draw(st.integers(1, 90)),
                      draw(st.integers(1, 40))))
    chunked = draw(st.booleans())
    seqs = draw(st.integers(1, 6))
    max_model_len = 128
    mnbt = draw(st.integers(max(seqs, max_model_len if not chunked else 1), 160))
    knobs = dict(
        max_num_seqs=seqs, max_num_batched_tokens=mnbt,
        block_size=draw(st.sampled_from([1, 2, 4, 16])),
        num_gpu_blocks=draw(st.integers(2, 60)),
        enable_chunked_prefill=chunked,
        long_prefill_token_threshold=draw(st.sampled_from([0, 0, 5, 32])),
        max_model_len=max_model_len,
    )
    costs = draw(st.sampled_from([
        dict(fixed_ms=10.0),
        dict(fixed_ms=2.0, prefill_token_ms=0.05, prefill_attn_ms=1e-4, decode_seq_ms=0.5,
             decode_ctx_ms=0.01, decode_fixed_ms=1.0, floor_ms=3.0),
    ]))
    exp = draw(st.sampled_from(EXPERIMENTS))
    return specs, knobs, costs, exp


@settings(max_examples=150, deadline=None)
@given(cases())
def test_engine_invariants(case: tuple) -> None:
    specs, knobs, costs, exp = case
    wl = workload(specs, clients=["a", "b", "c"])
    eng = engine(**knobs)
    steps: list[StepInfo] = []
    res = simulate(wl, exp, profile(**costs), engine=eng, observer=steps.append)

    # Resource limits, every step.
    for s in steps:
        assert 0 <= s.blocks_in_use <= eng.num_gpu_blocks
        assert s.num_running <= eng.max_num_seqs
        assert sum(n for _, n, _ in s.scheduled) <= eng.max_num_batched_tokens
        assert (s.n_steps >= 1 and s.end_s > s.start_s) or (
            s.n_steps == 0 and s.end_s == s.start_s and s.preempted and not s.scheduled)
        if eng.long_prefill_token_threshold and len(s.scheduled) > 1:
            assert all(n <= eng.long_prefill_token_threshold for _, n, _ in s.scheduled)

    # Recompute after preemption: the KV state seen by the scheduler restarts at 0, and a
    # finished request has computed prompt + output − 1 tokens since its last preemption.
    computed: dict[int, int] = defaultdict(int)
    preempted: dict[int, int] = defaultdict(int)
    first_admit: list[int] = []
    for s in steps:
        for rid in s.preempted:
            preempted[rid] += 1
            computed[rid] = 0
        for rid in s.admitted:
            if rid not in first_admit:
                first_admit.append(rid)
        for rid, n, before in s.scheduled:
            assert before == computed[rid], (rid, before, computed[rid])
            computed[rid] += n * s.n_steps if s.n_steps > 1 else n
    if exp in FCFS_EXPERIMENTS:
        assert first_admit == sorted(first_admit)  # FCFS: first admissions in arrival order

    # Every request accounted exactly once, with exactly its tokens.
    assert [r.request_id for r in res.records] == [r.request_id for r in wl.requests]
    block = eng.block_size
    for req, rec in zip(wl.requests, res.records, strict=True):
        fits = (req.prompt_tokens + req.output_tokens <= eng.max_model_len
                and -(-(req.prompt_tokens + req.output_tokens - 1) // block) <= eng.num_gpu_blocks)
        if not fits:
            assert rec.outcome is Outcome.FAILED and rec.generated_tokens == 0
            continue
        assert rec.outcome is Outcome.FINISHED  # no SLOs set
        assert rec.generated_tokens == req.output_tokens == len(rec.token_times_s)
        assert list(rec.token_times_s) == sorted(rec.token_times_s)
        assert rec.first_token_s == rec.token_times_s[0] > rec.arrival_s
        assert rec.finish_s == rec.token_times_s[-1]
        assert rec.dispatch_s is not None and rec.dispatch_s >= rec.arrival_s
        assert rec.preemptions == preempted[rec.request_id]
        assert computed[rec.request_id] == req.prompt_tokens + req.output_tokens - 1

    assert res.steps == sum(s.n_steps for s in steps)


@settings(max_examples=int(os.environ.get("SIM_DIFF_EXAMPLES", "150")), deadline=None)
@given(cases())
def test_fast_path_matches_reference(case: tuple) -> None:
    specs, knobs, costs, exp = case
    wl = workload(specs, clients=["a", "b", "c"])
    eng = engine(**knobs)
    fast = simulate(wl, exp, profile(**costs), engine=eng, sample_every_s=0.05)
    ref = simulate(wl, exp, profile(**costs), engine=eng, sample_every_s=0.05, step_by_step=True)
    assert fast.records == ref.records
    assert fast.policy_samples == ref.policy_samples
    assert fast.steps == ref.steps


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 20), st.integers(1, 4), st.integers(2, 30), st.integers(1, 30),
       st.sampled_from(FCFS_EXPERIMENTS))
def test_fcfs_keeps_order_among_equal_requests(n: int, seqs: int, prompt: int, out: int,
                                               exp: str) -> None:
    wl = workload([("abc"[i % 3], 0.001 * (i // 2), prompt, out) for i in range(n)],
                  clients=["a", "b", "c"])
    res = simulate(wl, exp, profile(), engine=engine(max_num_seqs=seqs, block_size=4,
                                                     num_gpu_blocks=40, max_model_len=128))
    firsts = [r.first_token_s for r in res.records]
    finishes = [r.finish_s for r in res.records]
    assert firsts == sorted(firsts)  # type: ignore[type-var]
    assert finishes == sorted(finishes)  # type: ignore[type-var]
