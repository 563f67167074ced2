"""The policy hooks as the simulator drives them: complete, once each, in time order, and the
tokens reported to `on_service` add up to what the records show."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_factories import engine, profile, workload

from exfairs.policies import register_policy
from exfairs.policies.base import FloatArray
from exfairs.policies.fcfs import FCFS
from exfairs.records import SLO, Outcome, Request
from exfairs.sim.plan import StepInfo
from exfairs.sim.runner import simulate


@register_policy("SIMTEST_RECORDER")
class Recorder(FCFS):
    """FCFS that records every hook call (the last instance is kept for the test)."""

    last: ClassVar[Recorder | None] = None

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int | str, float]] = []
        self.prefill: Counter[str] = Counter()
        self.decode: Counter[str] = Counter()
        Recorder.last = self

    def on_arrival(self, request: Request, now_s: float) -> None:
        self.calls.append(("arrival", request.request_id, now_s))

    def on_dispatch(self, request: Request, now_s: float) -> None:
        self.calls.append(("dispatch", request.request_id, now_s))

    def on_service(self, client: str, prefill_tokens: int, decode_tokens: int,
                   now_s: float) -> None:
        assert prefill_tokens >= 0 and decode_tokens >= 0 and prefill_tokens + decode_tokens > 0
        self.calls.append(("service", client, now_s))
        self.prefill[client] += prefill_tokens
        self.decode[client] += decode_tokens

    def on_finish(self, request: Request, now_s: float, slo_met: bool) -> None:
        self.calls.append(("finish" if slo_met else "finish_late", request.request_id, now_s))

    def on_preempt(self, request: Request, now_s: float) -> None:
        self.calls.append(("preempt", request.request_id, now_s))

    def on_violation(self, request: Request, now_s: float) -> None:
        self.calls.append(("violation", request.request_id, now_s))

    def on_drop(self, request: Request, now_s: float) -> None:
        self.calls.append(("drop", request.request_id, now_s))

    def client_scores(self, now_s: float) -> FloatArray:
        return np.zeros(self.n_clients)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from("ab"), st.sampled_from([0.0, 0.004, 0.02, 0.2]),
                       st.integers(1, 70), st.integers(1, 30)), min_size=1, max_size=20),
    st.integers(1, 4), st.integers(3, 40), st.sampled_from([1, 4, 16]),
    st.sampled_from(["SIMTEST_RECORDER", "QUEUE_SIMTEST_RECORDER", "ENGINE_SIMTEST_RECORDER"]),
    st.booleans(), st.sampled_from(["step", "stream"]), st.sampled_from(["chunk", "first_token"]),
)
def test_hooks_complete_ordered_and_consistent(
    gaps: list[tuple[str, float, int, int]], seqs: int, blocks: int, block_size: int, exp: str,
    step_by_step: bool, hook_order: str, credit: str,
) -> None:
    t = 0.0
    specs = []
    for c, gap, p, o in gaps:
        t += gap
        specs.append((c, t, p, o))
    wl = workload(specs, clients=["a", "b"], slo=SLO(e2e_s=0.3, ttft_s=0.1))
    eng = engine(max_num_seqs=seqs, max_num_batched_tokens=64, block_size=block_size,
                 num_gpu_blocks=blocks, max_model_len=128, hook_order=hook_order,
                 prompt_credit=credit)
    steps: list[StepInfo] = []
    res = simulate(wl, exp, profile(fixed_ms=10.0, decode_seq_ms=1.0), engine=eng,
                   step_by_step=step_by_step, observer=steps.append)
    rec = Recorder.last
    assert rec is not None
    times = [c[2] for c in rec.calls]
    assert times == sorted(times)  # hook times never decrease

    kinds: dict[str, Counter[int | str]] = defaultdict(Counter)
    for kind, key, _ in rec.calls:
        kinds[kind][key] += 1
    # Prefill tokens each request should have reported: every admission starts a prefill phase
    # of prompt + tokens generated so far (V1 recomputes both); a phase cut short by preemption
    # reported what it had computed, up to that. One exception, by definition: computing the KV
    # of the latest sampled token on top of everything else is a decode, also when it is the
    # last 1-token chunk of a recomputation (the step is exactly a decode step then).
    computed: dict[int, int] = defaultdict(int)
    phases: dict[int, list[tuple[float, int | None]]] = defaultdict(list)
    one_token_at: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for s in steps:
        for rid in s.preempted:
            start, _ = phases[rid][-1]
            phases[rid][-1] = (start, computed[rid])
            computed[rid] = 0
        for rid in s.admitted:
            phases[rid].append((s.start_s, None))
        for rid, n, before in s.scheduled:
            computed[rid] += n * s.n_steps if s.n_steps > 1 else n
            if n == 1:
                one_token_at[rid].append((s.start_s, before))
    expected_prefill: Counter[str] = Counter()
    for r in res.records:
        starts = [start for start, _ in phases[r.request_id]]
        for i, (start, cut) in enumerate(phases[r.request_id]):
            g = sum(1 for x in r.token_times_s if x <= start)
            full = r.prompt_tokens + g
            end = starts[i + 1] if i + 1 < len(starts) else float("inf")
            tail_is_decode = cut is None and g >= 1 and any(
                start <= t < end and before == full - 1 for t, before in one_token_at[r.request_id])
            expected_prefill[r.client] += (full - tail_is_decode) if cut is None else min(cut, full)
    for r in res.records:
        rid = r.request_id
        assert kinds["arrival"][rid] == 1
        assert kinds["violation"][rid] == (0 if r.outcome is Outcome.FINISHED else 1)
        if r.outcome is Outcome.FAILED:
            assert kinds["drop"][rid] == 1 and kinds["finish"][rid] + kinds["finish_late"][rid] == 0
            continue
        assert kinds["finish"][rid] == (1 if r.outcome is Outcome.FINISHED else 0)
        assert kinds["finish_late"][rid] == (1 if r.outcome is Outcome.VIOLATED else 0)
        assert kinds["preempt"][rid] == r.preemptions
        # Every mode: the first dispatch, and one per re-admission after a preemption.
        assert kinds["dispatch"][rid] == 1 + r.preemptions
    if credit == "first_token" and not exp.startswith("ENGINE_"):
        # What a client of the live server can see: the prompt with the first token, and a
        # recomputed prompt + the output so far with the next token after a preemption that
        # came after the first token (EngineConfig.prompt_credit); engine mode credits per chunk.
        expected_prefill = Counter()
        for r in res.records:
            if r.first_token_s is None:
                continue
            gens = {sum(1 for x in r.token_times_s if x <= s.start_s)
                    for s in steps if r.request_id in s.preempted}
            expected_prefill[r.client] += r.prompt_tokens + sum(
                r.prompt_tokens + g for g in gens if g >= 1)
    for client in ("a", "b"):
        done = [r for r in res.records if r.client == client and r.outcome.completed]
        assert rec.decode[client] == sum(r.output_tokens for r in done)
        assert rec.prefill[client] == expected_prefill[client]


@pytest.mark.parametrize("hook_order", ["step", "stream"])
@pytest.mark.parametrize("exp", ["SIMTEST_RECORDER", "QUEUE_SIMTEST_RECORDER"])
def test_a_prompt_preempted_before_its_first_token_is_credited_once(exp: str,
                                                                    hook_order: str) -> None:
    # 4 blocks of 16 tokens, 16-token steps: request 1's prefill (48 tokens, chunked) and
    # request 0's decode outgrow the cache at request 1's third chunk, and request 1 (the later
    # arrival) is preempted before its first token (again at each retry); it completes after
    # request 0 finishes. A
    # client of a real server saw nothing of the first attempt: prompt_credit "first_token"
    # credits its prompt once, with the first token. Without the full-prompt reservation
    # (vLLM 0.32 would not have admitted it), as only then can a prefill be cut short.
    wl = workload([("a", 0.0, 16, 40), ("b", 0.001, 48, 2)], clients=["a", "b"])
    eng = engine(max_num_seqs=2, max_num_batched_tokens=16, block_size=16, num_gpu_blocks=4,
                 max_model_len=128, reserve_full_prompt=False, hook_order=hook_order,
                 prompt_credit="first_token")
    for step_by_step in (False, True):
        res = simulate(wl, exp, profile(fixed_ms=10.0), engine=eng, max_inflight=2,
                       step_by_step=step_by_step)
        assert res.records[1].preemptions >= 1 and res.records[1].first_token_s is not None
        rec = Recorder.last
        assert rec is not None
        assert rec.prefill == Counter({"a": 16, "b": 48})
