"""Fit the structured step-cost model (costmodel.py: decode table per batch size, mixed-step
terms, per-row sampling cost by mode) to MEAN step durations, and describe its residuals.

Why means: the simulator adds step durations, so its clock is right when each predicted step is
the mean of the steps of that composition; live step times are heavy-tailed (a median fit runs
short). The fit is iteratively reweighted non-negative least squares: the first pass weighs each
step by 1/measured (relative errors, so a 1 ms step counts as much as a 300 ms one), the second
by 1/predicted of the first pass — for steps of one composition that minimiser is their mean.

Columns: fixed, P, A, C·[B>0]; the decode part (decode-only steps, and mixed steps too unless
mixed terms are fitted) either as the decode table's hat basis (`decode_knots`; then
decode_fixed and decode_seq are 0, the table spans them) or as decode_fixed + decode_seq·B;
mixed_fixed and mixed_seq·B for steps with prefill and decode (fitted when the data holds at
least `MIN_MIXED` such steps); and R·[mode = m] for each sampling mode m other than the
baseline (greedy when present in the data; a mode's per-row cost is identifiable only against
another mode measured on the same shapes). All coefficients are ≥ 0.

Held-out error: `heldout_by_run` fits on all runs but one and scores the whole held-out run,
each run in turn (what a user sees when the profile predicts traffic it was not fitted on).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

from exfairs.calibration.costmodel import CostCoefficients, CostModel, hat_basis
from exfairs.calibration.profile import FitError, Measurement, Residuals
from exfairs.errors import InputError

#: Mixed steps needed before mixed-step terms are fitted.
MIN_MIXED = 4
#: Residual quantiles stored in a profile (probabilities 0, 0.025, ..., 1).
RESIDUAL_PROBABILITIES = tuple(round(float(x), 4) for x in np.linspace(0.0, 1.0, 41))
_KNOT_CANDIDATES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768,
                    1024)


@dataclass(frozen=True, slots=True)
class FitOptions:
    """What the structured fit may use. `knots` None: chosen from the data (`choose_knots`);
    () : no decode table (decode_fixed + decode_seq·B)."""

    knots: tuple[int, ...] | None = None
    mixed: bool = True
    sampling: bool = True
    floor: bool = True


def choose_knots(batch_sizes: Sequence[int]) -> tuple[int, ...]:
    """Knots of the decode table: every observed batch size when there are at most 16 of them,
    else the observed sizes nearest to a geometric ladder, plus the largest."""
    seen = sorted({int(b) for b in batch_sizes if b > 0})
    if len(seen) <= 16:
        return tuple(seen)
    arr = np.array(seen)
    picked = {int(arr[np.argmin(np.abs(arr - c))]) for c in _KNOT_CANDIDATES if c <= seen[-1]}
    picked.update((seen[0], seen[-1]))
    return tuple(sorted(picked))


def _baseline(measurements: Sequence[Measurement]) -> str:
    modes = Counter(m.sampling or "greedy" for m in measurements)
    return "greedy" if "greedy" in modes else modes.most_common(1)[0][0]


@dataclass(frozen=True, slots=True)
class _Design:
    x: np.ndarray
    y: np.ndarray
    knots: tuple[int, ...]
    mixed: bool
    modes: tuple[str, ...]  # modes with a per-row column, after the fixed columns
    baseline: str


def _design(ms: Sequence[Measurement], knots: tuple[int, ...], mixed: bool,
            modes: tuple[str, ...], baseline: str) -> _Design:
    p = np.array([m.prefill_tokens for m in ms], dtype=np.float64)
    a = np.array([m.prefill_attn for m in ms], dtype=np.float64)
    b = np.array([m.decode_seqs for m in ms], dtype=np.float64)
    c = np.array([m.decode_ctx for m in ms], dtype=np.float64)
    y = np.array([m.duration_ms for m in ms], dtype=np.float64)
    rows = np.array([m.rows if m.rows > 0 else m.decode_seqs + (1 if m.prefill_tokens else 0)
                     for m in ms], dtype=np.float64)
    has_d = (b > 0).astype(np.float64)
    is_mixed = ((p > 0) & (b > 0)).astype(np.float64)
    dpart = has_d * (1.0 - is_mixed) if mixed else has_d
    cols = [np.ones_like(y), p, a, c * has_d]
    if knots:
        cols += list((hat_basis(np.array(knots, dtype=np.float64), b) * dpart[:, None]).T)
    else:
        cols += [dpart, b * dpart]
    if mixed:
        cols += [is_mixed, b * is_mixed]
    mode = [m.sampling or baseline for m in ms]
    for md in modes:
        cols.append(rows * np.array([1.0 if x == md else 0.0 for x in mode]))
    return _Design(np.stack(cols, axis=1), y, knots, mixed, modes, baseline)


def _weighted_nnls(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    a = x * w[:, None]
    norms = np.linalg.norm(a, axis=0)
    norms[norms == 0] = 1.0
    beta, _ = nnls(a / norms, y * w, maxiter=50 * x.shape[1])
    return np.asarray(beta / norms, dtype=np.float64)


def _coefficients(d: _Design, beta: np.ndarray, floor: float) -> CostCoefficients:
    fixed, ptok, pattn, dctx = (float(v) for v in beta[:4])
    i = 4
    if d.knots:
        vals = tuple(float(v) for v in beta[i:i + len(d.knots)])
        i += len(d.knots)
        dfix = dseq = 0.0
    else:
        vals = ()
        dfix, dseq = float(beta[i]), float(beta[i + 1])
        i += 2
    mfix = mseq = None
    if d.mixed:
        mfix, mseq = float(beta[i]), float(beta[i + 1])
        i += 2
    rows = tuple((md, float(beta[i + k])) for k, md in enumerate(d.modes))
    return CostCoefficients(fixed_ms=fixed, decode_fixed_ms=dfix, prefill_token_ms=ptok,
                            prefill_attn_ms=pattn, decode_seq_ms=dseq, decode_ctx_ms=dctx,
                            floor_ms=floor, decode_knots=d.knots, decode_knot_ms=vals,
                            mixed_fixed_ms=mfix, mixed_seq_ms=mseq, sample_row_ms=rows,
                            sampling_baseline=d.baseline)


def predict(coefficients: CostCoefficients, ms: Sequence[Measurement]) -> np.ndarray:
    """Modelled durations (ms) of the steps, each in its own sampling mode."""
    models: dict[str, CostModel] = {}
    out = np.empty(len(ms), dtype=np.float64)
    for i, m in enumerate(ms):
        mode = m.sampling or coefficients.sampling_baseline
        cm = models.get(mode)
        if cm is None:
            cm = models[mode] = CostModel(coefficients, sampling_mode=mode)
        out[i] = cm.step_ms(m.prefill_tokens, m.prefill_attn, m.decode_seqs, m.decode_ctx,
                            m.rows)
    return out


def fit_structured(ms: Sequence[Measurement], options: FitOptions | None = None
                   ) -> CostCoefficients:
    """Coefficients fitted to the mean durations of the steps (module docstring)."""
    opt = options or FitOptions()
    if len(ms) < 8:
        raise InputError("need at least 8 measured steps to fit", field="measurements",
                         value=len(ms))
    y_all = np.array([m.duration_ms for m in ms], dtype=np.float64)
    if np.any(y_all <= 0) or not np.all(np.isfinite(y_all)):
        raise InputError("step durations must be finite and > 0", field="duration_ms",
                         value=float(y_all.min()))
    n_mixed = sum(1 for m in ms if m.prefill_tokens > 0 and m.decode_seqs > 0)
    mixed = opt.mixed and n_mixed >= MIN_MIXED
    dpart_b = [m.decode_seqs for m in ms
               if m.decode_seqs > 0 and not (mixed and m.prefill_tokens > 0)]
    knots = choose_knots(dpart_b) if opt.knots is None else opt.knots
    baseline = _baseline(ms)
    present = sorted({m.sampling for m in ms if m.sampling and m.sampling != baseline})
    modes = tuple(present) if opt.sampling else ()
    d = _design(ms, knots, mixed, modes, baseline)
    candidates = [0.0]
    if opt.floor:
        lo = np.sort(d.y)[: max(1, len(d.y) // 2)]
        candidates += sorted(set(np.quantile(lo, np.linspace(0.0, 1.0, 9)).tolist()))
    best: tuple[float, CostCoefficients] | None = None
    for floor in candidates:
        above = d.y > floor * 1.02
        if above.sum() < d.x.shape[1]:
            continue
        x, y = d.x[above], d.y[above]
        beta = _weighted_nnls(x, y, 1.0 / y)
        pred = np.maximum(x @ beta, 1e-3 * y)
        beta = _weighted_nnls(x, y, 1.0 / pred)
        coeffs = _coefficients(d, beta, float(floor))
        pred_all = predict(coeffs, ms)
        score = float(np.mean(((pred_all - d.y) / np.maximum(pred_all, 1e-9)) ** 2))
        if best is None or score < best[0] - 1e-12:
            best = (score, coeffs)
    if best is None:
        raise InputError("too few steps above every floor candidate", field="measurements",
                         value=len(ms))
    return best[1]


def _lag1(runs: Sequence[np.ndarray]) -> float:
    num = den = 0.0
    pooled = np.concatenate([r for r in runs if len(r)]) if runs else np.zeros(0)
    if len(pooled) < 3:
        return 0.0
    mu = float(np.mean(pooled))
    for r in runs:
        z = r - mu
        num += float(np.sum(z[1:] * z[:-1]))
        den += float(np.sum(z * z))
    return 0.0 if den == 0 else max(-1.0, min(1.0, num / den))


def residuals_of(coefficients: CostCoefficients, runs: Sequence[Sequence[Measurement]]
                 ) -> Residuals:
    """Measured / predicted ratios of the steps of `runs` (each in step order)."""
    ratios = [np.array([m.duration_ms for m in r], dtype=np.float64)
              / np.maximum(predict(coefficients, r), 1e-9) for r in runs if r]
    pooled = np.concatenate(ratios)
    q = np.quantile(pooled, RESIDUAL_PROBABILITIES)
    q = np.maximum.accumulate(np.maximum(q, 1e-6))
    return Residuals(probabilities=RESIDUAL_PROBABILITIES,
                     ratio_quantiles=tuple(round(float(v), 6) for v in q),
                     mean_ratio=round(float(np.mean(pooled)), 6),
                     lag1_autocorr=round(_lag1(ratios), 6), n_steps=int(pooled.size))


def score(coefficients: CostCoefficients, ms: Sequence[Measurement]) -> tuple[np.ndarray, float]:
    """(absolute % error per step, Σ predicted / Σ measured − 1 in %)."""
    y = np.array([m.duration_ms for m in ms], dtype=np.float64)
    pred = predict(coefficients, ms)
    return np.abs(pred - y) / y * 100.0, float(pred.sum() / y.sum() - 1.0) * 100.0


@dataclass(frozen=True, slots=True)
class RunError:
    """Error of a model fitted without `run` on the steps of `run`."""

    run: str
    n_steps: int
    median_ape: float
    p90_ape: float
    mean_bias_pct: float


def heldout_by_run(runs: Mapping[str, Sequence[Measurement]], options: FitOptions | None = None
                   ) -> tuple[FitError, tuple[RunError, ...]]:
    """Leave-one-run-out error: for each run, fit on the others and score the whole run."""
    names = [k for k, v in runs.items() if v]
    if len(names) < 2:
        raise InputError("held-out error by run needs at least 2 runs", field="runs",
                         value=len(names))
    per: list[RunError] = []
    errs: list[np.ndarray] = []
    pred_sum = meas_sum = 0.0
    for name in names:
        train = [m for k in names if k != name for m in runs[k]]
        coeffs = fit_structured(train, options)
        e, bias = score(coeffs, runs[name])
        errs.append(e)
        y = sum(m.duration_ms for m in runs[name])
        pred_sum += y * (1.0 + bias / 100.0)
        meas_sum += y
        per.append(RunError(name, len(e), round(float(np.median(e)), 3),
                            round(float(np.percentile(e, 90)), 3), round(bias, 3)))
    err = np.concatenate(errs)
    n_all = sum(len(runs[k]) for k in names)
    fe = FitError(median_ape=round(float(np.median(err)), 3),
                  p90_ape=round(float(np.percentile(err, 90)), 3), n_train=n_all,
                  n_test=int(err.size), mean_bias_pct=round((pred_sum / meas_sum - 1) * 100, 3),
                  method=f"leave-one-run-out over {len(names)} runs (whole held-out runs)")
    return fe, tuple(per)
