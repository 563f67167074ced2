"""Operator-level step profiling with PyTorch, for machines without vLLM (Vidur-style).

After Vidur (Agrawal et al., "Vidur: A Large-Scale Simulation Framework for LLM Inference",
MLSys 2024; github.com/microsoft/vidur): time one decoder layer's operators — RMSNorm, the QKV
projection, rotary embedding, the attention output projection, the gated MLP (gate+up, SiLU·mul,
down), residual adds — at a grid of token counts, and attention through
`torch.nn.functional.scaled_dot_product_attention` for prefill chunks (n new tokens over c cached
ones, causal) and decode batches (B sequences of context ctx). A step's duration is then composed
as ``layers × (linear operators at the step's total token count + Σ attention parts) + LM head on
the sequences that sample``, which is how Vidur composes its operator profiles into iterations.
Linear-operator times between grid points are interpolated linearly.

Runs anywhere torch runs: a GPU box with real shapes, or the CPU with tiny shapes (CI). Weights
are random (seeded); only shapes matter.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from exfairs.calibration.measurements import MeasurementSet, StepRecord, features_of
from exfairs.calibration.profile import EngineDefaults, ProfileMetadata
from exfairs.errors import InputError

_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


@dataclass(frozen=True, slots=True)
class ModelShape:
    """A Llama-style decoder's shape."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int = 32000
    dtype: str = "float16"
    name: str = ""

    def __post_init__(self) -> None:
        for f in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size",
                  "vocab_size"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise InputError("must be an integer ≥ 1", field=f, value=v)
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise InputError("hidden_size must divide by num_heads and num_heads by num_kv_heads",
                             field="num_heads", value=(self.hidden_size, self.num_heads,
                                                       self.num_kv_heads))
        if self.dtype not in _DTYPE_BYTES:
            raise InputError(f"must be one of {sorted(_DTYPE_BYTES)}", field="dtype",
                             value=self.dtype)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def kv_bytes_per_token(self) -> int:
        """KV cache bytes per token over all layers (K and V)."""
        return (2 * self.num_layers * self.num_kv_heads * self.head_dim
                * _DTYPE_BYTES[self.dtype])

    @property
    def weight_bytes(self) -> int:
        h, kv = self.hidden_size, self.num_kv_heads * self.head_dim
        per_layer = h * (h + 2 * kv) + h * h + 3 * h * self.intermediate_size + 2 * h
        return (self.num_layers * per_layer + 2 * self.vocab_size * h) * _DTYPE_BYTES[self.dtype]


