"""SloTracker: TTFT and e2e deadlines, exactly one resolution per request."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from policy_factories import req

from exfairs.slo import SloTracker


def test_e2e_deadline_resolves_while_still_running() -> None:
    t = SloTracker()
    t.arrive(req(1, arrival_s=0.0, e2e_s=2.0))
    assert t.advance(2.0) == []  # strictly before now: not yet
    out = t.advance(2.5)
    assert [(r.request.request_id, r.time_s, r.met) for r in out] == [(1, 2.0, False)]
    assert t.finish(1, 3.0, 10) is None  # already resolved
    assert len(t) == 0


def test_ttft_deadline_missed_without_first_token() -> None:
    t = SloTracker()
    t.arrive(req(1, arrival_s=1.0, ttft_s=0.5, e2e_s=10.0))
    out = t.advance(2.0)
    assert [(r.time_s, r.met) for r in out] == [(1.5, False)]
    assert t.advance(20.0) == []  # the e2e deadline does not resolve it a second time


def test_first_token_in_time_then_finish_met() -> None:
    t = SloTracker()
    t.arrive(req(1, arrival_s=0.0, ttft_s=1.0, e2e_s=5.0))
    assert t.first_token(1, 0.5) is None
    assert t.advance(3.0) == []  # the TTFT deadline passed, but the first token came in time
    res = t.finish(1, 4.0, 10)
    assert res is not None and res.met and res.time_s == 4.0


def test_late_first_token_resolves_at_once() -> None:
    t = SloTracker()
    t.arrive(req(1, arrival_s=0.0, ttft_s=1.0))
    res = t.first_token(1, 1.5)
    assert res is not None and not res.met
    assert t.finish(1, 2.0, 10) is None


def test_finish_after_deadline_without_advance_is_violation() -> None:
    t = SloTracker()
    t.arrive(req(1, arrival_s=0.0, e2e_s=1.0))
    res = t.finish(1, 1.5, 10)
    assert res is not None and not res.met


def test_finish_exactly_at_deadline_is_met() -> None:
    t = SloTracker()
    t.arrive(req(1, arrival_s=0.0, e2e_s=1.0))
    assert t.advance(1.0) == []
    res = t.finish(1, 1.0, 10)
    assert res is not None and res.met


def test_fail_resolves_as_violation_once() -> None:
    t = SloTracker()
    t.arrive(req(1))
    res = t.fail(1, 0.1)
    assert res is not None and not res.met
    assert t.fail(1, 0.2) is None and not t.is_pending(1)


def test_advance_orders_by_time_then_id() -> None:
    t = SloTracker()
    t.arrive(req(2, arrival_s=0.0, e2e_s=1.0))
    t.arrive(req(1, arrival_s=0.0, e2e_s=1.0))
    t.arrive(req(3, arrival_s=0.0, e2e_s=0.5))
    assert [r.request.request_id for r in t.advance(5.0)] == [3, 1, 2]


_events = st.lists(
    st.tuples(st.sampled_from(["first", "finish", "fail", "advance"]), st.integers(0, 5),
              st.floats(0.0, 2.0)),
    max_size=40,
)


@given(
    slos=st.lists(st.tuples(st.one_of(st.none(), st.floats(0.1, 3.0)),
                            st.one_of(st.none(), st.floats(0.1, 3.0))), min_size=6, max_size=6),
    events=_events,
)
def test_every_request_resolved_exactly_once(
    slos: list[tuple[float | None, float | None]], events: list[tuple[str, int, float]]
) -> None:
    t = SloTracker()
    for rid, (ttft, e2e) in enumerate(slos):
        t.arrive(req(rid, arrival_s=0.0, ttft_s=ttft, e2e_s=e2e))
    resolved: list[int] = []
    now = 0.0
    for kind, rid, dt in events:
        now += dt
        if kind == "advance":
            resolved += [r.request.request_id for r in t.advance(now)]
            continue
        res = (t.first_token(rid, now) if kind == "first" else
               t.finish(rid, now, 10) if kind == "finish" else t.fail(rid, now))
        if res is not None:
            assert res.request.request_id == rid
            resolved.append(rid)
    for rid in range(6):
        res = t.fail(rid, now + 100.0)
        if res is not None:
            resolved.append(rid)
    assert sorted(resolved) == list(range(6))
    assert len(t) == 0
