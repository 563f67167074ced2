"""Metrics (docs/design.md §7): latency, SLO accounting, throughput, QoE and fairness."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from metrics_factory import make_record, make_workload_records

from exfairs.errors import ConfigError, InputError
from exfairs.metrics import (
    QoEParams,
    backlogged_service,
    compute_metrics,
    jain_index,
    jain_over_time,
    max_min_fair_share,
    max_service_gap,
    request_qoe,
    service_timeline,
)
from exfairs.records import SLO, ClientInfo, Outcome, RequestRecord

AB = (ClientInfo("a"), ClientInfo("b"))

# -- Jain's index ---------------------------------------------------------------------------------


def test_jain_known_values() -> None:
    assert jain_index([1, 1]) == pytest.approx(1.0)
    assert jain_index([1, 0]) == pytest.approx(0.5)
    assert jain_index([1, 0, 0, 0]) == pytest.approx(0.25)
    assert jain_index([3, 1]) == pytest.approx(16 / 20)
    assert math.isnan(jain_index([]))
    assert jain_index([0, 0]) == 1.0  # all equal


def test_jain_ignores_nan_and_rejects_negative() -> None:
    assert jain_index([1, math.nan, 0]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        jain_index([1, -1])


@given(st.lists(st.floats(0.01, 1e6), min_size=1, max_size=20), st.floats(1e-3, 1e3))
def test_jain_scale_invariant_and_bounded(xs: list[float], k: float) -> None:
    j = jain_index(xs)
    assert j == pytest.approx(jain_index([k * x for x in xs]), rel=1e-9)
    assert 1 / len(xs) - 1e-12 <= j <= 1 + 1e-12


# -- per-request latency --------------------------------------------------------------------------


def test_tpot_formula_and_itl() -> None:
    # first token at 0.5 s, then gaps 0.1, 0.2, 0.6 -> e2e 1.4, tpot = (1.4 - 0.5) / 3 = 0.3
    r = make_record(0, arrival_s=1.0, ttft_s=0.5, gaps_s=[0.1, 0.2, 0.6], output_tokens=4)
    assert r.tpot_s == pytest.approx(0.3)
    m = compute_metrics([r], AB[:1])
    o = m.overall
    assert o.mean_tpot_ms == pytest.approx(300.0)
    assert o.mean_ttft_ms == pytest.approx(500.0)
    assert o.mean_e2el_ms == pytest.approx(1400.0)
    assert o.mean_itl_ms == pytest.approx(300.0)
    assert o.median_itl_ms == pytest.approx(200.0)
    assert o.std_itl_ms == pytest.approx(float(np.std([100.0, 200.0, 600.0])))
    assert o.p99_itl_ms == pytest.approx(float(np.percentile([100.0, 200.0, 600.0], 99)))


def test_single_token_request_has_no_tpot() -> None:
    r = make_record(0, output_tokens=1)
    m = compute_metrics([r], AB[:1])
    assert math.isnan(m.overall.mean_tpot_ms)
    assert m.overall.mean_ttft_ms == pytest.approx(500.0)


# -- SLO accounting ------------------------------------------------------------------------------


def test_unfinished_failed_and_timed_out_are_violations_in_the_denominator() -> None:
    slo = SLO(e2e_s=10.0)
    recs = [
        make_record(0, "a", slo=slo),  # met
        make_record(1, "a", arrival_s=1.0, slo=slo),  # met
        make_record(2, "a", arrival_s=2.0, slo=slo, generated=2),  # aborted part-way
        make_record(3, "b", arrival_s=3.0, slo=slo, ttft_s=None, outcome=Outcome.TIMED_OUT),
        make_record(4, "b", arrival_s=4.0, slo=slo, ttft_s=None, outcome=Outcome.FAILED),
        make_record(5, "b", arrival_s=5.0, slo=SLO(e2e_s=0.1)),  # finished late
    ]
    m = compute_metrics(recs, AB)
    o = m.overall
    assert o.requests == 6
    assert o.completed == 3
    assert o.slo_met == 2
    assert o.violations == 4
    assert o.violation_rate == pytest.approx(4 / 6)
    assert o.slo_attainment == pytest.approx(2 / 6)
    assert (o.aborted, o.timed_out, o.failed) == (1, 1, 1)
    b = m.client("b").metrics
    assert b.requests == 3 and b.slo_attainment == 0.0
    assert m.fairness.worst_client == "b"
    assert m.fairness.worst_client_attainment == 0.0
    # attainment a = 2/3, b = 0 -> Jain = (2/3)^2 / (2 * (2/3)^2) = 0.5
    assert m.fairness.jain_attainment == pytest.approx(0.5)


def test_finished_outcome_with_missed_times_counts_as_violation() -> None:
    r = make_record(0, slo=SLO(ttft_s=0.1), outcome=Outcome.FINISHED)  # ttft 0.5 > 0.1
    assert compute_metrics([r], AB[:1]).overall.slo_met == 0


def test_window_counts_arrivals_in_half_open_interval() -> None:
    recs = [make_record(i, arrival_s=float(i)) for i in range(10)]
    m = compute_metrics(recs, AB[:1], window=(2.0, 5.0))
    assert m.overall.requests == 3  # arrivals 2, 3, 4
    assert (m.window_start_s, m.window_end_s) == (2.0, 5.0)


def test_throughput_and_goodput_over_span() -> None:
    # Two requests arrive in [0, 10); the later one's last token is at 9 + 0.5 + 0.3 = 9.8; a third
    # one finishes at 15.8 -> span = 15.8 - 0.
    recs = [make_record(0, arrival_s=0.0, slo=SLO(e2e_s=5.0)),
            make_record(1, arrival_s=9.0, prompt_tokens=50, slo=SLO(e2e_s=0.2)),
            make_record(2, "b", arrival_s=5.0, ttft_s=10.5, prompt_tokens=10)]
    m = compute_metrics(recs, AB, window=(0.0, 10.0))
    o = m.overall
    span = 5.0 + 10.5 + 0.3
    assert o.duration_s == pytest.approx(span)
    assert o.request_throughput == pytest.approx(3 / span)
    assert o.request_goodput == pytest.approx(2 / span)  # request 1 missed its SLO
    assert o.output_throughput == pytest.approx(12 / span)
    assert o.total_token_throughput == pytest.approx((100 + 50 + 10 + 12) / span)
    # Per-client throughputs share the span and add up.
    assert sum(c.metrics.request_throughput for c in m.per_client) == pytest.approx(
        o.request_throughput)


def test_unknown_client_is_an_input_error() -> None:
    with pytest.raises(InputError, match="client"):
        compute_metrics([make_record(0, "zz")], AB)


# -- QoE ---------------------------------------------------------------------------------------


def test_qoe_is_one_on_or_ahead_of_expected_timeline() -> None:
    q = QoEParams(expected_ttft_s=1.0, tokens_per_s=5.0)
    on_time = make_record(0, ttft_s=1.0, tpot_s=0.2, output_tokens=20)
    fast = make_record(1, ttft_s=0.3, tpot_s=0.01, output_tokens=20)
    assert request_qoe(on_time, q) == pytest.approx(1.0)
    assert request_qoe(fast, q) == pytest.approx(1.0)


def test_qoe_hand_computed() -> None:
    # Expected at 1.0, 1.2, 1.4 (target 1 s, 5 tokens/s); all three arrive at 2.0. The reader is
    # 1.0 s behind on the first and, reading at 5/s, stays 1.0 s behind: delay area 3 token·s.
    # Horizon = 1.4 + 1.0 + 0.2 = 2.6, expected area = 1.6 + 1.4 + 1.2 = 4.2.
    q = QoEParams(expected_ttft_s=1.0, tokens_per_s=5.0)
    r = make_record(0, ttft_s=2.0, gaps_s=[0.0, 0.0], output_tokens=3)
    assert request_qoe(r, q) == pytest.approx(1 - 3.0 / 4.2)


def test_qoe_drops_with_late_first_token() -> None:
    q = QoEParams(expected_ttft_s=1.0, tokens_per_s=5.0)
    vals = [request_qoe(make_record(0, ttft_s=t, tpot_s=0.2, output_tokens=20), q)
            for t in (1.0, 2.0, 4.0, 16.0)]
    assert vals[0] == pytest.approx(1.0)
    assert all(a > b for a, b in itertools.pairwise(vals))
    assert vals[-1] < 0.3


def test_qoe_drops_with_slow_pacing() -> None:
    q = QoEParams(expected_ttft_s=1.0, tokens_per_s=5.0)
    vals = [request_qoe(make_record(0, ttft_s=0.5, tpot_s=p, output_tokens=20), q)
            for p in (0.2, 0.3, 0.6)]
    assert vals[0] == pytest.approx(1.0)
    assert 1.0 > vals[1] > vals[2] > 0.0


def test_qoe_buffers_early_tokens() -> None:
    # A burst of tokens early, then a stall: the buffered tokens cover the stall exactly.
    q = QoEParams(expected_ttft_s=1.0, tokens_per_s=5.0)
    r = make_record(0, ttft_s=0.2, gaps_s=[0.0] * 9 + [2.0] + [0.2] * 9, output_tokens=20)
    # Token 10 arrives at 0.2 + 2.0 = 2.2 s; the reader reaches it at 1.0 + 10·0.2 = 3.0 s.
    assert request_qoe(r, q) == pytest.approx(1.0)


def test_qoe_uses_ttft_slo_as_target_and_unfinished_rules() -> None:
    q = QoEParams(expected_ttft_s=1.0, tokens_per_s=5.0)
    late_for_slo = make_record(0, ttft_s=1.0, tpot_s=0.2, slo=SLO(ttft_s=0.2))
    assert request_qoe(late_for_slo, q) < 1.0
    none = make_record(1, ttft_s=None, outcome=Outcome.TIMED_OUT)
    assert request_qoe(none, q) == 0.0
    partial = make_record(2, ttft_s=1.0, tpot_s=0.2, output_tokens=20, generated=5)
    assert request_qoe(partial, q) == pytest.approx(1.0)


@given(st.floats(0.0, 30.0), st.lists(st.floats(0.0, 3.0), min_size=0, max_size=30))
def test_qoe_in_unit_interval(ttft: float, gaps: list[float]) -> None:
    r = make_record(0, ttft_s=ttft, gaps_s=gaps, output_tokens=len(gaps) + 1)
    assert 0.0 <= request_qoe(r) <= 1.0


def test_qoe_params_validated() -> None:
    with pytest.raises(ConfigError, match="tokens_per_s"):
        QoEParams(tokens_per_s=0)


# -- service and fair share ---------------------------------------------------------------------


def test_water_filling_hand_cases() -> None:
    assert max_min_fair_share([10, 2, 10], [1, 1, 1], 12) == pytest.approx([5, 2, 5])
    assert max_min_fair_share([10, 10], [1, 3], 8) == pytest.approx([2, 6])
    assert max_min_fair_share([1, 10], [1, 3], 8) == pytest.approx([1, 7])
    assert max_min_fair_share([3, 4], [1, 1], 100) == pytest.approx([3, 4])
    assert max_min_fair_share([4, 4, 4], [1, 1, 1], 6) == pytest.approx([2, 2, 2])
    assert max_min_fair_share([0, 5], [1, 1], 3) == pytest.approx([0, 3])


@given(st.lists(st.tuples(st.floats(0, 1e4), st.floats(0.1, 10)), min_size=1, max_size=12),
       st.floats(0, 2e4))
def test_water_filling_properties(dw: list[tuple[float, float]], cap: float) -> None:
    d = np.asarray([x for x, _ in dw])
    w = np.asarray([y for _, y in dw])
    f = max_min_fair_share(d, w, cap)
    assert f.sum() == pytest.approx(min(cap, d.sum()), rel=1e-9, abs=1e-6)
    assert np.all(f <= d + 1e-9)
    # Max-min: every unsatisfied client sits at the common weighted level, at or above the others.
    unsat = f < d - 1e-6
    if unsat.any():
        level = f[unsat] / w[unsat]
        assert np.allclose(level, level[0], rtol=1e-6)
        assert np.all(f[~unsat] / w[~unsat] <= level[0] * (1 + 1e-6) + 1e-9)


def test_totals_and_fair_share_to_completion() -> None:
    # a asks for and gets 100 + 2·4 = 108 weighted tokens; b asks for the same but gets only the
    # prompt and 1 token (aborted): capacity = 108 + 102 = 210, fair share 105 each.
    recs = [make_record(0, "a"), make_record(1, "b", generated=1)]
    m = compute_metrics(recs, AB)
    a, b = m.client("a"), m.client("b")
    assert (a.weighted_service, b.weighted_service) == (108.0, 102.0)
    assert a.fair_share == pytest.approx(105.0) and b.fair_share == pytest.approx(105.0)
    # Neither was ever queued in a whole 10-s window: nothing to compare.
    assert math.isnan(a.normalized_service) and math.isnan(a.backlogged_service_share)
    assert m.fairness.service_windows == 0 and m.fairness.jain_service == 1.0


def _blocked_pair() -> list[RequestRecord]:
    """a and b each have a request queued until t = 25; a is served 36 weighted tokens in
    [0, 10), b 18 in [10, 20)."""
    return [
        make_record(0, "a", prompt_tokens=10, ttft_s=25.0),
        make_record(1, "b", prompt_tokens=10, ttft_s=25.0),
        make_record(2, "a", prompt_tokens=10, ttft_s=1.0, tpot_s=0.1),  # 10 + 2·4 = 18
        make_record(3, "a", prompt_tokens=10, ttft_s=2.0, tpot_s=0.1),  # 18
        make_record(4, "b", prompt_tokens=10, ttft_s=11.0, tpot_s=0.1),  # 18
    ]


def test_service_while_backlogged_hand_case() -> None:
    m = compute_metrics(_blocked_pair(), AB, window=(0.0, 20.0), service_window_s=10.0)
    # Window 1: a 36, b 0 → Jain 0.5; window 2: a 0, b 18 → 0.5.
    assert m.fairness.service_windows == 2
    assert m.fairness.jain_service == pytest.approx(0.5)
    a, b = m.client("a"), m.client("b")
    assert a.backlogged_service_share == pytest.approx(36 / 54)
    assert b.backlogged_service_share == pytest.approx(18 / 54)
    assert a.normalized_service == pytest.approx(36 / 27)
    assert b.normalized_service == pytest.approx(18 / 27)
    bs = backlogged_service(service_timeline(_blocked_pair(), AB), 0.0, 20.0, 10.0)
    assert bs.service.tolist() == [[36.0, 0.0], [0.0, 18.0]]


def test_service_window_skips_clients_not_queued_throughout() -> None:
    recs = _blocked_pair()
    recs[1] = make_record(1, "b", prompt_tokens=10, ttft_s=15.0)  # b queued only until 15
    bs = backlogged_service(service_timeline(recs, AB), 0.0, 20.0, 10.0)
    assert bs.service[0].tolist() == [36.0, 0.0]
    assert math.isnan(bs.service[1, 1]) and math.isnan(bs.jain[1])  # one client: no index
    assert bs.mean_jain() == pytest.approx(0.5)
    with pytest.raises(InputError):
        backlogged_service(service_timeline(recs, AB), 0.0, 20.0, 0.0)


def test_service_gap_hand_case() -> None:
    # a: arrives 0, first token at 1.0 (prompt 10 + 2 for the token): queued on [0, 1.0].
    # b: arrives 0, first token at 3.0: queued on [0, 3.0], nothing before. Both queued on
    # [0, 1.0]: the gap is a's 12 weighted tokens (its later tokens come while it is not queued).
    ra = make_record(0, "a", prompt_tokens=10, ttft_s=1.0, tpot_s=0.1)
    rb = make_record(1, "b", prompt_tokens=10, ttft_s=3.0, tpot_s=0.1)
    gap, pair = max_service_gap(service_timeline([ra, rb], AB))
    assert gap == pytest.approx(12.0)
    assert pair == ("a", "b")
    assert compute_metrics([ra, rb], AB).fairness.max_service_gap == pytest.approx(12.0)


def test_service_gap_ignores_running_requests() -> None:
    # a's long request runs (first token at 0.5) while b waits: a is not backlogged, no gap.
    # The definition before issue #17 counted it (a's 100 + 2·50 tokens).
    ra = make_record(0, "a", prompt_tokens=100, output_tokens=50, ttft_s=0.5, tpot_s=0.1)
    rb = make_record(1, "b", arrival_s=1.0, prompt_tokens=10, ttft_s=6.0, tpot_s=0.1)
    assert max_service_gap(service_timeline([ra, rb], AB)) == (0.0, ("", ""))


def test_service_gap_only_counts_joint_backlog() -> None:
    # a is served while b is idle, then a again with b waiting: only the second interval counts.
    ra1 = make_record(0, "a", arrival_s=0.0, prompt_tokens=100, ttft_s=1.0, tpot_s=0.1)
    rb = make_record(1, "b", arrival_s=5.0, prompt_tokens=10, ttft_s=2.0, tpot_s=0.1)
    ra2 = make_record(2, "a", arrival_s=5.0, prompt_tokens=3, ttft_s=0.5, tpot_s=0.1)
    gap, _ = max_service_gap(service_timeline([ra1, rb, ra2], AB))
    # On [5, 5.5] both are queued: a gets 3 + 2 at 5.5 (its first token) -> gap 5.
    assert gap == pytest.approx(5.0)


def test_service_gap_splits_at_idle_gaps_between_events() -> None:
    # a is queued on [0, 1.0] and [2.0, 2.5], not in between (no event there); the two periods
    # must not be joined into one interval (that would report 24 instead of 12).
    ra1 = make_record(0, "a", arrival_s=0.0, prompt_tokens=10, ttft_s=1.0, tpot_s=0.1)
    ra2 = make_record(1, "a", arrival_s=2.0, prompt_tokens=10, ttft_s=0.5, tpot_s=0.1)
    rb = make_record(2, "b", arrival_s=0.0, prompt_tokens=10, ttft_s=10.0, tpot_s=0.1)
    gap, _ = max_service_gap(service_timeline([ra1, ra2, rb], AB))
    assert gap == pytest.approx(12.0)


def test_service_gap_weights_divide_service() -> None:
    ra = make_record(0, "a", prompt_tokens=10, ttft_s=1.0, tpot_s=0.1)
    rb = make_record(1, "b", prompt_tokens=10, ttft_s=3.0, tpot_s=0.1)
    clients = (ClientInfo("a", weight=2.0), ClientInfo("b"))
    gap, _ = max_service_gap(service_timeline([ra, rb], clients))
    assert gap == pytest.approx(6.0)


def test_service_gap_zero_without_overlap() -> None:
    ra = make_record(0, "a", arrival_s=0.0)
    rb = make_record(1, "b", arrival_s=10.0)
    assert max_service_gap(service_timeline([ra, rb], AB)) == (0.0, ("", ""))


# -- whole runs -------------------------------------------------------------------------------


def test_compute_metrics_on_a_run_is_consistent() -> None:
    recs = make_workload_records(3)
    m = compute_metrics(recs, AB)
    assert m.overall.requests == sum(c.metrics.requests for c in m.per_client) == len(recs)
    assert m.overall.slo_met == sum(c.metrics.slo_met for c in m.per_client)
    a, b = m.client("a").metrics, m.client("b").metrics
    assert a.slo_attainment > b.slo_attainment  # b is the slow client by construction
    assert m.fairness.jain_attainment == pytest.approx(
        jain_index([a.slo_attainment, b.slo_attainment]))
    assert m.fairness.jain_qoe == pytest.approx(jain_index([a.mean_qoe, b.mean_qoe]))
    assert m.fairness.worst_client == "b"


def test_empty_run_gives_nan_not_zero() -> None:
    m = compute_metrics([], AB)
    assert m.overall.requests == 0
    assert math.isnan(m.overall.slo_attainment)
    assert math.isnan(m.fairness.jain_attainment)
    assert m.fairness.worst_client == ""


def test_jain_over_time_bins_by_arrival() -> None:
    recs = [make_record(0, "a", arrival_s=0.0), make_record(1, "b", arrival_s=0.5,
                                                            slo=SLO(e2e_s=0.01)),
            make_record(2, "a", arrival_s=10.0), make_record(3, "b", arrival_s=10.5)]
    t, v = jain_over_time(recs, AB, 5.0)
    assert t.tolist() == [2.5, 7.5, 12.5]
    assert v[0] == pytest.approx(0.5) and math.isnan(v[1]) and v[2] == pytest.approx(1.0)


def test_qoe_params_are_used_and_recorded() -> None:
    recs = make_workload_records(1)
    default = compute_metrics(recs, AB)
    strict = QoEParams(expected_ttft_s=0.05, tokens_per_s=50.0)
    m = compute_metrics(recs, AB, qoe=strict)
    assert m.qoe_params == strict and default.qoe_params == QoEParams()
    assert m.overall.mean_qoe < default.overall.mean_qoe
