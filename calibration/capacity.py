"""The engine capacity a scenario's request mix implies, from a profile's step-cost model.

`estimate_capacity_rps` is the analytic request rate an engine sustains for a scenario's request
mix; scenarios with ``rate_basis = "capacity"`` are drawn (`exfairs.workload.draw_workload`) at a
load factor times it. It lives beside the cost model because it reads the model's coefficients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from exfairs.calibration.costmodel import CostModel
from exfairs.scenario import Scenario

__all__ = ["CapacityEstimate", "EngineLimits", "capacity_estimate", "estimate_capacity_rps"]


class EngineLimits(Protocol):
    """The engine knobs the capacity estimate needs (vLLM's names). `EngineDefaults` of a profile
    and the simulator's `EngineConfig` both have them."""

    @property
    def num_gpu_blocks(self) -> int: ...
    @property
    def block_size(self) -> int: ...
    @property
    def max_num_seqs(self) -> int: ...
    @property
    def max_num_batched_tokens(self) -> int: ...
    @property
    def max_model_len(self) -> int: ...


@dataclass(frozen=True, slots=True)
class CapacityEstimate:
    """The saturated operating point behind `estimate_capacity_rps`.

    `batch` is the saturated decode batch B*, `mean_context_tokens` the decode-token-weighted mean
    context per running sequence, `decode_step_ms` the step time of that batch, `prefill_ms` and
    `decode_ms` a mean request's engine time spent on its prefill and its decode tokens; `rps`
    = 1000 / (prefill_ms + decode_ms). `kv_limited` tells whether KV capacity (not max_num_seqs)
    bounds the batch.
    """

    rps: float
    batch: float
    mean_context_tokens: float
    decode_step_ms: float
    prefill_ms: float
    decode_ms: float
    mean_prompt_tokens: float
    mean_output_tokens: float
    kv_limited: bool


def _prefill_ms(cost: CostModel, prompts: np.ndarray, chunk: int) -> np.ndarray:
    # Marginal cost of computing each prompt in chunks of `chunk` tokens riding along decode
    # steps: the step's fixed costs are already paid by the decode batch.
    c = cost.coefficients
    full, rest = np.divmod(prompts, chunk)
    # Σ over chunks of n·(done + n): full chunks k = 1..full contribute chunk·(k·chunk), the
    # remainder rest·(full·chunk + rest).
    attn = chunk * chunk * full * (full + 1) / 2.0 + rest * (full * chunk + rest)
    return np.asarray(c.prefill_token_ms * prompts + c.prefill_attn_ms * attn, dtype=np.float64)


def capacity_estimate(scenario: Scenario, cost_model: CostModel,
                      engine: EngineLimits, *, grid: int = 120) -> CapacityEstimate:
    """The analytic saturated operating point of `engine` under the scenario's request mix.

    Model (a fluid approximation of a saturated vLLM engine with chunked prefill):
    - the request mix is the clients' length distributions weighted by their rate shares, with
      prompts clamped to fit `max_model_len` as `clamp_lengths` does;
    - a request decodes output − 1 tokens (its first token comes with the prefill); while
      decoding it holds context p + k for k = 1 … o − 1, so the decode-token-weighted mean
      context per sequence is m = E[(o − 1)(p + o/2)] / E[o − 1], plus half a KV block;
    - the saturated decode batch is B* = min(max_num_seqs, max_num_batched_tokens, KV tokens /
      (m + block_size/2)), at least 1;
    - a request's engine time = its prefill's marginal cost (prefill token and attention terms,
      chunks of max_num_batched_tokens − B*) + (o − 1) × decode_step(B*, B*·m) / B*.
      Capacity = 1 / E[engine time].
    Expectations use `grid` quantile points of each length distribution. The estimate ignores
    preemption and scheduling gaps, so it is an upper bound a real engine approaches at
    saturation. It grows with KV capacity and max_num_seqs and falls with longer requests.
    """
    budget = int(engine.max_num_batched_tokens)
    mml = int(engine.max_model_len)
    total = scenario.total_rate_per_min
    e_dec = e_ctx = e_p = e_o = 0.0
    per_client: list[tuple[float, np.ndarray, np.ndarray, np.ndarray]] = []
    for c in scenario.clients:
        share = c.rate_per_min / total
        pv, pw = c.prompt.support(grid)
        ov, ow = c.output.support(grid)
        o = np.minimum(ov, mml - 1)[None, :]
        p = np.minimum(pv[:, None], mml - o)
        w = pw[:, None] * ow[None, :]
        w = w / w.sum()
        dec = o - 1.0
        e_dec += share * float((w * dec).sum())
        e_ctx += share * float((w * dec * (p + o / 2.0)).sum())
        e_p += share * float((w * p).sum())
        e_o += share * float((w * o).sum())
        per_client.append((share, w, p, dec))
    mean_ctx = e_ctx / e_dec if e_dec > 0 else e_p
    kv_batch = engine.num_gpu_blocks * engine.block_size / (mean_ctx + engine.block_size / 2.0)
    batch = max(1.0, min(float(engine.max_num_seqs), float(budget), math.floor(kv_batch)))
    kv_limited = math.floor(kv_batch) < min(engine.max_num_seqs, budget)
    step_ms = cost_model.step_ms(0, 0, batch, batch * mean_ctx)
    chunk = max(1, budget - int(batch))
    prefill = 0.0
    for share, w, p, _ in per_client:
        pf = _prefill_ms(cost_model, np.rint(p), chunk)
        if e_dec <= 0:  # no decode steps to carry the fixed step cost: prefill-only steps pay it
            pf = pf + cost_model.coefficients.fixed_ms * p / budget
        prefill += share * float((w * pf).sum())
    decode = e_dec * step_ms / batch
    return CapacityEstimate(rps=1000.0 / (prefill + decode), batch=batch,
                            mean_context_tokens=mean_ctx, decode_step_ms=step_ms,
                            prefill_ms=prefill, decode_ms=decode, mean_prompt_tokens=e_p,
                            mean_output_tokens=e_o, kv_limited=kv_limited)


def estimate_capacity_rps(scenario: Scenario, cost_model: CostModel,
                          engine: EngineLimits) -> float:
    """Requests per second `engine` (with `cost_model`'s step costs) sustains for the scenario's
    request mix at saturation; see `capacity_estimate` for the model and its assumptions."""
    return capacity_estimate(scenario, cost_model, engine).rps
