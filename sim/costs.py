"""Step costs of the engine model, behind one interface so that another predictor (a table, a
learned model) plugs in without touching the scheduler or the engine loop.

A `StepCostModel` prices a `StepPlan` (`step_ms`) and a run of identical decode-only steps
(`decode_run_ms`); the engine sums the durations into its clock. Contract: element j of
``decode_run_ms(n, b, c, first_step=k)`` equals, bit for bit, `step_ms` of a decode-only plan of
``b`` sequences with summed context ``c + j·b`` at engine step ``k + j`` — the fast path and the
step-by-step path then produce identical token times.

`step_cost_for` builds the model the simulator uses for a profile: the structured cost model of
`exfairs.calibration.costmodel` in the run's sampling mode, optionally with multiplicative step
noise drawn from the profile's residuals (`NoisyStepCost`; off by default).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from exfairs.calibration.costmodel import DEFAULT_SAMPLING_MODE, CostModel
from exfairs.calibration.profile import Profile, Residuals
from exfairs.errors import ConfigError
from exfairs.rng import stream
from exfairs.sim.plan import StepPlan


class StepCostModel(Protocol):
    """Prices engine steps (milliseconds)."""

    def step_ms(self, plan: StepPlan) -> float:
        """Duration of the step `plan` schedules."""
        ...

    def decode_run_ms(self, n_steps: int, decode_seqs: int, decode_ctx: int,
                      first_step: int = 0) -> npt.NDArray[np.float64]:
        """Durations of `n_steps` decode-only steps of `decode_seqs` sequences whose summed
        context starts at `decode_ctx` and grows by `decode_seqs` per step; the first is engine
        step `first_step`."""
        ...


def sampled_rows(plan: StepPlan) -> int:
    """Rows the step samples: one per scheduled request (vLLM computes logits for every
    scheduled request, partial prefill chunks included)."""
    return plan.decode_seqs + sum(1 for ch in plan.chunks if not ch.decode)


class LinearStepCost:
    """The calibrated linear model of `exfairs.calibration.costmodel` (`CostModel.step_ms`)."""

    def __init__(self, cost: CostModel) -> None:
        c = cost.coefficients
        self._c = (c.fixed_ms, c.decode_fixed_ms, c.prefill_token_ms, c.prefill_attn_ms,
                   c.decode_seq_ms, c.decode_ctx_ms, c.floor_ms)
        self._cost = cost
        self._structured = cost.structured
        self._rows = cost.row_ms != 0.0

    def step_ms(self, plan: StepPlan) -> float:
        if self._structured:
            return self._cost.step_ms(plan.prefill_tokens, plan.prefill_attn, plan.decode_seqs,
                                      plan.decode_ctx,
                                      sampled_rows(plan) if self._rows else 0)
        # Same operations, in the same order, as CostModel.step_ms.
        fixed, dfix, ptok, pattn, dseq, dctx, floor = self._c
        t = fixed + ptok * plan.prefill_tokens + pattn * plan.prefill_attn
        if plan.decode_seqs > 0:
            t += dfix + dseq * plan.decode_seqs + dctx * plan.decode_ctx
        return max(floor, t)

    def decode_run_ms(self, n_steps: int, decode_seqs: int, decode_ctx: int,
                      first_step: int = 0) -> npt.NDArray[np.float64]:
        if self._structured:
            out_s: npt.NDArray[np.float64] = self._cost.decode_run_ms(n_steps, decode_seqs,
                                                                      decode_ctx)
            return out_s
        fixed, dfix, _, _, dseq, dctx, floor = self._c
        # fixed + ptok·0 + pattn·0 == fixed exactly, so this is step_ms's arithmetic, per step.
        ctx = float(decode_ctx) + decode_seqs * np.arange(n_steps, dtype=np.float64)
        out: npt.NDArray[np.float64] = np.maximum(floor, fixed + (dfix + dseq * decode_seqs
                                                                  + dctx * ctx))
        return out


class NoisyStepCost:
    """`base` times a multiplicative factor per step, drawn from `residuals` (the measured /
    predicted step ratios of the profile's fit) by inverse transform, normalised to mean 1 so the
    mean step time is the base model's.

    Factors come in blocks of `block_steps` consecutive engine steps (one draw per block, the
    blocks' phase drawn too): measured steps are autocorrelated (another process holding a core
    slows several steps in a row), and constant blocks of length L have a lag-1 autocorrelation
    of 1 − 1/L, so the default L is 1 / (1 − ρ) from the residuals' lag-1 autocorrelation ρ.
    The factor of step k depends only on (seed, k): the fast path and step by step agree."""

    def __init__(self, base: StepCostModel, residuals: Residuals, seed: int,
                 block_steps: int | None = None) -> None:
        rho = max(0.0, residuals.lag1_autocorr)
        length = block_steps if block_steps is not None else max(1, round(1.0 / max(1e-6,
                                                                                 1.0 - rho)))
        if length < 1 or length > 10**6:
            raise ConfigError("must be in [1, 1e6]", field="block_steps", value=length)
        self.base = base
        self.block_steps = int(length)
        self._p = np.array(residuals.probabilities, dtype=np.float64)
        q = np.array(residuals.ratio_quantiles, dtype=np.float64)
        # Mean of the piecewise-linear quantile function = trapezoid rule over p.
        mean = float(np.sum((q[1:] + q[:-1]) * np.diff(self._p)) / 2.0)
        self._q = q / mean
        self._rng = stream(seed, "sim", "step-noise")
        self._phase = int(self._rng.integers(0, self.block_steps))
        self._factors = np.zeros(0, dtype=np.float64)

    def _factor_array(self, first: int, n: int) -> npt.NDArray[np.float64]:
        last_block = (first + n - 1 + self._phase) // self.block_steps
        have = len(self._factors)
        if last_block >= have:
            # Blocks are drawn in order and kept, so a factor never depends on call order.
            u = self._rng.random(max(last_block + 1 - have, 1024))
            self._factors = np.concatenate([self._factors, np.interp(u, self._p, self._q)])
        blocks = (np.arange(first, first + n) + self._phase) // self.block_steps
        out: npt.NDArray[np.float64] = self._factors[blocks]
        return out

    def step_ms(self, plan: StepPlan) -> float:
        return float(self.base.step_ms(plan) * self._factor_array(plan.step, 1)[0])

    def decode_run_ms(self, n_steps: int, decode_seqs: int, decode_ctx: int,
                      first_step: int = 0) -> npt.NDArray[np.float64]:
        base = self.base.decode_run_ms(n_steps, decode_seqs, decode_ctx, first_step)
        out: npt.NDArray[np.float64] = base * self._factor_array(first_step, n_steps)
        return out


def step_cost_for(profile: Profile, max_num_batched_tokens: int | None = None, *,
                  sampling_mode: str = DEFAULT_SAMPLING_MODE, noise_seed: int | None = None,
                  block_steps: int | None = None) -> StepCostModel:
    """The simulator's step costs for `profile`: `LinearStepCost` in `sampling_mode`, wrapped
    in `NoisyStepCost` when `noise_seed` is given (ConfigError if the profile has no
    residuals)."""
    cost: StepCostModel = LinearStepCost(profile.cost_model(max_num_batched_tokens,
                                                            sampling_mode))
    if noise_seed is None:
        return cost
    if profile.residuals is None:
        raise ConfigError("step noise needs a profile with residuals (schema 2, fitted by "
                          "exfairs-calibrate)", field="profile", value=profile.id)
    return NoisyStepCost(cost, profile.residuals, noise_seed, block_steps)
