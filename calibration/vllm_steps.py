"""The in-process vLLM step driver of `exfairs.calibration.vllm_profiler` and its probes.

`StepDriver` owns a step-driven V1 `LLMEngine`: it adds token-id prompts, times each ``step()``
and derives the step's composition from its own replay of V1's scheduling rule, cross-checked
against the scheduler's `SchedulerOutput` where reachable (the rule and the checks are described
in `exfairs.calibration.vllm_profiler`). The probes each start from an empty engine and return
the recorded steps with their labels.

Split from `exfairs.calibration.vllm_profiler`, which keeps the configuration, the probe grid and
the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from exfairs.rng import stream

if TYPE_CHECKING:
    from exfairs.calibration.vllm_profiler import VllmProfileConfig

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Req:
    rid: str
    prompt_len: int
    max_tokens: int
    internal_id: str = ""
    computed: int = 0
    generated: int = 0
    running: bool = False
    done: bool = False


@dataclass(frozen=True, slots=True)
class TimedStep:
    """One recorded engine step: prefill `chunks` as (new tokens, cached tokens), the context
    of each decode sequence (`decode_ctx`, tokens incl. the new one), and its wall time (ms)."""

    chunks: tuple[tuple[int, int], ...]
    decode_ctx: tuple[int, ...]
    duration_ms: float


class StepDriver:
    """Owns the engine, the bookkeeping and the step timer."""

    def __init__(self, engine: Any, cfg: VllmProfileConfig, vocab: int) -> None:
        from vllm import SamplingParams

        self.engine = engine
        self.cfg = cfg
        self.vocab = vocab
        self._sp = SamplingParams
        self._rng = stream(cfg.seed, "calibration", "vllm", "prompts")
        self._n = 0
        self.reqs: list[_Req] = []  # arrival (FCFS) order
        self.mismatches = 0
        self.checked = 0
        self._captured: list[Any] = []
        self._scheduler = self._hook_scheduler()

    def _hook_scheduler(self) -> Any:
        # Internal API (vLLM 0.32): LLMEngine.engine_core is an InprocClient whose .engine_core is
        # the EngineCore. Wrap the instance's schedule() to keep each SchedulerOutput.
        try:
            sched = self.engine.engine_core.engine_core.scheduler
            orig: Callable[..., Any] = sched.schedule
        except AttributeError:
            log.warning("scheduler not reachable; composition from bookkeeping only")
            return None

        def schedule(*args: Any, **kwargs: Any) -> Any:
            out = orig(*args, **kwargs)
            self._captured.append(out)
            return out

        sched.schedule = schedule
        return sched

    def add(self, prompt_len: int, max_tokens: int) -> _Req:
        self._n += 1
        rid = f"p{self._n}"
        ids = self._rng.integers(3, self.vocab, size=prompt_len).tolist()
        params = self._sp(max_tokens=max_tokens, ignore_eos=True, detokenize=False,
                          temperature=0.0)
        internal = self.engine.add_request(rid, {"prompt_token_ids": ids}, params)
        r = _Req(rid, prompt_len, max_tokens, internal_id=str(internal or rid))
        self.reqs.append(r)
        return r

    def _predict(self) -> dict[str, int]:
        """Tokens each request gets in the next step under V1's rule (see module docstring)."""
        budget = self.cfg.max_num_batched_tokens
        sched: dict[str, int] = {}
        live = [r for r in self.reqs if not r.done]
        for r in live:
            if r.running and budget > 0:
                n = 1 if r.computed >= r.prompt_len else min(r.prompt_len - r.computed, budget)
                sched[r.rid] = n
                budget -= n
        n_running = sum(1 for r in live if r.running)
        for r in live:
            if r.running:
                continue
            if budget <= 0 or n_running >= self.cfg.max_num_seqs:
                break
            n = min(r.prompt_len - r.computed, budget)
            sched[r.rid] = n
            budget -= n
            n_running += 1
        return sched

    def _from_scheduler(self) -> dict[str, int] | None:
        if not self._captured:
            return None
        out = self._captured[-1]
        self._captured.clear()
        by_internal = {r.internal_id: r.rid for r in self.reqs}
        try:
            return {by_internal.get(k, k): int(v) for k, v in out.num_scheduled_tokens.items()}
        except AttributeError:
            return None

    def step(self) -> TimedStep | None:
        """One engine step; its composition, or None when bookkeeping and engine disagree."""
        plan = self._predict()
        before = {r.rid: r.computed for r in self.reqs}
        t0 = time.perf_counter()
        outputs = self.engine.step()
        dt_ms = (time.perf_counter() - t0) * 1000.0
        actual = self._from_scheduler() if self._scheduler is not None else None
        ok = True
        if actual is not None:
            self.checked += 1
            if actual != plan:
                ok = False
                self.mismatches += 1
                log.debug("composition mismatch: planned %s, scheduler %s", plan, actual)
                plan = actual
        by_id = {r.rid: r for r in self.reqs}
        for rid, n in plan.items():
            r = by_id[rid]
            r.running = True
            r.computed += n
        emitted: dict[str, int] = {}
        for o in outputs:
            out_id = str(getattr(o, "request_id", ""))
            if out_id in by_id:
                emitted[out_id] = len(o.outputs[0].token_ids)
                if o.finished:
                    by_id[out_id].done = True
        for rid in plan:
            r = by_id[rid]
            expect = (r.computed >= r.prompt_len)
            got = emitted.get(rid, r.generated)
            if expect and got != r.generated + 1:
                ok = False
            if not expect and got != r.generated:
                ok = False
            r.generated = got
            if r.generated >= r.max_tokens:
                r.done = True
        if not ok:
            return None
        chunks: list[tuple[int, int]] = []
        ctxs: list[int] = []
        for rid, n in plan.items():
            c = before[rid]
            r = by_id[rid]
            if c < r.prompt_len:
                chunks.append((n, c))
            else:
                ctxs.append(c + 1)  # the new token attends to the c cached ones and itself
        return TimedStep(tuple(chunks), tuple(ctxs), dt_ms)

    def drain(self) -> None:
        """Abort whatever is left and step until the engine is empty."""
        left = [r.rid for r in self.reqs if not r.done]
        if left:
            self.engine.abort_request(left)
        for _ in range(10):
            if not self.engine.has_unfinished_requests():
                break
            self.engine.step()
        self._captured.clear()
        self.reqs = []


