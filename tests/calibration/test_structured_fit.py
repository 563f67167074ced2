"""Structured cost model (schema 2): the fit recovers known terms, profiles round-trip, old
profiles load unchanged, and the simulator's step costs (with noise) keep the fast-path contract."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exfairs.calibration.costmodel import CostCoefficients, CostModel
from exfairs.calibration.fit_structured import fit_structured, heldout_by_run, residuals_of
from exfairs.calibration.measurements import features_of
from exfairs.calibration.profile import (
    Measurement,
    Profile,
    bundled_profile_ids,
    load_profile,
    profile_from_json,
)
from exfairs.sim.costs import NoisyStepCost, step_cost_for


def _coeffs(knots: tuple[float, ...], mixed: float, row: float) -> CostCoefficients:
    return CostCoefficients(fixed_ms=5.0, decode_fixed_ms=0.0, prefill_token_ms=0.06,
                            prefill_attn_ms=6e-6, decode_seq_ms=0.0, decode_ctx_ms=2.5e-4,
                            decode_knots=(1, 2, 4, 8), decode_knot_ms=knots,
                            mixed_fixed_ms=mixed, mixed_seq_ms=0.1,
                            sample_row_ms=(("top-p", row),))


def _steps(true: CostCoefficients, seed: int, noise: float) -> list[Measurement]:
    rng = np.random.default_rng(seed)
    out = []
    for mode in ("greedy", "top-p"):
        cm = CostModel(true, sampling_mode=mode)
        shapes = [([(n, 0)], []) for n in (16, 64, 256, 1024)]
        shapes += [([], [ctx] * b) for b in range(1, 9) for ctx in (100, 700)]
        shapes += [([(n, 0)], [300] * b) for b in (2, 6) for n in (64, 512)]
        for chunks, ctxs in shapes:
            p, a, b, c = features_of(chunks, ctxs)
            rows = b + len(chunks)
            t = cm.step_ms(p, a, b, c, rows) * float(rng.lognormal(0.0, noise))
            out.append(Measurement(p, a, b, c, t, rows, mode))
    return out


@settings(max_examples=15, deadline=None)
@given(st.tuples(st.floats(1, 5), st.floats(5, 8), st.floats(8, 12), st.floats(12, 30)),
       st.floats(0.0, 3.0), st.floats(0.05, 1.0))
def test_fit_recovers_known_structured_coefficients(knots: tuple[float, ...], mixed: float,
                                                    row: float) -> None:
    true = _coeffs(knots, mixed, row)
    got = fit_structured(_steps(true, 0, 0.0))
    assert got.decode_knots == (1, 2, 3, 4, 5, 6, 7, 8)
    table = dict(zip(got.decode_knots, got.decode_knot_ms, strict=True))
    for k, v in zip(true.decode_knots, true.decode_knot_ms, strict=True):
        assert table[k] == pytest.approx(v, rel=0.02, abs=0.05)
    assert got.row_ms("top-p") == pytest.approx(row, rel=0.05, abs=0.01)
    assert got.mixed_fixed_ms == pytest.approx(mixed, abs=0.1)


def test_fit_targets_means_and_keeps_residuals() -> None:
    true = _coeffs((3.0, 4.5, 5.0, 8.0), 1.0, 0.27)
    runs = {f"r{i}": _steps(true, i, 0.3) for i in range(3)}
    got = fit_structured([m for v in runs.values() for m in v])
    res = residuals_of(got, list(runs.values()))
    # Fitted to means: the mean ratio measured / predicted is ~1 (a median fit would be > 1
    # for lognormal noise: mean/median = exp(σ²/2) ≈ 1.046 at σ = 0.3).
    assert res.mean_ratio == pytest.approx(1.0, abs=0.03)
    assert res.ratio_quantiles[0] < 1.0 < res.ratio_quantiles[-1]
    err, per = heldout_by_run(runs)
    assert len(per) == 3 and err.n_test == sum(len(v) for v in runs.values())
    assert "leave-one-run-out" in err.method


#: Bundled profiles fitted by schema 1's linear model (newer bundled ones are structured).
LINEAR_PROFILES = {"a100-llama2-7b", "a100-llama2-70b-tp4", "h100-llama2-70b-tp4",
                   "cpu-llama-60m", "cpu-tiny-llama"}


def test_old_profiles_load_and_predict_as_before() -> None:
    assert set(bundled_profile_ids()) >= LINEAR_PROFILES
    for pid in bundled_profile_ids():
        p = load_profile(pid)
        assert profile_from_json(json.loads(json.dumps(p.to_json()))) == p
        if pid not in LINEAR_PROFILES:
            continue
        assert not p.coefficients.structured
        c = p.coefficients
        cm = p.cost_model()
        # Schema 1's arithmetic, in its order: the same float, bit for bit.
        t = c.fixed_ms + c.prefill_token_ms * 100 + c.prefill_attn_ms * 1e4
        t += c.decode_fixed_ms + c.decode_seq_ms * 4 + c.decode_ctx_ms * 400
        want = max(c.floor_ms, t)
        assert cm.step_ms(100, 1e4, 4, 400) == want


def test_structured_profile_round_trips() -> None:
    base = load_profile("cpu-llama-60m")
    true = _coeffs((3.0, 4.5, 5.0, 8.0), 1.0, 0.27)
    steps = _steps(true, 1, 0.1)
    coeffs = fit_structured(steps)
    prof = Profile(base.metadata, base.engine, coeffs, None, tuple(steps[:5]),
                   residuals_of(coeffs, [steps]))
    doc = json.loads(json.dumps(prof.to_json()))
    assert doc["schema_version"] == 2
    back = profile_from_json(doc)
    assert back == prof
    assert back.cost_model().step_ms(0, 0, 3, 300) == prof.cost_model().step_ms(0, 0, 3, 300)


def test_noise_is_seeded_mean_one_and_fast_path_consistent() -> None:
    base = load_profile("cpu-llama-60m")
    true = _coeffs((3.0, 4.5, 5.0, 8.0), 1.0, 0.27)
    steps = _steps(true, 2, 0.2)
    coeffs = fit_structured(steps)
    prof = Profile(base.metadata, base.engine, coeffs, None, (), residuals_of(coeffs, [steps]))
    plain = step_cost_for(prof)
    a = step_cost_for(prof, noise_seed=3, block_steps=4)
    b = step_cost_for(prof, noise_seed=3, block_steps=4)
    assert isinstance(a, NoisyStepCost)
    run = a.decode_run_ms(200, 4, 400, first_step=10)
    # Same seed, same factors whatever the call pattern (two halves == one run).
    halves = np.concatenate([b.decode_run_ms(100, 4, 400, first_step=10),
                             b.decode_run_ms(100, 4, 800, first_step=110)])
    assert np.array_equal(run, halves)
    ratio = run / plain.decode_run_ms(200, 4, 400)
    assert ratio.std() > 0.01 and abs(ratio.mean() - 1.0) < 0.1
    # Blocks of 4 steps share one factor.
    blocks = {round(float(x), 9) for x in ratio[:8]}
    assert len(blocks) <= 3
    with pytest.raises(Exception, match="residuals"):
        step_cost_for(base, noise_seed=1)
