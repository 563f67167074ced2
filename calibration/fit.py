"""Fit the step-cost model (costmodel.py) to measured steps and report its held-out error.

Non-negative least squares (scipy.optimize.nnls) on relative errors: each row of the design
matrix and its target are divided by the measured duration, so a 1 ms decode step weighs as much
as a 300 ms prefill. `floor_ms` (the step-time floor below which small steps do not get cheaper,
e.g. a GPU's weight-read time) is not linear; it is chosen by a one-dimensional search: for each
candidate floor the linear part is fitted to the steps above the floor and the floor giving the
smallest mean squared relative error over all training steps wins (0 is always a candidate).

Held-out error: steps are grouped by composition (repeats of one shape stay together, so a
held-out step is a shape the fit never saw) and the groups dealt into seeded folds
(`exfairs.rng.stream(seed, "calibration", "holdout")`), each share of `test_share` held out in
turn (K-fold cross-validation): every step is scored once, by the absolute percentage error of a
model fitted without it. The returned coefficients are fitted on all steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import nnls

from exfairs.calibration.costmodel import (
    COEFFICIENT_NAMES,
    CostCoefficients,
    CostModel,
    StepFeatures,
)
from exfairs.calibration.profile import FitError, Measurement
from exfairs.errors import InputError
from exfairs.rng import stream


@dataclass(frozen=True, slots=True)
class FitResult:
    """Fitted coefficients and their held-out error."""

    coefficients: CostCoefficients
    error: FitError


def _features(m: Measurement) -> StepFeatures:
    return StepFeatures(m.prefill_tokens, m.prefill_attn, m.decode_seqs, m.decode_ctx)


def design_matrix(measurements: Sequence[Measurement]) -> tuple[np.ndarray, np.ndarray]:
    """(X, y): one `StepFeatures.as_row` per step and the durations in ms."""
    x = np.array([_features(m).as_row() for m in measurements], dtype=np.float64)
    y = np.array([m.duration_ms for m in measurements], dtype=np.float64)
    return x.reshape(len(measurements), len(COEFFICIENT_NAMES)), y


def predict_ms(coefficients: CostCoefficients, measurements: Sequence[Measurement]) -> np.ndarray:
    """Modelled durations (ms) of the measured steps."""
    cm = CostModel(coefficients)
    return np.array([cm.step_ms(m.prefill_tokens, m.prefill_attn, m.decode_seqs, m.decode_ctx)
                     for m in measurements], dtype=np.float64)


def ape(coefficients: CostCoefficients, measurements: Sequence[Measurement]) -> np.ndarray:
    """Absolute percentage error (in %) of the model on each step."""
    y = np.array([m.duration_ms for m in measurements], dtype=np.float64)
    return np.abs(predict_ms(coefficients, measurements) - y) / y * 100.0


def _nnls_relative(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # Scale columns to unit norm so the solver is well conditioned (features span 1 .. 1e8).
    a = x / y[:, None]
    norms = np.linalg.norm(a, axis=0)
    norms[norms == 0] = 1.0
    beta, _ = nnls(a / norms, np.ones_like(y), maxiter=50 * x.shape[1])
    return np.asarray(beta / norms, dtype=np.float64)


def fit_coefficients(measurements: Sequence[Measurement], *,
                     fit_floor: bool = True) -> CostCoefficients:
    """Least relative-squared-error non-negative coefficients (and floor) for the steps."""
    if len(measurements) < 2:
        raise InputError("need at least 2 measured steps to fit", field="measurements",
                         value=len(measurements))
    x, y = design_matrix(measurements)
    if np.any(y <= 0) or not np.all(np.isfinite(y)):
        raise InputError("step durations must be finite and > 0", field="duration_ms",
                         value=float(y.min()))
    candidates = [0.0]
    if fit_floor:
        lo = np.sort(y)[: max(1, len(y) // 2)]
        candidates += sorted(set(np.quantile(lo, np.linspace(0.0, 1.0, 25)).tolist()))
    best: tuple[float, CostCoefficients] | None = None
    for floor in candidates:
        above = y > floor * 1.02
        if above.sum() < 2:
            continue
        beta = _nnls_relative(x[above], y[above])
        named: dict[str, Any] = dict(zip(COEFFICIENT_NAMES, (float(b) for b in beta), strict=True))
        coeffs = CostCoefficients(**named, floor_ms=float(floor))
        pred = predict_ms(coeffs, measurements)
        score = float(np.mean(((pred - y) / y) ** 2))
        if best is None or score < best[0] - 1e-12:
            best = (score, coeffs)
    assert best is not None
    return best[1]


def holdout_folds(measurements: Sequence[Measurement], *, seed: int, test_share: float
                  ) -> list[list[Measurement]]:
    """Partition the steps into ``round(1 / test_share)`` seeded folds by composition group."""
    if not 0.0 < test_share <= 0.5:
        raise InputError("must be in (0, 0.5]", field="test_share", value=test_share)
    groups: dict[tuple[int, float, int, int], list[Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.prefill_tokens, m.prefill_attn, m.decode_seqs, m.decode_ctx),
                          []).append(m)
    keys = sorted(groups)
    k = max(2, round(1.0 / test_share))
    if len(keys) < 2 * k:
        raise InputError(f"need at least {2 * k} distinct step compositions for a held-out fit",
                         field="measurements", value=len(keys))
    order = stream(seed, "calibration", "holdout").permutation(len(keys))
    folds: list[list[Measurement]] = [[] for _ in range(k)]
    for rank, i in enumerate(order.tolist()):
        folds[rank % k].extend(groups[keys[i]])
    return folds


def median_by_composition(measurements: Sequence[Measurement]) -> list[Measurement]:
    """One step per distinct composition, with the median duration of its repeats.

    On a noisy machine the repeats of one shape scatter (other processes steal the cores); the
    median is the robust estimate of the step's cost.
    """
    groups: dict[tuple[int, float, int, int], list[float]] = {}
    for m in measurements:
        groups.setdefault((m.prefill_tokens, m.prefill_attn, m.decode_seqs, m.decode_ctx),
                          []).append(m.duration_ms)
    return [Measurement(k[0], k[1], k[2], k[3], float(np.median(v)))
            for k, v in sorted(groups.items())]


def fit_cost_model(measurements: Sequence[Measurement], *, seed: int = 0,
                   test_share: float = 0.25, fit_floor: bool = True,
                   aggregate: bool = True) -> FitResult:
    """Fit the steps; estimate the error on held-out steps by seeded K-fold cross-validation.

    The composition groups are dealt into K = round(1 / test_share) folds (`holdout_folds`); each
    fold in turn is held out, the model is fitted on the others and scored on it, so every group
    is scored exactly once by a model that never saw it. The reported median / p90 APE pool those
    held-out scores (n_test of them). The returned coefficients are then fitted on all steps
    (n_train). `aggregate`: work on per-composition medians (`median_by_composition`) instead
    of every raw step; the counts then count compositions.
    """
    if aggregate:
        measurements = median_by_composition(measurements)
    folds = holdout_folds(measurements, seed=seed, test_share=test_share)
    errors: list[np.ndarray] = []
    for i, test in enumerate(folds):
        train = [m for j, f in enumerate(folds) if j != i for m in f]
        errors.append(ape(fit_coefficients(train, fit_floor=fit_floor), test))
    err = np.concatenate(errors)
    coeffs = fit_coefficients(measurements, fit_floor=fit_floor)
    return FitResult(coeffs, FitError(median_ape=round(float(np.median(err)), 3),
                                      p90_ape=round(float(np.percentile(err, 90)), 3),
                                      n_train=len(measurements), n_test=int(err.size)))
