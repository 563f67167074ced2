"""GPU-class profiles derived from public profiling data (bundled in ``calibration/data``).

Sources (see the data folder's README; licenses MIT):

- Vidur — Agrawal et al., "Vidur: A Large-Scale Simulation Framework for LLM Inference", MLSys
  2024; github.com/microsoft/vidur, data/profiling/compute/a100/meta-llama/Llama-2-7b-hf/. Per-layer
  operator medians (ms) by token count, and (a partial extract of) attention medians for prefill
  chunks by (chunk, kv cache size) and decode batches by (batch, kv cache size).
- Splitwise — Patel et al., "Splitwise: Efficient Generative LLM Inference Using Phase
  Splitting", ISCA 2024; github.com/Mutinifni/splitwise-sim, data/perf_model.csv. Measured prompt
  times by prompt size and batch, token (decode step) times by batch size.

Vidur composition (its own rule, which reproduces the figures quoted in the data README): a step of
T tokens costs ``32 × (Σ token-wise operators at T + prefill attention + decode attention)`` —
operators input_layernorm, attn_pre_proj, attn_rope, attn_post_proj, post_attention_layernorm,
mlp_up_proj, mlp_act, mlp_down_proj and add, TP 1; embedding, LM head and CPU overhead excluded.
Token-wise operator times between profiled token counts are interpolated linearly.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exfairs.calibration.fit import fit_cost_model
from exfairs.calibration.measurements import features_of
from exfairs.calibration.profile import (
    EngineDefaults,
    Measurement,
    Profile,
    ProfileMetadata,
    save_profile,
)
from exfairs.errors import InputError
from exfairs.rng import stream

log = logging.getLogger(__name__)

VIDUR_LAYERS = 32  # Llama-2-7B
VIDUR_OPS = ("input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj",
             "post_attention_layernorm", "mlp_up_proj", "mlp_act", "mlp_down_proj", "add")
# The figures the data README derives from the same data by Vidur's composition (A100, TP 1).
VIDUR_CHECK_PREFILL_MS = {512: 36.7, 1024: 76.3, 2048: 158.5, 4096: 347.7}
VIDUR_CHECK_DECODE_MS = {(32, 1024): 20.0, (128, 2048): 80.8}
N_MIXED = 160
DATE = "2026-11-25"


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise InputError("public calibration data file not found", field="data", value=str(path))
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _num(row: dict[str, str], key: str, path: Path) -> float:
    try:
        return float(row[key])
    except (KeyError, ValueError):
        raise InputError("missing or non-numeric column", field=key, value=row.get(key),
                         source=str(path)) from None


@dataclass(frozen=True, slots=True)
class VidurTables:
    """Vidur's A100 Llama-2-7B tables, per layer, milliseconds."""

    token_counts: np.ndarray  # sorted num_tokens of the operator profile (TP 1)
    linear_ms: np.ndarray  # Σ token-wise operators at those counts
    prefill_attn: tuple[tuple[int, int, float], ...]  # (chunk, kv, ms)
    decode_attn: tuple[tuple[int, int, float], ...]  # (batch, kv, ms)

    def linear_at(self, tokens: int) -> float:
        return float(np.interp(tokens, self.token_counts, self.linear_ms))

    def step_ms(self, prefill: Sequence[tuple[int, int, float]],
                decode: tuple[int, int, float] | None) -> float:
        """Vidur's composition of one step (module docstring), milliseconds."""
        tokens = sum(n for n, _, _ in prefill) + (decode[0] if decode else 0)
        layer = self.linear_at(tokens) + sum(ms for _, _, ms in prefill)
        if decode:
            layer += decode[2]
        return VIDUR_LAYERS * layer


def bundled_data_dir() -> Path:
    """The public profiling data shipped with the package (``calibration/data``; see SOURCE.md)."""
    return Path(__file__).resolve().parent / "data"


def _source_dir(data_dir: Path, name: str) -> Path:
    # Accept both layouts: the bundled one (``data/<name>``) and a data folder that keeps the
    # sources under ``calibration/<name>``.
    nested = data_dir / "calibration" / name
    return nested if nested.is_dir() else data_dir / name


def load_vidur(data_dir: Path, gpu: str = "a100") -> VidurTables:
    """Read the Vidur tables from ``<data_dir>/vidur`` (or ``<data_dir>/calibration/vidur``)."""
    root = _source_dir(data_dir, "vidur")
    mlp_path = root / f"{gpu}_llama2_7b_mlp.csv"
    by_tokens: dict[int, float] = {}
    for row in _read_csv(mlp_path):
        if int(_num(row, "num_tensor_parallel_workers", mlp_path)) != 1:
            continue
        n = int(_num(row, "num_tokens", mlp_path))
        by_tokens[n] = sum(_num(row, f"time_stats.{op}.median", mlp_path) for op in VIDUR_OPS)
    if len(by_tokens) < 2:
        raise InputError("no TP-1 rows in the operator profile",
                         field="num_tensor_parallel_workers", value=None, source=str(mlp_path))
    counts = np.array(sorted(by_tokens), dtype=np.float64)
    lin = np.array([by_tokens[int(n)] for n in counts], dtype=np.float64)
    pp = root / f"{gpu}_llama2_7b_attention_prefill_partial.csv"
    dp = root / f"{gpu}_llama2_7b_attention_decode_partial.csv"
    prefill = tuple((int(_num(r, "prefill_chunk_size", pp)), int(_num(r, "kv_cache_size", pp)),
                     _num(r, "attn_prefill_median_ms", pp)) for r in _read_csv(pp))
    decode = tuple((int(_num(r, "batch_size", dp)), int(_num(r, "kv_cache_size", dp)),
                    _num(r, "attn_decode_median_ms", dp)) for r in _read_csv(dp))
    return VidurTables(counts, lin, prefill, decode)


