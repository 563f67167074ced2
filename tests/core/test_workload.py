"""Workload drawing: arrival statistics, determinism, stream independence, SLOs, capacity."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
from _workload_factories import LinearLatency, make_client, make_scenario
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from exfairs.calibration.capacity import capacity_estimate, estimate_capacity_rps
from exfairs.calibration.costmodel import CostCoefficients, CostModel
from exfairs.calibration.profile import EngineDefaults, load_profile
from exfairs.errors import InputError
from exfairs.rng import stream
from exfairs.scenario import (
    DeterministicArrivals,
    FixedLength,
    GammaArrivals,
    LognormalLength,
    MixtureLength,
    PoissonArrivals,
    SloSpec,
    SloTarget,
    UniformLength,
)
from exfairs.workload import (
    MAX_REQUESTS,
    clamp_lengths,
    client_rates_rps,
    draw_workload,
    measure_window,
)

LAT = LinearLatency()


def _gaps(process: object, rate_rps: float, duration_s: float, seed: int = 7) -> np.ndarray:
    times = process.times(stream(seed, "test", "arrivals"), rate_rps, duration_s)  # type: ignore[attr-defined]
    return np.diff(times)


# -- arrival processes ------------------------------------------------------------------------


def test_poisson_gaps_are_exponential_with_the_rate() -> None:
    rate = 5.0
    gaps = _gaps(PoissonArrivals(), rate, 2000.0)
    assert gaps.size == pytest.approx(rate * 2000, rel=0.05)
    assert stats.kstest(gaps, "expon", args=(0, 1 / rate)).pvalue > 0.01
    # Counts in disjoint 1 s windows are Poisson: index of dispersion ≈ 1 (chi-square test).
    times = PoissonArrivals().times(stream(3, "p"), rate, 2000.0)
    counts = np.bincount(times.astype(int), minlength=2000)
    dispersion = counts.var(ddof=1) * (counts.size - 1) / counts.mean()
    p = stats.chi2.sf(dispersion, counts.size - 1)
    assert 0.005 < p < 0.995


def test_poisson_test_rejects_the_wrong_rate() -> None:
    # The statistical test above can fail: gaps at rate 5 are not exponential at rate 4.
    gaps = _gaps(PoissonArrivals(), 5.0, 2000.0)
    assert stats.kstest(gaps, "expon", args=(0, 1 / 4.0)).pvalue < 1e-6


@pytest.mark.parametrize("burstiness", [0.25, 1.0, 4.0])
def test_gamma_gaps_have_the_rate_and_squared_cv(burstiness: float) -> None:
    rate = 4.0
    gaps = _gaps(GammaArrivals(burstiness), rate, 3000.0)
    shape, scale = 1 / burstiness, burstiness / rate
    assert stats.kstest(gaps, "gamma", args=(shape, 0, scale)).pvalue > 0.01
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.05)
    cv2 = gaps.var() / gaps.mean() ** 2
    assert cv2 == pytest.approx(burstiness, rel=0.15)


def test_bursty_gamma_is_not_poisson() -> None:
    gaps = _gaps(GammaArrivals(4.0), 4.0, 3000.0)
    assert stats.kstest(gaps, "expon", args=(0, 1 / 4.0)).pvalue < 1e-6


def test_deterministic_arrivals_are_evenly_spaced_with_a_random_phase() -> None:
    a = DeterministicArrivals().times(stream(1, "d"), 2.0, 10.0)
    b = DeterministicArrivals().times(stream(2, "d"), 2.0, 10.0)
    assert np.allclose(np.diff(a), 0.5)
    assert 0 <= a[0] < 0.5 and a[-1] < 10.0
    assert a.size in (19, 20)
    assert a[0] != b[0]


@given(rate=st.floats(0.01, 50.0), duration=st.floats(0.5, 200.0), seed=st.integers(0, 2**31))
def test_arrivals_lie_in_the_horizon_and_increase(rate: float, duration: float, seed: int) -> None:
    for proc in (PoissonArrivals(), GammaArrivals(2.5), DeterministicArrivals()):
        t = proc.times(stream(seed, "h"), rate, duration)
        assert np.all(t >= 0) and np.all(t < duration)
        assert np.all(np.diff(t) >= 0)


# -- length distributions ---------------------------------------------------------------------


@pytest.mark.parametrize("dist", [
    FixedLength(100),
    UniformLength(10, 30),
    LognormalLength(mean=300.0, sigma=1.1, cap=1792, min_tokens=4),
    LognormalLength(mean=2800.0, sigma=0.45, cap=3840, min_tokens=1024),
    MixtureLength(((1.0, FixedLength(10)), (3.0, UniformLength(100, 200)))),
])
def test_length_means_match_samples(dist: object) -> None:
    x = dist.sample(stream(0, "len"), 200_000)  # type: ignore[attr-defined]
    assert x.dtype == np.int64
    assert x.mean() == pytest.approx(dist.mean_tokens(), rel=0.01)  # type: ignore[attr-defined]
    vals, w = dist.support(200)  # type: ignore[attr-defined]
    assert w.sum() == pytest.approx(1.0)
    assert float((vals * w).sum()) == pytest.approx(dist.mean_tokens(), rel=0.02)  # type: ignore[attr-defined]


@given(mean=st.floats(1.0, 1e5), sigma=st.floats(0.0, 3.0), cap=st.integers(1, 10**6),
       lo=st.integers(1, 100), seed=st.integers(0, 2**31))
def test_lognormal_draws_respect_min_and_cap(mean: float, sigma: float, cap: int, lo: int,
                                             seed: int) -> None:
    cap = max(cap, lo)
    d = LognormalLength(mean=mean, sigma=sigma, cap=cap, min_tokens=lo)
    x = d.sample(stream(seed, "l"), 500)
    assert x.min() >= lo and x.max() <= cap
    assert lo - 1e-9 <= d.mean_tokens() <= cap + 1e-9


# -- drawing ----------------------------------------------------------------------------------


def _two_clients() -> tuple:
    return (make_client("alice", rate_per_min=120, slo=SloSpec(e2e=SloTarget(scale=5.0))),
            make_client("bob", rate_per_min=60, arrival=GammaArrivals(3.0),
                        prompt=UniformLength(50, 500)))


def test_same_seed_gives_an_identical_workload() -> None:
    sc = make_scenario(_two_clients())
    assert draw_workload(sc, 11, LAT) == draw_workload(sc, 11, LAT)
    assert draw_workload(sc, 11, LAT).requests != draw_workload(sc, 12, LAT).requests


def test_request_ids_follow_arrival_then_client_order() -> None:
    sc = make_scenario((make_client("a", arrival=DeterministicArrivals(), rate_per_min=60),
                        make_client("b", arrival=DeterministicArrivals(), rate_per_min=60)))
    w = draw_workload(sc, 0, LAT)
    assert [r.request_id for r in w.requests] == list(range(len(w.requests)))
    keys = [(r.arrival_s, r.client) for r in w.requests]
    assert keys == sorted(keys)
    assert all(0 <= r.arrival_s < sc.duration_s for r in w.requests)
    assert w.clients == sc.client_infos()
    assert w.seed == 0 and w.duration_s == sc.duration_s


def _by_client(workload: object, name: str) -> list[tuple[float, int, int, object]]:
    return [(r.arrival_s, r.prompt_tokens, r.output_tokens, r.slo)
            for r in workload.requests if r.client == name]  # type: ignore[attr-defined]


@given(extra=st.lists(st.sampled_from(["carol", "dave", "erin", "0x", "z.z"]), min_size=1,
                      max_size=3, unique=True),
       front=st.booleans(), seed=st.integers(0, 1000))
def test_adding_clients_leaves_the_others_unchanged(extra: list[str], front: bool,
                                                    seed: int) -> None:
    base = _two_clients()
    added = tuple(make_client(n, rate_per_min=90, arrival=GammaArrivals(2.0)) for n in extra)
    bigger = added + base if front else base + added
    w0 = draw_workload(make_scenario(base, duration_s=30), seed, LAT)
    w1 = draw_workload(make_scenario(bigger, duration_s=30), seed, LAT)
    for name in ("alice", "bob"):
        assert _by_client(w0, name) == _by_client(w1, name)
        assert _by_client(w0, name)


def test_slo_targets_resolve_against_each_requests_unloaded_latency() -> None:
    slo = SloSpec(e2e=SloTarget(scale=4.0), ttft=SloTarget(seconds=1.5),
                  tpot=SloTarget(scale=2.0))
    sc = make_scenario((make_client("a", slo=slo),))
    w = draw_workload(sc, 3, LAT)
    assert w.requests
    for r in w.requests:
        assert r.slo.e2e_s == pytest.approx(4.0 * LAT.unloaded_e2e_s(r.prompt_tokens,
                                                                     r.output_tokens))
        assert r.slo.ttft_s == 1.5
        assert r.slo.tpot_s == pytest.approx(
            2.0 * LAT.unloaded_tpot_s(r.prompt_tokens, r.output_tokens))
        assert r.unloaded_e2e_s == pytest.approx(LAT.unloaded_e2e_s(r.prompt_tokens,
                                                                    r.output_tokens))


def test_client_without_slo_gets_none() -> None:
    w = draw_workload(make_scenario(), 0, LAT)
    assert all(r.slo.e2e_s is None and r.slo.ttft_s is None and r.slo.tpot_s is None
               for r in w.requests)


def test_scale_slo_needs_a_latency_model() -> None:
    with pytest.raises(InputError, match="latency"):
        SloSpec(e2e=SloTarget(scale=2.0)).resolve(10, 10, None)


def test_absolute_rates_scale_with_load_factor() -> None:
    sc = make_scenario(_two_clients())
    assert client_rates_rps(sc) == pytest.approx((2.0, 1.0))
    assert client_rates_rps(sc, load_factor=1.5) == pytest.approx((3.0, 1.5))
    n1 = len(draw_workload(make_scenario(_two_clients(), duration_s=400), 0, LAT).requests)
    n2 = len(draw_workload(make_scenario(_two_clients(), duration_s=400), 0, LAT,
                           load_factor=0.5).requests)
    assert n1 == pytest.approx(1200, rel=0.1) and n2 == pytest.approx(600, rel=0.1)


def test_capacity_basis_splits_load_times_capacity_by_rate_share() -> None:
    sc = make_scenario(_two_clients(), rate_basis="capacity", duration_s=500)
    rates = client_rates_rps(sc, load_factor=1.2, capacity_rps=10.0)
    assert sum(rates) == pytest.approx(12.0)
    assert rates[0] / rates[1] == pytest.approx(2.0)
    n = len(draw_workload(sc, 0, LAT, load_factor=1.2, capacity_rps=10.0).requests)
    assert n == pytest.approx(6000, rel=0.06)
    with pytest.raises(InputError) as err:
        draw_workload(sc, 0, LAT)
    assert err.value.field == "capacity_rps"
    with pytest.raises(InputError):
        client_rates_rps(sc, capacity_rps=float("nan"))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), 1e9, True])
def test_bad_load_factor_is_rejected(bad: float) -> None:
    with pytest.raises(InputError) as err:
        draw_workload(make_scenario(), 0, LAT, load_factor=bad)
    assert err.value.field == "load_factor"


def test_bad_seed_is_rejected() -> None:
    with pytest.raises(InputError):
        draw_workload(make_scenario(), -1, LAT)


def test_absurd_workload_size_is_refused() -> None:
    sc = make_scenario((make_client(rate_per_min=1e6),), duration_s=1e6)
    with pytest.raises(InputError, match=f"{MAX_REQUESTS:,}"):
        draw_workload(sc, 0, LAT)


def test_measure_window() -> None:
    sc = make_scenario(duration_s=100, warmup_s=10, cooldown_s=5)
    assert measure_window(sc, draw_workload(sc, 0, LAT)) == (10.0, 95.0)


def test_max_model_len_clamps_prompts() -> None:
    sc = make_scenario((make_client(prompt=FixedLength(5000), output=FixedLength(200)),))
    w = draw_workload(sc, 0, LAT, max_model_len=4096)
    assert all(r.prompt_tokens == 3896 and r.output_tokens == 200 for r in w.requests)
    p, o = clamp_lengths(np.array([10, 9000]), np.array([5000, 10]), 4096)
    assert list(o) == [4095, 10] and list(p) == [1, 4086]


# -- capacity ---------------------------------------------------------------------------------


def _engine(**kw: int) -> EngineDefaults:
    base = {"num_gpu_blocks": 7168, "block_size": 16, "max_num_seqs": 256,
            "max_num_batched_tokens": 8192, "max_model_len": 4096}
    base.update(kw)
    return EngineDefaults(**base)


def test_capacity_matches_a_hand_computation() -> None:
    # Fixed lengths and a cost model with only a decode term: the batch is max_num_seqs and each
    # request costs (o − 1) steps / B plus prefill tokens.
    coeffs = CostCoefficients(fixed_ms=10.0, decode_fixed_ms=0.0, prefill_token_ms=0.01,
                              prefill_attn_ms=0.0, decode_seq_ms=0.0, decode_ctx_ms=0.0)
    cost = CostModel(coeffs, 8192)
    sc = make_scenario((make_client(prompt=FixedLength(100), output=FixedLength(11)),))
    est = capacity_estimate(sc, cost, _engine(max_num_seqs=20))
    assert est.batch == 20 and not est.kv_limited
    assert est.mean_context_tokens == pytest.approx(100 + 11 / 2)
    per_request_ms = 100 * 0.01 + 10 * 10.0 / 20
    assert est.rps == pytest.approx(1000 / per_request_ms)
    # KV-bound: 64 blocks of 16 = 1024 tokens hold floor(1024 / (105.5 + 8)) = 9 sequences.
    est_kv = capacity_estimate(sc, cost, _engine(max_num_seqs=20, num_gpu_blocks=64))
    assert est_kv.kv_limited and est_kv.batch == 9
    assert est_kv.rps == pytest.approx(1000 / (1.0 + 10 * 10.0 / 9))


def test_capacity_grows_with_kv_capacity_and_seqs_and_falls_with_length() -> None:
    prof = load_profile("a100-llama2-7b")
    cost = prof.cost_model()
    sc = make_scenario()
    caps = [estimate_capacity_rps(sc, cost, _engine(num_gpu_blocks=b))
            for b in (16, 64, 256, 1024, 4096, 16384, 65536)]
    assert all(b >= a for a, b in itertools.pairwise(caps))
    assert caps[-1] > 5 * caps[0]
    assert caps[-1] == caps[-2]  # max_num_seqs binds once KV is ample
    seqs = [estimate_capacity_rps(sc, cost, _engine(max_num_seqs=s, num_gpu_blocks=10**6))
            for s in (1, 8, 64, 256)]
    assert all(b > a for a, b in itertools.pairwise(seqs))
    longer = make_scenario((make_client(output=FixedLength(256)),))
    shorter = make_scenario((make_client(output=FixedLength(64)),))
    assert estimate_capacity_rps(longer, cost, prof.engine) < estimate_capacity_rps(
        shorter, cost, prof.engine)


def test_capacity_depends_on_rate_shares_not_totals() -> None:
    prof = load_profile("a100-llama2-7b")
    cost = prof.cost_model()
    a = make_scenario((make_client("s", rate_per_min=1), make_client(
        "l", rate_per_min=1, prompt=FixedLength(3000))))
    b = make_scenario((make_client("s", rate_per_min=50), make_client(
        "l", rate_per_min=50, prompt=FixedLength(3000))))
    c = make_scenario((make_client("s", rate_per_min=90), make_client(
        "l", rate_per_min=10, prompt=FixedLength(3000))))
    ca, cb, cc = (estimate_capacity_rps(s, cost, prof.engine) for s in (a, b, c))
    assert ca == pytest.approx(cb)
    assert cc > ca  # more short requests, more requests per second


def test_capacity_on_the_default_profile_is_plausible() -> None:
    # A100 + Llama-2-7B serves a few to tens of ShareGPT-like requests per second (vLLM papers
    # report ~2-20 req/s depending on lengths); the estimate must land in that range.
    prof = load_profile("a100-llama2-7b")
    rps = estimate_capacity_rps(make_scenario(), prof.cost_model(), prof.engine)
    assert 2.0 < rps < 40.0


def test_capacity_basis_draw_uses_the_estimate() -> None:
    prof = load_profile("a100-llama2-7b")
    cost = prof.cost_model()
    sc = dataclasses.replace(make_scenario(_two_clients(), duration_s=200),
                             rate_basis="capacity")
    cap = estimate_capacity_rps(sc, cost, prof.engine)
    w = draw_workload(sc, 0, cost, load_factor=0.8, capacity_rps=cap)
    assert len(w.requests) == pytest.approx(0.8 * cap * 200, rel=0.1)
    assert math.isfinite(cap)
