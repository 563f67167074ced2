"""Profile engine steps through the path live runs take (issue 12, item 1).

The engine is the live backend's (`exfairs.live.inprocess.InProcessBackend`): vLLM's AsyncLLM
with its engine core (and, on CPU, its worker) in spawned processes, stats on, the ExFairS
scheduler plug-in loaded, and requests sampled with the run's sampling parameters. Steps are
recorded by the plug-in's step log, not timed here: each repeat is one plug-in run (its own
``<run>.steps.npz``), and `exfairs.calibration.steplog_fit` turns the logs into measured steps,
as `exfairs-calibrate fit --from-runs` does for any live run.

The designed traffic, real requests through `backend.stream`, in a seeded order per repeat:
*prefill* (one prompt of n tokens, 2 output tokens: the prefill steps are followed by a decode
step, so each is a measured period), *decode* (B prompts of ctx tokens submitted together, then
`decode_steps` decode steps of the batch, for B = 1 .. max_num_seqs) and *mixed* (a decoding
batch of B joined by one prompt of n tokens). Decode and prefill probes run in the run's
sampling mode and again greedy, so that the per-row sampling cost of the run's mode can be told
apart from the rest of the decode cost. One unrecorded pass over every probe comes first (the
first step of a new shape pays kernel set-up).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from exfairs.calibration.costmodel import sampling_mode
from exfairs.calibration.measurements import MeasurementSet, StepRecord
from exfairs.calibration.profile import EngineDefaults, ProfileMetadata
from exfairs.calibration.steplog_fit import steplog_records
from exfairs.errors import InputError
from exfairs.rng import stream

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class LiveProfileConfig:
    """Engine knobs (vLLM names), the run's sampling parameters and the probe grid."""

    model: str
    max_num_seqs: int = 8
    max_num_batched_tokens: int = 1024
    max_model_len: int = 2048
    block_size: int | None = None
    num_gpu_blocks_override: int | None = None
    dtype: str = "auto"
    load_format: str = "auto"
    enforce_eager: bool = False
    skip_tokenizer_init: bool = True  # prompts go in as token ids
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = -1
    prefill_sizes: tuple[int, ...] = ()
    decode_contexts: tuple[int, ...] = ()
    mixed_batches: tuple[int, ...] = ()
    mixed_prefills: tuple[int, ...] = ()
    decode_steps: int = 10
    repeats: int = 3
    seed: int = 0
    steplog_dir: str = ""
    hardware: str = ""
    model_label: str = ""
    profile_id: str = ""
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("max_num_seqs", "max_num_batched_tokens", "max_model_len", "decode_steps",
                     "repeats"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError("must be an integer ≥ 1", field=name, value=v)
        if self.repeats < 2:
            raise InputError("need ≥ 2 repeats (each is a run; the held-out error leaves one "
                             "out)", field="repeats", value=self.repeats)


def default_live_grid(cfg: LiveProfileConfig) -> LiveProfileConfig:
    """Fill empty grids with shapes scaled to the engine knobs."""
    m, room = cfg.max_num_batched_tokens, cfg.max_model_len - 2
    prefill = cfg.prefill_sizes or tuple(sorted({
        n for n in (32, 128, 384, m // 2, m, m + m // 2) if 1 <= n <= room}))
    ctxs = cfg.decode_contexts or tuple(sorted({
        c for c in (32, 256) if c + cfg.decode_steps + 2 <= cfg.max_model_len}))
    seqs = cfg.max_num_seqs
    mixed_b = cfg.mixed_batches or tuple(sorted({b for b in (1, seqs // 2, seqs - 1)
                                                 if 1 <= b < seqs}))
    mixed_p = cfg.mixed_prefills or tuple(sorted({p for p in (64, m // 2) if 1 <= p <= room}))
    return replace(cfg, prefill_sizes=prefill, decode_contexts=ctxs, mixed_batches=mixed_b,
                   mixed_prefills=mixed_p)


class _Traffic:
    """Submits probe requests through the backend in the sampling mode asked for."""

    def __init__(self, backend: Any, seed: int, vocab: int) -> None:
        self.backend = backend
        self.rng = stream(seed, "calibration", "live", "prompts")
        self.vocab = vocab
        self.n = 0

    async def request(self, prompt: int, output: int, sampling: Any,
                      first_token: asyncio.Event | None = None) -> None:
        from exfairs.records import Request

        self.n += 1
        req = Request(request_id=10**8 + self.n, client="calibration", arrival_s=0.0,
                      prompt_tokens=prompt, output_tokens=output)
        ids = self.rng.integers(10, self.vocab, size=prompt).tolist()
        self.backend._sampling = sampling  # one backend serves both modes
        async for chunk in self.backend.stream(req, ids, 0):
            if first_token is not None and chunk.new_tokens > 0:
                first_token.set()

    async def batch(self, prompts: list[int], output: int, sampling: Any) -> None:
        await asyncio.gather(*(self.request(p, output, sampling) for p in prompts))

    async def mixed(self, batch: int, ctx: int, prefill: int, output: int, sampling: Any) -> None:
        events = [asyncio.Event() for _ in range(batch)]
        tasks = [asyncio.ensure_future(self.request(ctx, output, sampling, e)) for e in events]
        await asyncio.gather(*(e.wait() for e in events))
        await asyncio.sleep(0.02)  # let the batch settle into decode steps
        await self.request(prefill, 2, sampling)
        await asyncio.gather(*tasks)


def _probes(t: _Traffic, cfg: LiveProfileConfig, run_sp: Any, greedy_sp: Any) -> list[Probe]:
    out: list[Probe] = []
    modes = [run_sp] if sampling_mode(cfg.temperature, cfg.top_p, cfg.top_k) == "greedy" \
        else [run_sp, greedy_sp]
    for sp in modes:
        for n in cfg.prefill_sizes:
            out.append(functools.partial(t.batch, [n], 2, sp))
        for b in range(1, cfg.max_num_seqs + 1):
            for c in cfg.decode_contexts:
                out.append(functools.partial(t.batch, [c] * b, cfg.decode_steps + 1, sp))
    ctx = min(cfg.decode_contexts) if cfg.decode_contexts else 32
    for b in cfg.mixed_batches:
        for p in cfg.mixed_prefills:
            out.append(functools.partial(t.mixed, b, ctx, p, cfg.decode_steps + 6, run_sp))
    return out


async def _profile(cfg: LiveProfileConfig, say: Callable[[str], None]
                   ) -> tuple[list[StepRecord], dict[str, Any]]:
    from exfairs.live.config import SamplingConfig, VllmEngineConfig
    from exfairs.live.inprocess import InProcessBackend
    from exfairs.live.plugin_client import close_run, new_run_spec, open_run
    from exfairs.live.steplog import read_steplog

    engine = VllmEngineConfig(
        model=cfg.model, max_num_seqs=cfg.max_num_seqs,
        max_num_batched_tokens=cfg.max_num_batched_tokens, max_model_len=cfg.max_model_len,
        block_size=cfg.block_size, num_gpu_blocks_override=cfg.num_gpu_blocks_override,
        dtype=cfg.dtype, load_format=cfg.load_format, enforce_eager=cfg.enforce_eager,
        skip_tokenizer_init=cfg.skip_tokenizer_init, seed=cfg.seed)
    run_sp = SamplingConfig(temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k)
    greedy_sp = SamplingConfig(temperature=0.0, top_p=1.0, top_k=-1)
    backend = InProcessBackend(engine, run_sp)
    t0 = time.perf_counter()
    await backend.start()
    say(f"engine up in {time.perf_counter() - t0:.1f} s")
    info: dict[str, Any] = {}
    try:
        core = backend._engine
        vcfg = core.vllm_config
        info = {"num_gpu_blocks": int(vcfg.cache_config.num_gpu_blocks or 0),
                "block_size": int(vcfg.cache_config.block_size),
                "dtype": str(vcfg.model_config.dtype).replace("torch.", ""),
                "vocab": int(vcfg.model_config.get_vocab_size())}
        traffic = _Traffic(backend, cfg.seed, min(info["vocab"], 32000))
        probes = _probes(traffic, cfg, run_sp, greedy_sp)
        for p in probes:
            await p()
        say(f"warm-up pass over {len(probes)} probes done")
        order_rng = stream(cfg.seed, "calibration", "live", "probe-order")
        records: list[StepRecord] = []
        out_dir = Path(cfg.steplog_dir)
        for rep in range(cfg.repeats):
            spec = new_run_spec(f"calibrate__rep{rep}", "gate", "FCFS", out_dir)
            await open_run(backend, spec)
            for k in order_rng.permutation(len(probes)).tolist():
                await probes[k]()
            outcome = await close_run(backend, spec)
            if outcome.report is None or outcome.report.steplog_path is None:
                raise InputError("the scheduler plug-in wrote no step log "
                                 f"({outcome.note}); the live-path profiler needs it",
                                 field="scheduler_cls", value=engine.scheduler_cls)
            steps = steplog_records(read_steplog(outcome.report.steplog_path),
                                    run=f"rep{rep}", label="designed")
            records.extend(replace(s, repeat=rep) for s in steps)
            say(f"repeat {rep + 1}/{cfg.repeats}: {len(steps)} measured steps")
        info["n_probes"] = len(probes)
        return records, info
    finally:
        await backend.close()


def profile_live(cfg: LiveProfileConfig, progress: Callable[[str], None] | None = None
                 ) -> MeasurementSet:
    """Run the designed traffic through the live path; the measured steps of every repeat."""
    from exfairs.calibration.host_info import engine_version as _engine_version
    from exfairs.calibration.host_info import hardware as _hardware

    cfg = default_live_grid(cfg)
    if not cfg.steplog_dir:
        raise InputError("a folder for the step logs is required", field="steplog_dir",
                         value=cfg.steplog_dir)
    Path(cfg.steplog_dir).mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _m: None)
    t_start = time.perf_counter()
    load_before = os.getloadavg()[0]
    records, info = asyncio.run(_profile(cfg, say))
    wall = time.perf_counter() - t_start
    env = [f"{k}={os.environ[k]}" for k in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND",
                                            "OMP_NUM_THREADS") if k in os.environ]
    notes = [f"live path: AsyncLLM (multiprocessing), stats on, ExFairS scheduler plug-in step "
             f"log; {info.get('n_probes', 0)} probes x {cfg.repeats} repeats (one plug-in run "
             f"each, shuffled) after one warm-up pass; sampling temperature {cfg.temperature}, "
             f"top_p {cfg.top_p}, top_k {cfg.top_k} (+ greedy decode/prefill probes)",
             f"load_format={cfg.load_format}, enforce_eager={cfg.enforce_eager}, prefix "
             f"caching off, chunked prefill on", *env,
             f"load average before {load_before:.2f}, after {os.getloadavg()[0]:.2f}",
             *cfg.notes]
    meta = ProfileMetadata(
        id=cfg.profile_id or "measured", hardware=cfg.hardware or _hardware(),
        model=cfg.model_label or cfg.model, engine="vllm", engine_version=_engine_version(),
        dtype=str(info.get("dtype", cfg.dtype)), tensor_parallel_size=1,
        date=datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        source=f"measured with exfairs-calibrate profile --backend vllm (live path); wall time "
               f"{wall:.0f} s", notes="; ".join(notes))
    eng = EngineDefaults(num_gpu_blocks=max(1, int(info.get("num_gpu_blocks", 1))),
                         block_size=int(info.get("block_size", cfg.block_size or 16)),
                         max_num_seqs=cfg.max_num_seqs,
                         max_num_batched_tokens=cfg.max_num_batched_tokens,
                         max_model_len=cfg.max_model_len)
    return MeasurementSet(meta, eng, tuple(records), round(wall, 2))