def vidur_measurements(tables: VidurTables, *, seed: int = 0) -> list[Measurement]:
    """Steps composed from the Vidur tables: every profiled prefill chunk and decode batch alone,
    plus `N_MIXED` seeded pairings of one chunk with one decode batch (chunked-prefill steps).

    Decode context: Vidur's kv_cache_size is taken as each sequence's context."""
    out: list[Measurement] = []
    for n, kv, ms in tables.prefill_attn:
        p, a, _, _ = features_of([(n, kv)], [])
        out.append(Measurement(p, a, 0, 0, round(tables.step_ms([(n, kv, ms)], None), 4)))
    for b, kv, ms in tables.decode_attn:
        out.append(Measurement(0, 0.0, b, b * kv, round(tables.step_ms([], (b, kv, ms)), 4)))
    rng = stream(seed, "calibration", "vidur", "mixed")
    pi = rng.integers(0, len(tables.prefill_attn), size=N_MIXED)
    di = rng.integers(0, len(tables.decode_attn), size=N_MIXED)
    for i, j in zip(pi.tolist(), di.tolist(), strict=True):
        n, kv, pms = tables.prefill_attn[i]
        b, dkv, dms = tables.decode_attn[j]
        p, a, _, _ = features_of([(n, kv)], [])
        out.append(Measurement(p, a, b, b * dkv,
                               round(tables.step_ms([(n, kv, pms)], (b, dkv, dms)), 4)))
    return out


@dataclass(frozen=True, slots=True)
class SplitwiseRow:
    prompt_size: int
    batch_size: int
    token_size: int
    prompt_time_ms: float
    token_time_ms: float


def load_splitwise(data_dir: Path, model: str, hardware: str, tp: int) -> list[SplitwiseRow]:
    """Rows of ``<data_dir>/splitwise/perf_model.csv`` (or under ``calibration/``) for one
    configuration."""
    path = _source_dir(data_dir, "splitwise") / "perf_model.csv"
    rows = [SplitwiseRow(int(_num(r, "prompt_size", path)), int(_num(r, "batch_size", path)),
                         int(_num(r, "token_size", path)), _num(r, "prompt_time", path),
                         _num(r, "token_time", path))
            for r in _read_csv(path)
            if r.get("model") == model and r.get("hardware") == hardware
            and r.get("tensor_parallel") == str(tp)]
    if not rows:
        raise InputError("no rows for this configuration", field="model/hardware/tp",
                         value=(model, hardware, tp), source=str(path))
    return rows


def splitwise_measurements(rows: Sequence[SplitwiseRow]) -> list[Measurement]:
    """Each row gives a prefill step (`batch_size` prompts of `prompt_size`, no cached context)
    and a decode step (`batch_size` sequences; `token_time` is the mean decode step over
    `token_size` tokens, so the context is taken at its mean, prompt + token_size / 2)."""
    out: list[Measurement] = []
    for r in rows:
        p, a, _, _ = features_of([(r.prompt_size, 0)] * r.batch_size, [])
        out.append(Measurement(p, a, 0, 0, round(r.prompt_time_ms, 4)))
        ctx = r.prompt_size + r.token_size // 2
        out.append(Measurement(0, 0.0, r.batch_size, r.batch_size * ctx,
                               round(r.token_time_ms, 4)))
    return out


def _profile(meta: ProfileMetadata, engine: EngineDefaults, meas: list[Measurement],
             seed: int) -> Profile:
    res = fit_cost_model(meas, seed=seed)
    return Profile(meta, engine, res.coefficients, res.error, tuple(meas))


# KV capacity arithmetic (vLLM's rule: gpu_memory_utilization 0.9 of device memory, minus weights
# and activation peak, divided by KV bytes per token).
_A100_7B_NOTES = ("KV capacity: 80 GB x 0.9 = 72 GB, minus 13.5 GB of fp16 weights and ~2.5 GB "
                  "activations = 56 GiB; 0.5 MiB of KV per token (32 layers x 2 x 4096 x 2 B) "
                  "gives 114,688 tokens = 7,168 blocks of 16.")