def probe_prefill(d: StepDriver, n: int) -> list[tuple[str, TimedStep]]:
    """One prompt of `n` tokens (``max_tokens=1``): its prefill steps, chunked beyond the budget."""
    d.add(n, 1)
    steps = []
    while any(not r.done for r in d.reqs):
        s = d.step()
        if s is not None:
            steps.append(("prefill", s))
        if len(steps) > 64:
            break
    d.drain()
    return steps


def probe_decode(d: StepDriver, batch: int, ctx: int, n_decode: int, warm: int
                 ) -> list[tuple[str, TimedStep]]:
    """`batch` prompts of `ctx` tokens, then `n_decode` full-batch decode steps after `warm`
    unrecorded ones (the fill steps are recorded as ``decode-fill``)."""
    # Generous max_tokens: early requests decode while later ones still prefill; leftovers are
    # aborted by drain().
    for _ in range(batch):
        d.add(ctx, max(2, d.cfg.max_model_len - ctx - 1))
    steps: list[tuple[str, TimedStep]] = []
    guard = 0
    while any(r.generated == 0 for r in d.reqs) and guard < 10_000:
        guard += 1
        s = d.step()
        if s is not None:
            steps.append(("decode-fill", s))
    decode_seen = 0
    while decode_seen < warm + n_decode and any(not r.done for r in d.reqs):
        s = d.step()
        decode_seen += 1
        if s is not None and decode_seen > warm:
            steps.append(("decode", s))
    d.drain()
    return steps


def probe_mixed(d: StepDriver, batch: int, ctx: int, prefill: int, warm: int
                ) -> list[tuple[str, TimedStep]]:
    """A decoding batch of `batch` prompts of `ctx` tokens joined, after `warm` steps, by one
    prompt of `prefill` tokens: the steps until that prompt has its first token."""
    for _ in range(batch):
        d.add(ctx, max(2, d.cfg.max_model_len - ctx - 1))
    guard = 0
    while any(r.generated == 0 for r in d.reqs) and guard < 10_000:
        guard += 1
        d.step()
    for _ in range(warm):
        d.step()
    p = d.add(prefill, 1)
    steps = []
    while not p.done and guard < 10_000:
        guard += 1
        s = d.step()
        if s is not None:
            steps.append(("mixed", s))
    d.drain()
    return steps
