"""The fitter: recovers known coefficients from noisy synthetic steps; held-out folds."""

from __future__ import annotations

import numpy as np
import pytest
from calib_synthetic import TRUE, synthetic_steps
from hypothesis import given
from hypothesis import strategies as st

from exfairs.calibration.costmodel import COEFFICIENT_NAMES, CostCoefficients
from exfairs.calibration.fit import (
    ape,
    fit_coefficients,
    fit_cost_model,
    holdout_folds,
    median_by_composition,
)
from exfairs.errors import InputError
from exfairs.rng import stream  # noqa: F401


def test_recovers_known_coefficients_from_noisy_steps() -> None:
    meas = synthetic_steps(TRUE, noise=0.03, seed=1, repeats=5)
    res = fit_cost_model(meas, seed=0)
    got, want = res.coefficients.as_vector(), TRUE.as_vector()
    for name, g, w in zip(COEFFICIENT_NAMES, got, want, strict=True):
        assert g == pytest.approx(w, rel=0.15), name
    assert res.error.median_ape < 3.0
    assert res.error.p90_ape < 8.0
    assert res.error.n_test == res.error.n_train == len(median_by_composition(meas))


def test_recovers_a_floor() -> None:
    true = CostCoefficients(fixed_ms=1.0, decode_fixed_ms=0.5, prefill_token_ms=0.06,
                            prefill_attn_ms=6e-6, decode_seq_ms=0.05, decode_ctx_ms=2.5e-4,
                            floor_ms=12.0)
    meas = synthetic_steps(true, noise=0.01, seed=2)
    c = fit_coefficients(meas)
    assert c.floor_ms == pytest.approx(12.0, rel=0.05)
    assert np.median(ape(c, meas)) < 1.5


def test_the_fit_is_not_a_constant() -> None:
    # A model that ignored the features could not get within 3% on steps spanning 10 → 1000 ms.
    meas = synthetic_steps(TRUE, noise=0.0, seed=3)
    flat = CostCoefficients(float(np.median([m.duration_ms for m in meas])), 0, 0, 0, 0, 0)
    assert np.median(ape(flat, meas)) > 30
    assert np.median(ape(fit_coefficients(meas), meas)) < 0.5


@given(st.floats(0.5, 20), st.floats(0.0, 10), st.floats(0.001, 0.2), st.floats(0, 1e-5),
       st.floats(0.0, 0.2), st.floats(0, 1e-3))
def test_exact_data_is_fitted_exactly(f: float, d: float, p: float, a: float, s: float,
                                      c: float) -> None:
    true = CostCoefficients(f, d, p, a, s, c)
    meas = synthetic_steps(true, noise=0.0, seed=0)
    assert float(np.max(ape(fit_coefficients(meas, fit_floor=False), meas))) < 0.5


def test_folds_are_seeded_disjoint_and_keep_repeats_together() -> None:
    meas = synthetic_steps(TRUE, noise=0.05, seed=4, repeats=3)
    a = holdout_folds(meas, seed=7, test_share=0.25)
    b = holdout_folds(meas, seed=7, test_share=0.25)
    c = holdout_folds(meas, seed=8, test_share=0.25)
    assert a == b and a != c and len(a) == 4
    key = lambda m: (m.prefill_tokens, m.prefill_attn, m.decode_seqs, m.decode_ctx)  # noqa: E731
    seen: dict[tuple[int, float, int, int], int] = {}
    for i, fold in enumerate(a):
        for m in fold:
            assert seen.setdefault(key(m), i) == i
    assert sum(len(f) for f in a) == len(meas)


def test_too_few_steps_is_an_input_error() -> None:
    meas = synthetic_steps(TRUE, noise=0.0, seed=0)[:5]
    with pytest.raises(InputError, match="distinct step compositions"):
        fit_cost_model(meas)
    with pytest.raises(InputError):
        fit_cost_model(synthetic_steps(TRUE, noise=0.0, seed=0), test_share=0.9)
