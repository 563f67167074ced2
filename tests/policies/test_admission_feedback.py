"""The feedback in-flight limit (`exfairs.policies.admission_feedback.FeedbackLimit`, issue 15):
multiplicative decrease once per window on a violation the engine caused, additive increase on
good finishes while the limit is in use, the bounds, the late-at-load verdict from the observed
stretch, and — through the live gate's logic — that no request is lost."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_factories import arrive, policy, req

from exfairs.errors import ConfigError
from exfairs.live.gate import LiveGate
from exfairs.policies import PolicyQueue
from exfairs.policies.admission import AdmissionConfig, SloAdmission, make_limiter
from exfairs.policies.admission_feedback import FeedbackLimit
from exfairs.records import SLO

FB = AdmissionConfig(limit="feedback")


def _fb(max_inflight: int = 10, **kw: float) -> FeedbackLimit:
    lim = make_limiter(AdmissionConfig(limit="feedback", **kw), max_inflight)  # type: ignore[arg-type]
    assert isinstance(lim, FeedbackLimit)
    return lim


def test_a_violation_decreases_once_per_window() -> None:
    lim = _fb()
    assert lim.cap == 10
    # Two requests released together, both 1 s late: one decrease (the second was admitted
    # under the old limit).
    for i in (1, 2):
        lim.released(req(i, e2e_s=2.0, unloaded_e2e_s=0.5), 0.0)
    lim.finished(1, 3.0, 10)
    assert lim.limit == pytest.approx(9.0) and lim.decreases == 1
    lim.finished(2, 3.0, 10)
    assert lim.limit == pytest.approx(9.0) and lim.decreases == 1
    # Released after the decrease: its violation decreases again.
    lim.released(req(3, arrival_s=3.0, e2e_s=2.0, unloaded_e2e_s=0.5), 3.0)
    lim.finished(3, 6.0, 10)
    assert lim.limit == pytest.approx(8.1) and lim.cap == 8


def test_the_limit_stays_within_its_bounds() -> None:
    lim = _fb(min_inflight=3)
    for i in range(40):  # every request late: the limit falls to its floor, not below
        lim.released(req(i, arrival_s=float(i), e2e_s=1.0), float(i))
        lim.finished(i, i + 2.0, 10)
    assert lim.limit == 3.0 and lim.decreases > 5
    hi = _fb()
    for i in range(40):  # every finish good and the engine full: the limit stays at its max
        for k in range(10):
            hi.released(req(100 * i + k, arrival_s=float(i), e2e_s=10.0), float(i))
        for k in range(10):
            hi.finished(100 * i + k, i + 0.1, 10)
    assert hi.limit == 10.0 and hi.decreases == 0


def test_good_finishes_increase_while_the_limit_is_in_use() -> None:
    lim = _fb(max_inflight=20)
    lim.limit = 8.0
    for i in range(8):
        lim.released(req(i, e2e_s=10.0, unloaded_e2e_s=0.5), 0.0)
    lim.finished(0, 1.0, 10)  # 1 s of a 10-s budget: good; 7 still in flight ≥ 8 / 2
    assert lim.limit == pytest.approx(8.125)
    for i in range(1, 4):
        lim.finished(i, 1.0, 10)
    # The fourth good finish left 4 in flight, under half the limit (8.37): no increase.
    assert lim.increases == 3 and lim.limit == pytest.approx(8.125 + 1 / 8.125 + 1 / 8.248, 1e-3)
    # Between headroom (0.9) and the budget: neither good nor a violation.
    lim.released(req(9, e2e_s=10.0), 0.0)
    before = lim.limit
    lim.finished(9, 9.5, 10)
    assert lim.limit == before
    assert _fb(max_inflight=20, increase=2.0).config.increase == 2.0


def test_an_in_flight_deadline_that_passed_is_a_violation_before_the_finish() -> None:
    lim = _fb()
    lim.released(req(1, e2e_s=1.0), 0.0)
    lim.released(req(2, e2e_s=1.0), 0.0)
    r3 = req(3, e2e_s=10.0)
    assert lim.decide(r3, 1.0, 2) == "admit" and lim.decreases == 0  # exactly at: not yet late
    lim.decide(r3, 1.5, 2)
    assert lim.decreases == 1 and lim.cap == 9
    lim.finished(1, 2.0, 10)  # already judged: no second verdict
    assert lim.decreases == 1
    # TTFT: a first token later than allowed is a violation too.
    ttft = _fb()
    ttft.released(req(4, ttft_s=0.5), 0.0)
    ttft.first_token(4, 0.7)
    assert ttft.decreases == 1


def test_requests_late_before_release_are_not_judged_and_picks_late_at_load() -> None:
    lim = _fb()
    lim.released(req(1, e2e_s=1.0, unloaded_e2e_s=0.5), 0.8)  # hopeless when released
    lim.released(req(2, e2e_s=1.0), 0.0, binding=False)  # late at load when released
    lim.finished(1, 3.0, 10)
    lim.finished(2, 3.0, 10)
    assert lim.decreases == 0
    # The observed stretch: a request of unloaded latency 1 s took 9 s, σ̂ = 1 + (9 − 1)/8 = 2.
    lim.released(req(3, e2e_s=100.0, unloaded_e2e_s=1.0), 0.0)
    lim.finished(3, 9.0, 10)
    assert lim.stretch == pytest.approx(2.0)
    assert lim.decide(req(4, arrival_s=9.0, e2e_s=1.5, unloaded_e2e_s=1.0), 9.0, 1) == "late"
    assert lim.decide(req(4, arrival_s=9.0, e2e_s=2.0, unloaded_e2e_s=1.0), 9.0, 1) == "late"
    assert lim.decide(req(4, arrival_s=9.0, e2e_s=2.5, unloaded_e2e_s=1.0), 9.0, 1) == "admit"
    assert lim.decide(req(4, arrival_s=9.0, e2e_s=1.5, unloaded_e2e_s=1.0), 9.0, 0) == "admit"


def test_a_failed_request_leaves_without_a_verdict_and_the_cap_holds() -> None:
    lim = _fb(max_inflight=2)
    lim.released(req(1, e2e_s=1.0), 0.0)
    lim.finished(1, None)
    assert lim.decreases == 0
    assert lim.decide(req(2, e2e_s=1.0), 5.0, 2) == "wait"


def test_make_limiter_and_predictive_plus_feedback() -> None:
    assert make_limiter(AdmissionConfig(), 8) is None

    def step(n: int, ctx: int) -> float:
        return 0.01 * n

    assert isinstance(make_limiter(AdmissionConfig(limit="predictive"), 8, step), SloAdmission)
    both = make_limiter(AdmissionConfig(limit="predictive+feedback"), 8, step)
    assert isinstance(both, FeedbackLimit) and isinstance(both.inner, SloAdmission)
    with pytest.raises(ValueError):
        make_limiter(AdmissionConfig(limit="predictive"), 8)
    # The predictive verdict applies under the feedback cap (25-ms budget, 10 ms per sequence).
    r = replace(req(1), slo=SLO(e2e_s=100.0, tpot_s=0.025))
    both.released(r, 0.0)
    both.released(replace(r, request_id=2), 0.0)
    assert both.decide(replace(r, request_id=3), 0.0, 2) == "wait"


def test_feedback_config_fields_are_validated() -> None:
    cfg = AdmissionConfig.parse("hopeless=reject,limit=feedback,backoff=0.5,increase=2,"
                                "min_inflight=4")
    assert (cfg.backoff, cfg.increase, cfg.min_inflight) == (0.5, 2.0, 4)
    assert cfg.label == "hopeless=reject,limit=feedback,backoff=0.5,increase=2,min_inflight=4"
    assert FB.label == "limit=feedback" and FB.feedback and not FB.predictive
    assert AdmissionConfig(limit="predictive+feedback").predictive
    for spec, field in (("limit=feedback,backoff=1", "admission.backoff"),
                        ("limit=feedback,backoff=x", "admission.backoff"),
                        ("limit=feedback,increase=0", "admission.increase"),
                        ("limit=feedback,increase=inf", "admission.increase"),
                        ("limit=feedback,min_inflight=0", "admission.min_inflight"),
                        ("limit=feedback,min_inflight=1.5", "admission.min_inflight"),
                        ("limit=feedbck", "admission.limit"),
                        ("limit=feedback,window=3", "admission")):
        with pytest.raises(ConfigError) as exc:
            AdmissionConfig.parse(spec)
        assert exc.value.field == field, spec


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.floats(0.0, 4.0), st.floats(0.2, 5.0),
                          st.floats(0.05, 3.0), st.booleans()), min_size=1, max_size=40),
       st.sampled_from(["keep", "reject"]), st.integers(1, 6), st.integers(1, 4))
def test_live_gate_with_feedback_loses_no_request_and_keeps_the_limit_in_bounds(
        specs: list[tuple[str, float, float, float, bool]], hopeless: str, max_inflight: int,
        min_inflight: int) -> None:
    """Event-driven model of the live gate: arrivals queue, the gate releases while its limit
    allows, each released request runs for its service time (or fails) and reports its first
    token and finish. Every request is released or refused exactly once; the limit stays in
    [min(min_inflight, max_inflight), max_inflight]; and the same events give the same limit."""

    def simulate() -> tuple[list[float], set[int], set[int]]:
        adm = AdmissionConfig(hopeless=hopeless, limit="feedback", min_inflight=min_inflight)
        q = PolicyQueue(policy("VTC", ("a", "b", "c")), hopeless_last=hopeless != "keep")
        lim = make_limiter(adm, max_inflight)
        assert isinstance(lim, FeedbackLimit)
        gate = LiveGate(q, adm, lim)
        reqs = sorted(((t, i, c, e2e, run, fail) for i, (c, t, e2e, run, fail)
                       in enumerate(specs)))
        events: list[tuple[float, int, int]] = [(t, 0, i) for t, i, *_ in reqs]  # 0 arrival
        by_id = {i: (c, t, e2e, run, fail) for t, i, c, e2e, run, fail in reqs}
        released: set[int] = set()
        refused: set[int] = set()
        inflight: set[int] = set()
        limits = []
        while events:
            events.sort()
            t, kind, i = events.pop(0)
            c, arr, e2e, run, fail = by_id[i]
            if kind == 0:
                arrive(q, req(i, c, arr, e2e_s=e2e, unloaded_e2e_s=0.1), t)
            elif kind == 1:
                gate.first_token(i, t)
                continue
            else:
                inflight.discard(i)
                gate.finished(i, None if fail else t, 10)
            out, ref = gate.release(t, len(inflight), max_inflight)
            for r in out:
                assert r.request_id not in released | refused
                released.add(r.request_id)
                inflight.add(r.request_id)
                events += [(t + run / 2, 1, r.request_id), (t + run, 2, r.request_id)]
            for r in ref:
                assert r.request_id not in released | refused
                refused.add(r.request_id)
            assert len(inflight) <= max_inflight
            limits.append(lim.limit)
            assert min(min_inflight, max_inflight) <= lim.limit <= max_inflight
        return limits, released, refused

    limits, released, refused = simulate()
    assert released | refused == set(range(len(specs))) and not released & refused
    assert simulate() == (limits, released, refused)  # deterministic
