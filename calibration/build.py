"""Profiles from measured steps: a structured profile (schema 2; fit to means, held-out error on
whole runs when there are several, else on held-out step compositions, residuals kept), or the
linear least-squares fit (`build_profile`).

Used by `exfairs-calibrate fit` (a measurements file, or ``--from-runs`` step logs) and by
`exfairs-calibrate profile --backend vllm` (the live-path profiler, one run per repeat).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from exfairs.calibration.fit import fit_cost_model, holdout_folds
from exfairs.calibration.fit_structured import (
    FitOptions,
    RunError,
    fit_structured,
    residuals_of,
    score,
)
from exfairs.calibration.fit_structured import heldout_by_run as _heldout_by_run
from exfairs.calibration.measurements import MeasurementSet
from exfairs.calibration.profile import FitError, Measurement, Profile, ProfileMetadata
from exfairs.rng import stream


def _kfold(ms: Sequence[Measurement], options: FitOptions, seed: int,
           test_share: float) -> FitError:
    folds = holdout_folds(ms, seed=seed, test_share=test_share)
    errs: list[np.ndarray] = []
    pred = meas = 0.0
    for i, test in enumerate(folds):
        train = [m for j, f in enumerate(folds) if j != i for m in f]
        e, bias = score(fit_structured(train, options), test)
        errs.append(e)
        y = sum(m.duration_ms for m in test)
        pred += y * (1 + bias / 100)
        meas += y
    err = np.concatenate(errs)
    return FitError(median_ape=round(float(np.median(err)), 3),
                    p90_ape=round(float(np.percentile(err, 90)), 3), n_train=len(ms),
                    n_test=int(err.size), mean_bias_pct=round((pred / meas - 1) * 100, 3),
                    method=f"{len(folds)}-fold by step composition (one run)")


def build_structured_profile(ms: MeasurementSet, *, profile_id: str = "", hardware: str = "",
                             model: str = "", seed: int = 0, test_share: float = 0.25,
                             options: FitOptions | None = None,
                             keep_measurements: int = 400,
                             holdout_runs: Sequence[str] = ()
                             ) -> tuple[Profile, tuple[RunError, ...]]:
    """Fit `ms` (structured, to means) and wrap it as a schema-2 profile.

    Held-out error: with `holdout_runs` named, the model is fitted on the other runs and scored
    on those (and the profile keeps that fit — a clean train / test split); otherwise with ≥ 2
    runs, leave-one-run-out, and the profile is fitted on all runs; with one run, K-fold by
    composition. Residuals are those of the returned coefficients on their training steps."""
    opt = options or FitOptions()
    runs = {k: [s.measurement() for s in v] for k, v in ms.runs().items()}
    per: tuple[RunError, ...] = ()
    if holdout_runs:
        unknown = sorted(set(holdout_runs) - set(runs))
        if unknown:
            from exfairs.errors import InputError

            raise InputError(f"no such run; runs: {', '.join(sorted(runs))}",
                             field="--holdout-run", value=unknown[0])
        train_runs = {k: v for k, v in runs.items() if k not in holdout_runs}
        if not train_runs:
            from exfairs.errors import InputError

            raise InputError("every run is held out; nothing left to fit", field="--holdout-run",
                             value=list(holdout_runs))
        coeffs = fit_structured([m for v in train_runs.values() for m in v], opt)
        test = [m for k in holdout_runs for m in runs[k]]
        e, bias = score(coeffs, test)
        err = FitError(median_ape=round(float(np.median(e)), 3),
                       p90_ape=round(float(np.percentile(e, 90)), 3),
                       n_train=sum(len(v) for v in train_runs.values()), n_test=len(test),
                       mean_bias_pct=round(bias, 3),
                       method=f"fitted on runs {', '.join(train_runs)}; scored on whole held-out "
                              f"runs {', '.join(holdout_runs)}")
        fitted_on = list(train_runs.values())
    else:
        all_steps = [m for v in runs.values() for m in v]
        if len(runs) >= 2:
            err, per = _heldout_by_run(runs, opt)
        else:
            err = _kfold(all_steps, opt, seed, test_share)
        coeffs = fit_structured(all_steps, opt)
        fitted_on = list(runs.values())
    resid = residuals_of(coeffs, fitted_on)
    meta, meas = provenance(ms, profile_id=profile_id, hardware=hardware, model=model, seed=seed,
                            keep_measurements=keep_measurements)
    return Profile(meta, ms.engine, coeffs, err, meas, resid), per


def provenance(ms: MeasurementSet, *, profile_id: str, hardware: str, model: str, seed: int,
               keep_measurements: int) -> tuple[ProfileMetadata, tuple[Measurement, ...]]:
    """A profile's metadata (the run's, with any given id/hardware/model) and the measurements
    it keeps: all of them, or `keep_measurements` drawn without replacement (seeded stream
    "calibration"/"keep"), in their original order."""
    meta = replace(ms.metadata, id=profile_id or ms.metadata.id,
                   hardware=hardware or ms.metadata.hardware, model=model or ms.metadata.model)
    meas = ms.measurements()
    if keep_measurements < len(meas):
        idx = sorted(stream(seed, "calibration", "keep").choice(
            len(meas), size=keep_measurements, replace=False).tolist())
        meas = [meas[i] for i in idx]
    return meta, tuple(meas)


def build_profile(ms: MeasurementSet, *, profile_id: str = "", hardware: str = "",
                  model: str = "", seed: int = 0, test_share: float = 0.25,
                  fit_floor: bool = True, keep_measurements: int = 400) -> Profile:
    """Fit `ms` and wrap the result as a profile with the run's provenance."""
    res = fit_cost_model(ms.measurements(), seed=seed, test_share=test_share,
                         fit_floor=fit_floor)
    meta, meas = provenance(ms, profile_id=profile_id, hardware=hardware, model=model, seed=seed,
                            keep_measurements=keep_measurements)
    return Profile(meta, ms.engine, res.coefficients, res.error, meas)