def shape_from_config(path: str | Path, dtype: str | None = None) -> ModelShape:
    """Read a Hugging Face ``config.json`` (Llama-style keys)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read model config: {exc}", field="--config",
                         value=str(path)) from None
    if not isinstance(doc, dict):
        raise InputError("must be a JSON object", field="--config", value=str(path))
    try:
        heads = int(doc["num_attention_heads"])
        cfg_dtype = str(doc.get("torch_dtype") or doc.get("dtype") or "float16")
        return ModelShape(
            hidden_size=int(doc["hidden_size"]), num_layers=int(doc["num_hidden_layers"]),
            num_heads=heads, num_kv_heads=int(doc.get("num_key_value_heads", heads)),
            intermediate_size=int(doc["intermediate_size"]),
            vocab_size=int(doc.get("vocab_size", 32000)),
            dtype=dtype if dtype and dtype != "auto" else cfg_dtype,
            name=str(doc.get("_name_or_path", "") or Path(path).parent.name))
    except KeyError as exc:
        raise InputError("missing key in model config", field=str(exc.args[0]),
                         value=None, source=str(path)) from None


def shape_from_args(args: argparse.Namespace) -> ModelShape:
    """The model shape from ``--config`` or the explicit ``--hidden-size ...`` flags."""
    if args.config:
        return shape_from_config(args.config, args.dtype)
    need = ("hidden_size", "num_layers", "num_heads", "intermediate_size")
    missing = [n for n in need if getattr(args, n) is None]
    if missing:
        raise InputError("the torch backend needs --config or all of --hidden-size, "
                         "--num-layers, --num-heads, --intermediate-size",
                         field="--" + missing[0].replace("_", "-"), value=None)
    return ModelShape(hidden_size=args.hidden_size, num_layers=args.num_layers,
                      num_heads=args.num_heads,
                      num_kv_heads=args.num_kv_heads or args.num_heads,
                      intermediate_size=args.intermediate_size,
                      dtype="float16" if args.dtype == "auto" else args.dtype,
                      name=args.model_label or "")


class _Timer:
    def __init__(self, torch: Any, device: Any, repeats: int) -> None:
        self.torch, self.device, self.repeats = torch, device, repeats
        self.cuda = device.type == "cuda"

    def __call__(self, fn: Callable[[], Any]) -> float:
        """Median milliseconds of `fn` after two warm-up calls."""
        for _ in range(2):
            fn()
        times = []
        for _ in range(self.repeats):
            if self.cuda:
                self.torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if self.cuda:
                self.torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1000.0)
        return float(np.median(times))


class _OperatorProfiler:
    def __init__(self, shape: ModelShape, device: str, repeats: int, seed: int) -> None:
        import torch

        self.torch = torch
        self.F = torch.nn.functional
        self.shape = shape
        self.dev = torch.device(device)
        self.dt = getattr(torch, shape.dtype)
        if self.dev.type == "cpu" and self.dt == torch.float16:
            # Half-precision matmuls on CPU are emulated and unrepresentative; time in float32.
            self.dt = torch.float32
        self.time = _Timer(torch, self.dev, repeats)
        self.gen = torch.Generator(device="cpu").manual_seed(seed)
        h, kvd = shape.hidden_size, shape.num_kv_heads * shape.head_dim
        self.w_qkv = self._w(h + 2 * kvd, h)
        self.w_o = self._w(h, h)
        self.w_up = self._w(2 * shape.intermediate_size, h)
        self.w_down = self._w(h, shape.intermediate_size)
        self.w_head = self._w(shape.vocab_size, h)
        self.norm_w = self._w(h)
        self._linear_cache: dict[int, float] = {}
        self._attn_cache: dict[tuple[str, int, int], float] = {}

    def _w(self, *size: int) -> Any:
        t = self.torch.randn(*size, generator=self.gen) * 0.02
        return t.to(device=self.dev, dtype=self.dt)

    def _x(self, *size: int) -> Any:
        return self.torch.randn(*size, generator=self.gen).to(device=self.dev, dtype=self.dt)

    def linear_layer_ms(self, tokens: int) -> float:
        """One layer's token-wise operators (everything but attention) at `tokens` tokens."""
        if tokens in self._linear_cache:
            return self._linear_cache[tokens]
        torch, F, s = self.torch, self.F, self.shape
        x = self._x(tokens, s.hidden_size)
        inter = s.intermediate_size
        half = s.head_dim // 2

        def norm() -> Any:
            v = x.float().pow(2).mean(-1, keepdim=True)
            return (x * torch.rsqrt(v + 1e-5).to(x.dtype)) * self.norm_w

        def qkv() -> Any:
            return F.linear(x, self.w_qkv)

        q_for_rope = self._x(tokens, s.num_heads, s.head_dim)
        cos = self._x(tokens, 1, half)

        def rope() -> Any:
            a, b = q_for_rope[..., :half], q_for_rope[..., half:]
            return torch.cat((a * cos - b * cos, b * cos + a * cos), dim=-1)

        def o_proj() -> Any:
            return F.linear(x, self.w_o)

        def up() -> Any:
            return F.linear(x, self.w_up)

        gu = self._x(tokens, 2 * inter)

        def act() -> Any:
            return F.silu(gu[:, :inter]) * gu[:, inter:]

        xi = self._x(tokens, inter)

        def down() -> Any:
            return F.linear(xi, self.w_down)

        def add() -> Any:
            return x + x

        total = (2 * self.time(norm) + self.time(qkv) + self.time(rope) + self.time(o_proj)
                 + self.time(up) + self.time(act) + self.time(down) + 2 * self.time(add))
        self._linear_cache[tokens] = total
        return total

    def lm_head_ms(self, seqs: int) -> float:
        x = self._x(seqs, self.shape.hidden_size)
        return self.time(lambda: self.F.linear(x, self.w_head))

    def prefill_attn_ms(self, n: int, c: int) -> float:
        """One layer's causal attention of an n-token chunk over c cached tokens."""
        key = ("prefill", n, c)
        if key not in self._attn_cache:
            self._attn_cache[key] = self._prefill_attn_ms(n, c)
        return self._attn_cache[key]

    def _prefill_attn_ms(self, n: int, c: int) -> float:
        s, torch = self.shape, self.torch
        q = self._x(1, s.num_heads, n, s.head_dim)
        k = self._x(1, s.num_kv_heads, c + n, s.head_dim)
        v = self._x(1, s.num_kv_heads, c + n, s.head_dim)
        gqa = s.num_heads != s.num_kv_heads
        if c == 0:
            return self.time(lambda: self.F.scaled_dot_product_attention(
                q, k, v, is_causal=True, enable_gqa=gqa))
        mask = torch.ones(n, c + n, dtype=torch.bool, device=self.dev).tril(diagonal=c)
        return self.time(lambda: self.F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, enable_gqa=gqa))

    def decode_attn_ms(self, batch: int, ctx: int) -> float:
        """One layer's attention of `batch` single-token queries over `ctx` tokens each."""
        key = ("decode", batch, ctx)
        if key not in self._attn_cache:
            self._attn_cache[key] = self._decode_attn_ms(batch, ctx)
        return self._attn_cache[key]

    def _decode_attn_ms(self, batch: int, ctx: int) -> float:
        s = self.shape
        q = self._x(batch, s.num_heads, 1, s.head_dim)
        k = self._x(batch, s.num_kv_heads, ctx, s.head_dim)
        v = self._x(batch, s.num_kv_heads, ctx, s.head_dim)
        gqa = s.num_heads != s.num_kv_heads
        return self.time(lambda: self.F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa))


