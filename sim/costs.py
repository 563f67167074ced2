"""Step costs of the engine model, behind one interface so that another predictor (a table, a
learned model) plugs in without touching the scheduler or the engine loop.

A `StepCostModel` prices a `StepPlan` (`step_ms`) and a run of identical decode-only steps
(`decode_run_ms`); the engine sums the durations into its clock. Contract: element j of
``decode_run_ms(n, b, c)`` equals, bit for bit, `step_ms` of a decode-only plan of ``b``
sequences with summed context ``c + j·b`` — the fast path and the step-by-step path then produce
identical token times.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from exfairs.calibration.costmodel import CostModel
from exfairs.sim.plan import StepPlan


class StepCostModel(Protocol):
    """Prices engine steps (milliseconds)."""

    def step_ms(self, plan: StepPlan) -> float:
        """Duration of the step `plan` schedules."""
        ...

    def decode_run_ms(self, n_steps: int, decode_seqs: int,
                      decode_ctx: int) -> npt.NDArray[np.float64]:
        """Durations of `n_steps` decode-only steps of `decode_seqs` sequences whose summed
        context starts at `decode_ctx` and grows by `decode_seqs` per step."""
        ...


class LinearStepCost:
    """The calibrated linear model of `exfairs.calibration.costmodel` (`CostModel.step_ms`)."""

    def __init__(self, cost: CostModel) -> None:
        c = cost.coefficients
        self._c = (c.fixed_ms, c.decode_fixed_ms, c.prefill_token_ms, c.prefill_attn_ms,
                   c.decode_seq_ms, c.decode_ctx_ms, c.floor_ms)

    def step_ms(self, plan: StepPlan) -> float:
        # Same operations, in the same order, as CostModel.step_ms.
        fixed, dfix, ptok, pattn, dseq, dctx, floor = self._c
        t = fixed + ptok * plan.prefill_tokens + pattn * plan.prefill_attn
        if plan.decode_seqs > 0:
            t += dfix + dseq * plan.decode_seqs + dctx * plan.decode_ctx
        return max(floor, t)

    def decode_run_ms(self, n_steps: int, decode_seqs: int,
                      decode_ctx: int) -> npt.NDArray[np.float64]:
        fixed, dfix, _, _, dseq, dctx, floor = self._c
        # fixed + ptok·0 + pattn·0 == fixed exactly, so this is step_ms's arithmetic, per step.
        ctx = float(decode_ctx) + decode_seqs * np.arange(n_steps, dtype=np.float64)
        out: npt.NDArray[np.float64] = np.maximum(floor, fixed + (dfix + dseq * decode_seqs
                                                                  + dctx * ctx))
        return out
