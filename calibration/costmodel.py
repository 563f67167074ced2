"""The step-cost model: duration of one engine step from its batch composition (docs/design.md §5).

    t_ms = max(floor_ms,
               fixed_ms
               + prefill_token_ms · P + prefill_attn_ms · A              prefill part
               + [B > 0] · decode part
               + sample_row_ms[mode] · R)                                 sampling

    decode part, decode-only step (or no mixed terms in the profile):
               decode_fixed_ms + decode_seq_ms · B + table(B) + decode_ctx_ms · C
    decode part, mixed step (P > 0) when the profile has mixed terms:
               mixed_fixed_ms + mixed_seq_ms · B + decode_ctx_ms · C

where P = Σ prefill tokens computed in the step, A = Σ over prefill chunks of n · (c + n) (a chunk
computes n tokens on top of c cached ones), B = decode sequences, C = Σ their context tokens, and
R = rows sampled: vLLM computes logits and samples one row per scheduled request, partial prefill
chunks included (`gpu_model_runner`: one logits index per request; the sampler runs on all rows).

`table(B)` is a piecewise-linear function of the decode batch size through `decode_knots` (its
values `decode_knot_ms`; linear extrapolation past the last knot). It carries what the data shows
and a straight line does not: on CPU the decode step is not linear in B. In a mixed step the decode
rows ride along the prefill's matrix products, so they cost less than a decode step of B rows; the
mixed terms price that. `sample_row_ms` is the cost of one sampled row in a sampling mode *over the
profile's baseline mode* (`sampling_baseline`, whose per-row cost is inside the other terms; the
top-p mode sorts the vocabulary for every row). A mode the profile does not list costs 0 extra.

Profiles without the new terms (schema 1; the bundled GPU profiles) have an empty table, no mixed
terms and no sampling costs: the model is then exactly the linear model of schema 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from itertools import pairwise

import numpy as np

from exfairs.errors import ConfigError

COEFFICIENT_NAMES = (
    "fixed_ms",
    "decode_fixed_ms",
    "prefill_token_ms",
    "prefill_attn_ms",
    "decode_seq_ms",
    "decode_ctx_ms",
)
#: Sampling modes, by the code path vLLM 0.32's sampler takes for a batch (`sampling_mode`).
SAMPLING_MODES = ("greedy", "random", "top-p")
#: The mode of a live run with ExFairS's default sampling parameters (temperature 0.7, top-p 0.9).
DEFAULT_SAMPLING_MODE = "top-p"


def sampling_mode(temperature: float, top_p: float = 1.0, top_k: int = -1) -> str:
    """The sampler path for these parameters: ``greedy`` (argmax; vLLM treats temperature below
    1e-5 as greedy), ``top-p`` (top-p < 1 or top-k on: the vocabulary is sorted per row) or
    ``random`` (plain sampling from the softmax)."""
    if temperature < 1e-5:
        return "greedy"
    if top_p < 1.0 or top_k > 0:
        return "top-p"
    return "random"


def batch_mode(modes: Sequence[str]) -> str:
    """The sampler path of a batch whose requests sample in `modes`: vLLM samples the whole
    batch on the most expensive path any of its rows needs."""
    if "top-p" in modes:
        return "top-p"
    if "random" in modes:
        return "random"
    return "greedy"


def _check(name: str, value: object, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value)
                                       and value >= 0):
        raise ConfigError("must be a finite number ≥ 0", field=name, value=value)


@dataclass(frozen=True, slots=True)
class CostCoefficients:
    """Coefficients of the step-cost model, in milliseconds per unit (see the module docstring).

    `decode_knots` (batch sizes, strictly increasing, ≥ 1) and `decode_knot_ms` (same length)
    define table(B); `mixed_fixed_ms`/`mixed_seq_ms` are both None (mixed steps use the decode
    part) or both set; `sample_row_ms` is ((mode, ms per row), ...) over `sampling_baseline`."""

    fixed_ms: float
    decode_fixed_ms: float
    prefill_token_ms: float
    prefill_attn_ms: float
    decode_seq_ms: float
    decode_ctx_ms: float
    floor_ms: float = 0.0
    decode_knots: tuple[int, ...] = ()
    decode_knot_ms: tuple[float, ...] = ()
    mixed_fixed_ms: float | None = None
    mixed_seq_ms: float | None = None
    sample_row_ms: tuple[tuple[str, float], ...] = ()
    sampling_baseline: str = "greedy"
    _knot_arrays: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False,
                                                                compare=False)

    def __post_init__(self) -> None:
        for name in (*COEFFICIENT_NAMES, "floor_ms"):
            _check(name, getattr(self, name))
        for name in ("mixed_fixed_ms", "mixed_seq_ms"):
            _check(name, getattr(self, name), allow_none=True)
        if (self.mixed_fixed_ms is None) != (self.mixed_seq_ms is None):
            raise ConfigError("mixed_fixed_ms and mixed_seq_ms must be both set or both absent",
                              field="mixed_seq_ms", value=self.mixed_seq_ms)
        knots, vals = self.decode_knots, self.decode_knot_ms
        if len(knots) != len(vals):
            raise ConfigError(f"must have as many entries as decode_knots ({len(knots)})",
                              field="decode_knot_ms", value=list(vals))
        if knots and (any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in knots)
                      or any(b <= a for a, b in pairwise(knots))):
            raise ConfigError("must be strictly increasing integers ≥ 1", field="decode_knots",
                              value=list(knots))
        for v in vals:
            _check("decode_knot_ms", v)
        for mode, ms in self.sample_row_ms:
            if mode not in SAMPLING_MODES:
                raise ConfigError(f"unknown sampling mode; expected one of {SAMPLING_MODES}",
                                  field="sample_row_ms", value=mode)
            _check(f"sample_row_ms.{mode}", ms)
        if self.sampling_baseline not in SAMPLING_MODES:
            raise ConfigError(f"must be one of {SAMPLING_MODES}", field="sampling_baseline",
                              value=self.sampling_baseline)
        if knots:
            object.__setattr__(self, "_knot_arrays", (np.array(knots, dtype=np.float64),
                                                      np.array(vals, dtype=np.float64)))

    @property
    def structured(self) -> bool:
        """True when any term beyond schema 1's linear model is present."""
        return bool(self.decode_knots or self.mixed_fixed_ms is not None or self.sample_row_ms)

    def as_vector(self) -> np.ndarray:
        """The six linear coefficients in `COEFFICIENT_NAMES` order (floor excluded)."""
        return np.array([getattr(self, n) for n in COEFFICIENT_NAMES], dtype=np.float64)

    def row_ms(self, mode: str) -> float:
        """Per-row sampling cost of `mode` over the baseline (0 for a mode not listed)."""
        if mode == self.sampling_baseline:
            return 0.0
        return dict(self.sample_row_ms).get(mode, 0.0)

    def table_ms(self, decode_seqs: float) -> float:
        """table(B): 0 without knots."""
        arrays = self._knot_arrays
        if arrays is None:
            return 0.0
        return float(hat_basis(arrays[0], np.array([decode_seqs], dtype=np.float64))[0]
                     @ arrays[1])

    def to_json(self) -> dict[str, object]:
        """The ``coefficients`` section of a schema-2 profile."""
        d = asdict(self)
        d.pop("_knot_arrays")
        d["decode_knots"] = list(self.decode_knots)
        d["decode_knot_ms"] = list(self.decode_knot_ms)
        d["sample_row_ms"] = dict(self.sample_row_ms)
        return d


