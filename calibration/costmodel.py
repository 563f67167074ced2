"""The step-cost model: duration of one engine step from its batch composition (docs/design.md §5).

    t_ms = max(floor_ms,
               fixed_ms
               + decode_fixed_ms · [step has ≥ 1 decode sequence]
               + prefill_token_ms · P            P = Σ prefill tokens computed in the step
               + prefill_attn_ms  · A            A = Σ over prefill chunks of n · (c + n)
               + decode_seq_ms    · B            B = decode sequences in the step
               + decode_ctx_ms    · C)           C = Σ context tokens of those sequences

where a prefill chunk computes n tokens on top of c tokens already in the KV cache. A mixed
prefill+decode step pays `fixed_ms` once and adds the prefill and decode terms: the weights are read
once per step whatever the mix, while the token-proportional work adds up. `decode_fixed_ms` is the
extra a decode step costs over a prefill's intercept (launching the decode attention path).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

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


@dataclass(frozen=True, slots=True)
class CostCoefficients:
    """Coefficients of the step-cost model, in milliseconds per unit (see the module docstring)."""

    fixed_ms: float
    decode_fixed_ms: float
    prefill_token_ms: float
    prefill_attn_ms: float
    decode_seq_ms: float
    decode_ctx_ms: float
    floor_ms: float = 0.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError("must be a finite number ≥ 0", field=name, value=value)

    def as_vector(self) -> np.ndarray:
        """The six linear coefficients in `COEFFICIENT_NAMES` order (floor excluded)."""
        return np.array([getattr(self, n) for n in COEFFICIENT_NAMES], dtype=np.float64)


@dataclass(frozen=True, slots=True)
class StepFeatures:
    """The batch composition of one step, as the cost model sees it."""

    prefill_tokens: int = 0  # P
    prefill_attn: float = 0.0  # A = Σ n·(c + n)
    decode_seqs: int = 0  # B
    decode_ctx: int = 0  # C

    def as_row(self) -> np.ndarray:
        """Design-matrix row matching `COEFFICIENT_NAMES`."""
        return np.array(
            [1.0, 1.0 if self.decode_seqs > 0 else 0.0, self.prefill_tokens, self.prefill_attn,
             self.decode_seqs, self.decode_ctx],
            dtype=np.float64,
        )


class CostModel:
    """Step durations and unloaded request latencies under a set of coefficients.

    `max_num_batched_tokens` is the engine's per-step token budget; the unloaded prefill of a long
    prompt is split into chunks of that size, as chunked prefill does.
    """

    def __init__(self, coefficients: CostCoefficients, max_num_batched_tokens: int = 8192) -> None:
        if max_num_batched_tokens < 1:
            raise ConfigError("must be ≥ 1", field="max_num_batched_tokens",
                              value=max_num_batched_tokens)
        self.coefficients = coefficients
        self.max_num_batched_tokens = max_num_batched_tokens
        c = coefficients
        self._c = (c.fixed_ms, c.decode_fixed_ms, c.prefill_token_ms, c.prefill_attn_ms,
                   c.decode_seq_ms, c.decode_ctx_ms, c.floor_ms)
        self._ttft = lru_cache(maxsize=65536)(self._unloaded_ttft_s)
        self._e2e = lru_cache(maxsize=65536)(self._unloaded_e2e_s)

    def step_ms(self, prefill_tokens: float, prefill_attn: float, decode_seqs: float,
                decode_ctx: float) -> float:
        """Duration of one step, milliseconds."""
        fixed, dfix, ptok, pattn, dseq, dctx, floor = self._c
        t = fixed + ptok * prefill_tokens + pattn * prefill_attn
        if decode_seqs > 0:
            t += dfix + dseq * decode_seqs + dctx * decode_ctx
        return max(floor, t)

    def step_s(self, features: StepFeatures) -> float:
        """Duration of one step, seconds."""
        return self.step_ms(features.prefill_tokens, features.prefill_attn, features.decode_seqs,
                            features.decode_ctx) / 1000.0

    def decode_run_ms(self, n_steps: int, decode_seqs: int, decode_ctx: int) -> np.ndarray:
        """Durations (ms) of `n_steps` consecutive decode-only steps of a fixed batch of
        `decode_seqs` sequences whose summed context starts at `decode_ctx` and grows by
        `decode_seqs` each step."""
        fixed, dfix, _, _, dseq, dctx, floor = self._c
        ctx = decode_ctx + decode_seqs * np.arange(n_steps, dtype=np.float64)
        return np.maximum(floor, fixed + dfix + dseq * decode_seqs + dctx * ctx)

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
            total += self.step_ms(n, n * (done + n), 0, 0)
            done += n
        return total / 1000.0

    def _unloaded_e2e_s(self, prompt_tokens: int, output_tokens: int) -> float:
        # The k-th decode step (k = 1 .. output−1) attends to the prompt and the k tokens so far.
        decode = self.decode_run_ms(max(0, output_tokens - 1), 1, prompt_tokens + 1).sum()
        return self._unloaded_ttft_s(prompt_tokens) + float(decode) / 1000.0
