"""Hopeless-request handling at the queue (`PolicyQueue(hopeless_last=True)`, `pop_hopeless`) and
the predictive in-flight limit (`SloAdmission`) of issue 15."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_factories import arrive, policy, pop_clients, req

from exfairs.errors import ConfigError
from exfairs.policies import PolicyQueue
from exfairs.policies.admission import AdmissionConfig, SloAdmission
from exfairs.records import Request


def test_hopeless_requests_go_behind_savable_ones_of_every_client() -> None:
    # FCFS would serve a's hopeless request first (earliest arrival); demoted, b goes first.
    for hopeless_last, expected in ((False, ["a", "b"]), (True, ["b", "a"])):
        q = PolicyQueue(policy("FCFS"), hopeless_last=hopeless_last)
        arrive(q, req(1, "a", 0.0, e2e_s=1.0, unloaded_e2e_s=0.5))  # hopeless from t = 0.5
        arrive(q, req(2, "b", 0.1, e2e_s=10.0, unloaded_e2e_s=0.5))
        assert pop_clients(q, 2.0) == expected


def test_pop_hopeless_takes_exactly_the_late_requests() -> None:
    q = PolicyQueue(policy("VTC"), hopeless_last=True)
    arrive(q, req(1, "a", 0.0, e2e_s=1.0, unloaded_e2e_s=0.5))
    arrive(q, req(2, "a", 0.0, e2e_s=10.0, unloaded_e2e_s=0.5))
    arrive(q, req(3, "b", 0.0, e2e_s=1.5, unloaded_e2e_s=0.5))
    assert [r.request_id for r in q.pop_hopeless(0.6)] == [1]
    assert [r.request_id for r in q.pop_hopeless(2.0)] == [3]
    assert len(q) == 1 and q.pop_hopeless(2.0) == []
    assert PolicyQueue(policy("FCFS")).pop_hopeless(5.0) == []  # not deadline-aware


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.floats(0.0, 5.0), st.floats(0.2, 6.0)),
                min_size=1, max_size=30),
       st.sampled_from(["FCFS", "VTC", "ExFairS", "DRR", "ROUND_ROBIN", "LCF"]),
       st.floats(0.0, 12.0))
def test_no_hopeless_pop_while_a_savable_request_waits(
        specs: list[tuple[str, float, float]], name: str, now: float) -> None:
    q = PolicyQueue(policy(name, ("a", "b", "c")), hopeless_last=True)
    specs = sorted(specs, key=lambda s: s[1])
    queued = {}
    for i, (c, t, e2e) in enumerate(specs):
        r = req(i, c, t, e2e_s=e2e, unloaded_e2e_s=0.5)
        arrive(q, r, min(t, now))
        queued[i] = r

    def hopeless(r: Request) -> bool:
        return now + r.unloaded_e2e_s > r.deadline_s

    while len(q):
        r = q.pop(now)
        assert r is not None
        del queued[r.request_id]
        if hopeless(r):
            assert all(hopeless(x) for x in queued.values()), (r, queued)


def _limiter(max_inflight: int = 100, kv_tokens: int = 0) -> SloAdmission:
    # 10 ms fixed + 1 ms per sequence per step; prefill 0.1 ms per token.
    return SloAdmission(AdmissionConfig(limit="predictive", headroom=1.0),
                        lambda n, ctx: 0.010 + 0.001 * n, 0.0001, max_inflight,
                        kv_tokens=kv_tokens)


def test_predictive_limit_admits_while_the_pace_meets_every_budget() -> None:
    lim = _limiter()
    # Budget per token: (10 − 0.011 − 0.01) / 100 ≈ 0.0998 s, so the step may grow to n ≈ 89
    # (prefill spread over the output: 0.0001·100/100 = 1e-4 s per sequence more).
    n = 0
    t = 0.0
    while lim.admit(req(n, "a", t, prompt=100, output=100, e2e_s=10.0), t, n) and n < 100:
        lim.released(req(n, "a", t, prompt=100, output=100, e2e_s=10.0), t)
        n += 1
    assert 80 <= n <= 90
    # One request finishing frees one slot; an empty engine always takes the next request.
    lim.finished(0)
    assert lim.admit(req(500, "a", t, prompt=100, output=100, e2e_s=10.0), t, n - 1)
    assert _limiter().admit(req(1, "a", 0.0, e2e_s=0.001), 0.0, 0)


def test_predictive_limit_respects_the_tightest_in_flight_budget_and_kv() -> None:
    lim = _limiter()
    lim.released(req(1, "a", 0.0, prompt=10, output=100, e2e_s=1.6), 0.0)  # ~0.0159 s/token
    assert lim.admit(req(2, "b", 0.0, prompt=10, output=100, e2e_s=100.0), 0.0, 1)
    assert not lim.admit(req(2, "b", 0.0, prompt=10, output=100, e2e_s=100.0), 0.0, 6)
    lim.finished(1)
    assert lim.admit(req(2, "b", 0.0, prompt=10, output=100, e2e_s=100.0), 0.0, 6)
    kv = _limiter(kv_tokens=1000)
    assert kv.admit(req(3, "a", 0.0, prompt=400, output=100), 0.0, 1)
    assert not kv.admit(req(3, "a", 0.0, prompt=400, output=100), 0.0, 2)
    assert not _limiter(max_inflight=3).admit(req(4, "a", 0.0), 0.0, 3)


def test_admission_config_parse_and_errors() -> None:
    cfg = AdmissionConfig.parse("hopeless=reject, limit=predictive, headroom=0.8")
    assert (cfg.hopeless, cfg.limit, cfg.headroom) == ("reject", "predictive", 0.8)
    assert cfg.label == "hopeless=reject,limit=predictive,headroom=0.8"
    assert not AdmissionConfig.parse("off").active
    for spec, field in (("hopeless=drop", "admission.hopeless"), ("limit=x", "admission.limit"),
                        ("headroom=0", "admission.headroom"), ("size=3", "admission"),
                        ("headroom=abc", "admission.headroom")):
        with pytest.raises(ConfigError) as exc:
            AdmissionConfig.parse(spec)
        assert exc.value.field == field
    assert math.isinf(_limiter().budget_s(req(1, "a", 0.0), 0.0))