def hat_basis(knots: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation weights of the batch sizes `b` on `knots`: row i holds
    the weights w with table(b_i) = w · values. Below the first knot the first value holds;
    past the last knot the last segment is extended (one knot: a constant)."""
    m = len(knots)
    out = np.zeros((len(b), m), dtype=np.float64)
    if m == 1:
        out[:, 0] = 1.0
        return out
    j = np.clip(np.searchsorted(knots, b, side="right") - 1, 0, m - 2)
    lo, hi = knots[j], knots[j + 1]
    t = (np.maximum(b, knots[0]) - lo) / (hi - lo)
    rows = np.arange(len(b))
    out[rows, j] = 1.0 - t
    out[rows, j + 1] = t
    return out


@dataclass(frozen=True, slots=True)
class StepFeatures:
    """The batch composition of one step, as the cost model sees it. `rows` = sampled rows
    (0: unknown, taken as B plus one for a step with prefill; a busy step samples ≥ 1)."""

    prefill_tokens: int = 0  # P
    prefill_attn: float = 0.0  # A = Σ n·(c + n)
    decode_seqs: int = 0  # B
    decode_ctx: int = 0  # C
    rows: int = 0  # R

    @property
    def sampled_rows(self) -> int:
        if self.rows > 0:
            return self.rows
        return self.decode_seqs + (1 if self.prefill_tokens > 0 else 0)

    def as_row(self) -> np.ndarray:
        """Design-matrix row matching `COEFFICIENT_NAMES` (the linear model of schema 1)."""
        return np.array(
            [1.0, 1.0 if self.decode_seqs > 0 else 0.0, self.prefill_tokens, self.prefill_attn,
             self.decode_seqs, self.decode_ctx],
            dtype=np.float64,
        )


class CostModel:
    """Step durations and unloaded request latencies under a set of coefficients.

    `max_num_batched_tokens` is the engine's per-step token budget; the unloaded prefill of a long
    prompt is split into chunks of that size, as chunked prefill does. `sampling_mode` is the
    mode every step samples in (the run's sampling parameters, `sampling_mode()`).
    """

    def __init__(self, coefficients: CostCoefficients, max_num_batched_tokens: int = 8192,
                 sampling_mode: str = DEFAULT_SAMPLING_MODE) -> None:
        if max_num_batched_tokens < 1:
            raise ConfigError("must be ≥ 1", field="max_num_batched_tokens",
                              value=max_num_batched_tokens)
        if sampling_mode not in SAMPLING_MODES:
            raise ConfigError(f"must be one of {SAMPLING_MODES}", field="sampling_mode",
                              value=sampling_mode)
        self.coefficients = coefficients
        self.max_num_batched_tokens = max_num_batched_tokens
        self.sampling_mode = sampling_mode
        c = coefficients
        self._c = (c.fixed_ms, c.decode_fixed_ms, c.prefill_token_ms, c.prefill_attn_ms,
                   c.decode_seq_ms, c.decode_ctx_ms, c.floor_ms)
        self.structured = c.structured
        self.row_ms = c.row_ms(sampling_mode)
        self._mixed = (None if c.mixed_fixed_ms is None or c.mixed_seq_ms is None
                       else (c.mixed_fixed_ms, c.mixed_seq_ms))
        self._ttft = lru_cache(maxsize=65536)(self._unloaded_ttft_s)
        self._e2e = lru_cache(maxsize=65536)(self._unloaded_e2e_s)
        self._table = lru_cache(maxsize=4096)(c.table_ms)

    def decode_part_ms(self, decode_seqs: float) -> float:
        """decode_fixed_ms + decode_seq_ms · B + table(B) (the context term excluded)."""
        _, dfix, _, _, dseq, _, _ = self._c
        return dfix + dseq * decode_seqs + self._table(decode_seqs)

    def step_ms(self, prefill_tokens: float, prefill_attn: float, decode_seqs: float,
                decode_ctx: float, rows: int = 0) -> float:
        """Duration of one step, milliseconds. `rows`: sampled rows (0: B + [P > 0])."""
        fixed, dfix, ptok, pattn, dseq, dctx, floor = self._c
        t = fixed + ptok * prefill_tokens + pattn * prefill_attn
        if not self.structured:
            if decode_seqs > 0:
                t += dfix + dseq * decode_seqs + dctx * decode_ctx
            return max(floor, t)
        if decode_seqs > 0:
            mixed = self._mixed
            if mixed is not None and prefill_tokens > 0:
                t += mixed[0] + mixed[1] * decode_seqs + dctx * decode_ctx
            else:
                t += self.decode_part_ms(decode_seqs) + dctx * decode_ctx
        if self.row_ms:
            r = rows if rows > 0 else decode_seqs + (1 if prefill_tokens > 0 else 0)
            t += self.row_ms * r
        return max(floor, t)

    def step_s(self, features: StepFeatures) -> float:
        """Duration of one step, seconds."""
        return self.step_ms(features.prefill_tokens, features.prefill_attn, features.decode_seqs,
                            features.decode_ctx, features.rows) / 1000.0

    def decode_run_ms(self, n_steps: int, decode_seqs: int, decode_ctx: int) -> np.ndarray:
        """Durations (ms) of `n_steps` consecutive decode-only steps of a fixed batch of
        `decode_seqs` sequences whose summed context starts at `decode_ctx` and grows by
        `decode_seqs` each step."""
        fixed, dfix, _, _, dseq, dctx, floor = self._c
        ctx = decode_ctx + decode_seqs * np.arange(n_steps, dtype=np.float64)
        if not self.structured:
            return np.maximum(floor, fixed + dfix + dseq * decode_seqs + dctx * ctx)
        t = fixed + (self.decode_part_ms(decode_seqs) + dctx * ctx)
        if self.row_ms:
            t = t + self.row_ms * decode_seqs
        return np.maximum(floor, t)

    # -- unloaded latencies (records.LatencyModel) ---------------------------------------------
    def unloaded_ttft_s(self, prompt_tokens: int) -> float:
        """Prefill of a lone prompt, in chunks of `max_num_batched_tokens`; seconds."""
        return float(self._ttft(int(prompt_tokens)))

    def unloaded_e2e_s(self, prompt_tokens: int, output_tokens: int) -> float:
        """TTFT plus `output_tokens − 1` decode steps of a batch of one; seconds."""
        return float(self._e2e(int(prompt_tokens), int(output_tokens)))

    def unloaded_tpot_s(self, prompt_tokens: int, output_tokens: int) -> float:
        """Mean decode step of a lone request; seconds (0 for single-token outputs)."""
        if output_tokens < 2:
            return 0.0
        return (self.unloaded_e2e_s(prompt_tokens, output_tokens)
                - self.unloaded_ttft_s(prompt_tokens)) / (output_tokens - 1)

    def _unloaded_ttft_s(self, prompt_tokens: int) -> float:
        total, done = 0.0, 0
        while done < prompt_tokens:
            n = min(self.max_num_batched_tokens, prompt_tokens - done)
            total += self.step_ms(n, n * (done + n), 0, 0, 1)
            done += n
        return total / 1000.0

    def _unloaded_e2e_s(self, prompt_tokens: int, output_tokens: int) -> float:
        # The k-th decode step (k = 1 .. output−1) attends to the prompt and the k tokens so far.
        decode = self.decode_run_ms(max(0, output_tokens - 1), 1, prompt_tokens + 1).sum()
        return self._unloaded_ttft_s(prompt_tokens) + float(decode) / 1000.0