def _step_grid(max_num_seqs: int, max_batched: int, max_model_len: int
               ) -> list[tuple[str, tuple[tuple[int, int], ...], tuple[int, int]]]:
    """(label, prefill chunks, (decode batch, decode context)) for each composed step."""
    room = max_model_len - 1
    sizes = sorted({n for n in (16, 64, 128, 256, 512, 1024, 2048, 4096, max_batched)
                    if n <= min(room, max_batched)})
    ctxs = sorted({c for c in (0, 256, 1024, 2048, 3072) if c < room})
    batches = sorted({b for b in (1, 2, 4, 8, 16, 32, 64, 128, 256, max_num_seqs)
                      if b <= max_num_seqs})
    dctx = sorted({c for c in (16, 128, 512, 1024, 2048, 4096) if c <= room})
    grid: list[tuple[str, tuple[tuple[int, int], ...], tuple[int, int]]] = []
    for n in sizes:
        for c in ctxs:
            if c + n <= room:
                grid.append(("prefill", ((n, c),), (0, 0)))
    for b in batches:
        for c in dctx:
            grid.append(("decode", (), (b, c)))
    for b in batches[:: max(1, len(batches) // 3)]:
        for n in sizes[:: max(1, len(sizes) // 3)]:
            if n + b <= max_batched:
                grid.append(("mixed", ((n, 0),), (b, dctx[len(dctx) // 2])))
    return grid


def profile_torch(shape: ModelShape, *, device: str = "auto", repeats: int = 5, seed: int = 0,
                  profile_id: str = "", hardware: str = "", num_gpu_blocks: int | None = None,
                  max_num_seqs: int = 256, max_num_batched_tokens: int = 8192,
                  block_size: int = 16, max_model_len: int = 4096,
                  kv_cache_bytes_cpu: int = 1 << 30,
                  progress: Callable[[str], None] | None = None,
                  command: str = "") -> MeasurementSet:
    """Time the operators for `shape` and compose them into step measurements.

    `repeats` timings per operator (median kept). KV capacity: `num_gpu_blocks` if given; on
    CUDA 90% of total device memory minus the weights; on CPU `kv_cache_bytes_cpu`.
    """
    try:
        import torch
    except ImportError as exc:
        raise InputError("the torch backend needs PyTorch installed", field="--backend",
                         value="torch") from exc
    if repeats < 1:
        raise InputError("must be ≥ 1", field="--repeats", value=repeats)
    say = progress or (lambda _m: None)
    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("CUDA is not available here", field="--device", value=device)
    t0 = time.perf_counter()
    prof = _OperatorProfiler(shape, dev, repeats, seed)
    grid = _step_grid(max_num_seqs, max_num_batched_tokens, max_model_len)
    # Linear operators at a token grid, interpolated between points.
    needed = sorted({sum(n for n, _ in ch) + b for _, ch, (b, _) in grid})
    pts = sorted({*(t for t in needed if t <= 8), *np.unique(np.geomspace(
        1, max(needed), num=24).astype(int)).tolist(), max(needed)})
    lin = np.array([prof.linear_layer_ms(int(t)) for t in pts])
    say(f"timed layer operators at {len(pts)} token counts")
    records: list[StepRecord] = []
    for label, chunks, (b, ctx) in grid:
        tokens = sum(n for n, _ in chunks) + b
        layer = float(np.interp(tokens, pts, lin))
        layer += sum(prof.prefill_attn_ms(n, c) for n, c in chunks)
        if b:
            layer += prof.decode_attn_ms(b, ctx)
        ms = shape.num_layers * layer + prof.lm_head_ms(b + len(chunks))
        p, a, nb, cs = features_of(chunks, [ctx] * b)
        records.append(StepRecord(p, a, nb, cs, round(ms, 5), label, 0))
    say(f"composed {len(records)} steps")
    wall = time.perf_counter() - t0
    if num_gpu_blocks is None:
        if dev.startswith("cuda"):
            total = torch.cuda.get_device_properties(torch.device(dev)).total_memory
            kv_bytes = max(0.0, 0.9 * total - shape.weight_bytes)
        else:
            kv_bytes = float(kv_cache_bytes_cpu)
        num_gpu_blocks = max(1, math.floor(kv_bytes / (block_size * shape.kv_bytes_per_token)))
    hw = hardware or (torch.cuda.get_device_name(torch.device(dev)) if dev.startswith("cuda")
                      else "CPU")
    meta = ProfileMetadata(
        id=profile_id or "torch-operators",
        hardware=hw,
        model=shape.name or (f"Llama-style h{shape.hidden_size} L{shape.num_layers} "
                             f"heads {shape.num_heads}/{shape.num_kv_heads} "
                             f"ffn {shape.intermediate_size}"),
        engine="torch-operators",
        engine_version=f"torch {torch.__version__}",
        dtype=str(prof.dt).replace("torch.", ""),
        tensor_parallel_size=1,
        date=datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        source="exfairs-calibrate profile --backend torch: Vidur-style operator timings composed "
               f"into steps (layers x operators + attention + LM head); wall time {wall:.1f} s",
        notes=f"{repeats} timings per operator (median); excludes scheduler/CPU overhead and "
              "sampling; KV blocks estimated, not read from an engine"
              + (f"; command: {command}" if command else ""),
    )
    eng = EngineDefaults(num_gpu_blocks=num_gpu_blocks, block_size=block_size,
                         max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens,
                         max_model_len=max_model_len)
    return MeasurementSet(meta, eng, tuple(records), round(wall, 3))


def summarize(records: Sequence[StepRecord]) -> str:
    """One line per label: count and median duration."""
    parts = []
    for label in sorted({r.label for r in records}):
        d = [r.duration_ms for r in records if r.label == label]
        parts.append(f"{label}: {len(d)} steps, median {np.median(d):.3f} ms")
    return "; ".join(parts)