# Llama-2-70B: 80 layers, 8 KV heads x 128 dims (GQA): 2 x 80 x 1024 x 2 B = 320 KiB per token.
# TP 4: 4 x 80 GB x 0.9 = 288 GB = 268.2 GiB; fp16 weights 69e9 x 2 B = 128.5 GiB; activations and
# buffers ~2.5 GiB per GPU = 10 GiB -> 129.7 GiB of KV / 320 KiB = 425,000 tokens = 26,562 blocks.
_70B_TP4_BLOCKS = 26562
_70B_NOTES = ("KV capacity: 4 x 80 GB x 0.9 = 268.2 GiB, minus 128.5 GiB fp16 weights (69e9 "
              "params) and ~10 GiB activations/buffers = 129.7 GiB; 320 KiB of KV per token "
              "(80 layers x 2 x 8 KV heads x 128 x 2 B) gives ~425,000 tokens = 26,562 blocks "
              "of 16. Splitwise measures prompts without chunking (up to 64 x 512 tokens in one "
              "step) and decode at prompt 512 only; no mixed steps.")


def build_vidur_profile(data_dir: Path, *, seed: int = 0) -> Profile:
    """The default profile `a100-llama2-7b` from the Vidur tables."""
    tables = load_vidur(data_dir, "a100")
    meas = vidur_measurements(tables, seed=seed)
    meta = ProfileMetadata(
        id="a100-llama2-7b", hardware="NVIDIA A100-80GB (one GPU)",
        model="meta-llama/Llama-2-7b-hf", engine="vllm (as profiled by Vidur)",
        engine_version="", dtype="float16", tensor_parallel_size=1, date=DATE,
        source=("Fitted by exfairs.calibration.public_data from Vidur's A100 Llama-2-7B operator "
                "profiles (github.com/microsoft/vidur, data/profiling/compute/a100/meta-llama/"
                "Llama-2-7b-hf/{mlp,attention}.csv, MIT license; Agrawal et al., MLSys 2024): "
                f"{len(tables.prefill_attn)} prefill-chunk and {len(tables.decode_attn)} "
                f"decode-batch steps plus {N_MIXED} seeded mixed steps, each composed as 32 layers "
                "x (token-wise operators + attention) by Vidur's rule; embedding, LM head and CPU "
                "overhead excluded (as in Vidur's figures)."),
        notes=_A100_7B_NOTES)
    engine = EngineDefaults(num_gpu_blocks=7168, block_size=16, max_num_seqs=256,
                            max_num_batched_tokens=8192, max_model_len=4096)
    return _profile(meta, engine, meas, seed)


def build_splitwise_profile(data_dir: Path, gpu: str, *, seed: int = 0) -> Profile:
    """`<gpu>-llama2-70b-tp4` (gpu: a100 or h100) from the Splitwise measurements."""
    hw = {"a100": ("a100-80gb", "NVIDIA A100-80GB x 4 (DGX A100)"),
          "h100": ("h100-80gb", "NVIDIA H100-80GB x 4 (DGX H100)")}
    if gpu not in hw:
        raise InputError("must be a100 or h100", field="gpu", value=gpu)
    rows = load_splitwise(data_dir, "llama2-70b", hw[gpu][0], 4)
    engine = EngineDefaults(num_gpu_blocks=_70B_TP4_BLOCKS, block_size=16, max_num_seqs=256,
                            max_num_batched_tokens=8192, max_model_len=4096)
    # Steps above the token budget (32 and 64 batched 512-token prompts) never occur in the engine
    # the profile describes; they would pull the fit away from the region it is used in.
    all_meas = splitwise_measurements(rows)
    meas = [m for m in all_meas if m.prefill_tokens <= engine.max_num_batched_tokens]
    meta = ProfileMetadata(
        id=f"{gpu}-llama2-70b-tp4", hardware=hw[gpu][1], model="meta-llama/Llama-2-70b-hf",
        engine="vllm (as measured by Splitwise)", engine_version="", dtype="float16",
        tensor_parallel_size=4, date=DATE,
        source=("Fitted by exfairs.calibration.public_data from Splitwise's measured step times "
                "(github.com/Mutinifni/splitwise-sim, data/perf_model.csv, MIT license; Patel "
                f"et al., ISCA 2024): {len(rows)} rows of llama2-70b, {hw[gpu][0]}, TP 4 — "
                "prompt_time by prompt size (128-8192) and batch (1-64 at 512), token_time by "
                f"batch (1-64) and output length; {len(all_meas) - len(meas)} prompt steps of "
                "more than 8192 tokens (over the token budget) left out."),
        notes=_70B_NOTES)
    return _profile(meta, engine, meas, seed)


def build_public_profiles(data_dir: Path, out_dir: Path, *, seed: int = 0
                          ) -> Iterator[tuple[Path, Profile]]:
    """Build and write the three public-data profiles; yields (path, profile)."""
    if not all(_source_dir(data_dir, n).is_dir() for n in ("vidur", "splitwise")):
        raise InputError("no vidur/ and splitwise/ folders (or calibration/vidur, "
                         "calibration/splitwise) in the data folder", field="--data",
                         value=str(data_dir))
    for prof in (build_vidur_profile(data_dir, seed=seed),
                 build_splitwise_profile(data_dir, "a100", seed=seed),
                 build_splitwise_profile(data_dir, "h100", seed=seed)):
        path = out_dir / f"{prof.id}.json"
        save_profile(prof, path)
        yield path, prof
