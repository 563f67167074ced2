"""ExFairS: the FR score, its window, deadline awareness, and hand-built orders."""

from __future__ import annotations

import math

import pytest
from policy_factories import arrive, policy, pop_clients, req

from exfairs.policies import PolicyQueue
from exfairs.policies.exfairs_policy import ExFairS


def xf(clients: tuple[str, ...] = ("a", "b"), **params: float) -> ExFairS:
    p = policy("ExFairS", clients, **params)
    assert isinstance(p, ExFairS)
    return p


def resolve(p: ExFairS, client: str, violated: int, met: int, t: float = 0.0) -> None:
    for i in range(violated):
        p.on_violation(req(10_000 + i, client), t)
    for i in range(met):
        p.on_finish(req(20_000 + i, client), t, True)


def test_formula_by_hand() -> None:
    p = xf(alpha=0.7, window_s=1e9)
    resolve(p, "a", violated=1, met=3)  # v_a = 0.25
    resolve(p, "b", violated=0, met=2)  # v_b = 0
    p.on_dispatch(req(1, "a", prompt=10), 0.0)  # a: 10
    p.on_service("b", 999, 15, 0.0)  # b: 2·15 = 30 (prefill not charged)
    v = [0.25, 0.0]
    s = [10 / 40, 30 / 40]
    fr = [0.7 * v[i] - 0.3 * s[i] for i in range(2)]
    snap = p.state_snapshot(0.0)
    assert snap["violation_rate"] == pytest.approx(v)
    assert snap["service_share"] == pytest.approx(s)
    assert snap["fr"] == pytest.approx(fr)
    assert p.fairness_scores(0.0).tolist() == pytest.approx(fr)
    # Default priority mode: the key (no e2e SLO here: the arrival time) moved earlier by
    # horizon_s · FR, in ms.
    assert p.submission_priority(req(5, "a", 2.0), 0.0) == round((2.0 - 10.0 * fr[0]) * 1e3)
    old = xf(alpha=0.7, window_s=1e9, order="score")  # type: ignore[arg-type]
    resolve(old, "a", violated=1, met=3)
    resolve(old, "b", violated=0, met=2)
    old.on_dispatch(req(1, "a", prompt=10), 0.0)
    old.on_service("b", 999, 15, 0.0)
    assert old.client_scores(0.0).tolist() == pytest.approx([-x for x in fr])
    assert old.submission_priority(req(5, "a"), 0.0) == round(-fr[0] * 1e6)


def test_empty_state_scores_zero_and_falls_back_to_arrival_order() -> None:
    assert xf(("a", "b", "c"), order="score").client_scores(0.0).tolist() == [0.0] * 3  # type: ignore[arg-type]
    p = xf(("a", "b", "c"))
    assert p.fairness_scores(0.0).tolist() == [0.0, 0.0, 0.0]
    q = PolicyQueue(p)
    arrive(q, req(1, "c", 0.0))
    arrive(q, req(2, "a", 0.1))
    assert pop_clients(q, 1.0) == ["c", "a"]


def test_violated_client_goes_first_at_equal_service() -> None:
    p = xf()
    resolve(p, "b", violated=2, met=2)
    resolve(p, "a", violated=0, met=4)
    q = PolicyQueue(p)
    arrive(q, req(1, "a", 0.0))
    arrive(q, req(2, "b", 0.5))
    assert pop_clients(q, 1.0, 1) == ["b"]


def test_window_decay_halves_old_events() -> None:
    p = xf(window_s=10.0)
    resolve(p, "a", violated=1, met=0, t=0.0)
    resolve(p, "a", violated=0, met=1, t=10.0)  # one half-life later: weight 2 vs 1
    assert p.violation_rates()[0] == pytest.approx(1 / 3)
    p.on_dispatch(req(1, "a", prompt=100), 0.0)
    p.on_dispatch(req(2, "b", prompt=100), 20.0)  # weight 4 vs 1
    assert p.service_shares().tolist() == pytest.approx([0.2, 0.8])


def test_window_rescale_keeps_ratios_over_long_runs() -> None:
    p = xf(window_s=1.0)
    for k in range(400):  # 400 half-lives: far beyond float range without rescaling
        t = float(k)
        p.on_dispatch(req(k, "a" if k % 2 else "b", prompt=10), t)
        resolve(p, "a", violated=k % 3 == 0, met=k % 3 != 0, t=t)
    fr = p.fairness_scores()
    assert all(math.isfinite(x) for x in fr)
    assert 0.0 < p.violation_rates()[0] < 1.0
    assert p.service_shares().sum() == pytest.approx(1.0)


def test_deadline_aware_within_client() -> None:
    p = xf(("a",))
    q = PolicyQueue(p)
    arrive(q, req(1, "a", 0.0, e2e_s=1.0, unloaded_e2e_s=0.5))
    arrive(q, req(2, "a", 0.2, e2e_s=30.0, unloaded_e2e_s=0.5))
    assert [q.pop(2.0).request_id for _ in range(2)] == [2, 1]  # type: ignore[union-attr]


def test_prompt_charged_once_across_preemption() -> None:
    p = xf(alpha=0.0)
    r = req(1, "a", prompt=50)
    p.on_dispatch(r, 0.0)
    p.on_preempt(r, 1.0)
    p.on_dispatch(r, 2.0)
    p.on_dispatch(req(2, "b", prompt=50), 0.0)
    assert p.service_shares().tolist() == pytest.approx([0.5, 0.5])


def test_alpha_one_ignores_service() -> None:
    p = xf(alpha=1.0)
    p.on_dispatch(req(1, "a", prompt=1000), 0.0)
    assert p.fairness_scores(0.0).tolist() == [0.0, 0.0]


def test_early_violation_counts_hopeless_pending_requests() -> None:
    p = xf(window_s=1e9, early_violations=True)  # type: ignore[arg-type]
    resolve(p, "a", violated=0, met=1)
    r = req(1, "a", 0.0, e2e_s=10.0, unloaded_e2e_s=2.0)  # can no longer make it from t = 8
    p.on_arrival(r, 0.0)
    assert p.violation_rates(7.9)[0] == 0.0
    assert p.violation_rates(8.0)[0] == pytest.approx(0.5)  # 1 hopeless / (1 met + 1 hopeless)
    assert p.fairness_scores(8.0)[0] == pytest.approx(0.7 * 0.5)
    p.on_violation(r, 10.0)  # resolved: counted once, as a real violation
    p.on_finish(r, 12.0, False)
    assert p.violation_rates(20.0)[0] == pytest.approx(0.5)
    assert p.violation_rates()[0] == pytest.approx(0.5)


def test_early_violation_respects_decay_and_is_off_by_default() -> None:
    p = xf(window_s=10.0, early_violations=True)  # type: ignore[arg-type]
    resolve(p, "a", violated=0, met=1, t=0.0)  # weight 1/2 at t = 10
    p.on_arrival(req(1, "a", 0.0, e2e_s=5.0), 0.0)
    assert p.violation_rates(10.0)[0] == pytest.approx(1 / 1.5)
    off = xf(window_s=10.0)
    resolve(off, "a", violated=0, met=1, t=0.0)
    off.on_arrival(req(1, "a", 0.0, e2e_s=5.0), 0.0)
    assert off.violation_rates(10.0)[0] == 0.0


def test_early_violation_forgets_finished_and_dropped_requests() -> None:
    p = xf(window_s=1e9, early_violations=True)  # type: ignore[arg-type]
    ok, gone = req(1, "a", 0.0, e2e_s=1.0), req(2, "a", 0.0, e2e_s=1.0)
    p.on_arrival(ok, 0.0)
    p.on_arrival(gone, 0.0)
    p.on_finish(ok, 0.5, True)
    p.on_drop(gone, 0.6)  # a drop without a violation is not counted as one
    assert p.violation_rates(5.0)[0] == 0.0
    assert p.violation_rates(5.0)[1] == 0.0


def test_priority_mode_keys_age_so_no_request_starves() -> None:
    p = xf(window_s=1e9, horizon_s=10.0, order="arrival")  # type: ignore[arg-type]
    resolve(p, "b", violated=4, met=0)  # FR_b = 0.7, FR_a = 0: b jumps 7 s ahead
    assert p.submission_priority(req(1, "b", 7.5), 7.5) > p.submission_priority(
        req(2, "a", 0.0), 7.5)
    assert p.submission_priority(req(3, "b", 6.5), 6.5) < p.submission_priority(
        req(2, "a", 0.0), 6.5)
    d = xf(window_s=1e9, horizon_s=0.0)  # default order: deadline
    assert d.submission_priority(req(4, "a", 1.0, e2e_s=3.0), 1.0) == 4000
    assert d.submission_priority(req(5, "a", 1.0), 1.0) == 1000  # no deadline: arrival


@pytest.mark.parametrize("params", [{"order": "fifo"}, {"horizon_s": -1.0},
                                    {"early_violations": "yes"}])
def test_bad_parameters_are_config_errors(params: dict[str, object]) -> None:
    from exfairs.errors import ConfigError

    with pytest.raises(ConfigError):
        xf(**params)  # type: ignore[arg-type]


def test_gate_order_is_the_virtual_key_of_each_clients_head() -> None:
    p = xf(window_s=1e9, horizon_s=10.0)
    resolve(p, "b", violated=1, met=1)  # FR_b = 0.35, FR_a = 0
    q = PolicyQueue(p)
    arrive(q, req(1, "a", 0.0, e2e_s=20.0))  # key 20
    arrive(q, req(2, "b", 1.0, e2e_s=22.0))  # key 23 − 3.5 = 19.5: goes first
    arrive(q, req(3, "b", 2.0, e2e_s=30.0))  # key 32 − 3.5 = 28.5: after a's 20
    assert p.client_scores(2.0).tolist() == pytest.approx([20.0, 19.5])
    assert [q.pop(2.0).request_id for _ in range(3)] == [2, 1, 3]  # type: ignore[union-attr]
    assert p.client_scores(2.0).tolist() == [math.inf, math.inf]  # nothing waiting


def test_preempted_request_waits_again_and_finish_forgets_it() -> None:
    p = xf(window_s=1e9, order="arrival", horizon_s=0.0)  # type: ignore[arg-type]
    r = req(1, "a", 3.0)
    p.on_arrival(r, 3.0)
    p.on_dispatch(r, 3.0)
    assert p.client_scores(4.0)[0] == math.inf
    p.on_preempt(r, 4.0)
    assert p.client_scores(4.0)[0] == pytest.approx(3.0)
    p.on_finish(r, 9.0, True)
    assert p.client_scores(9.0)[0] == math.inf


def test_no_request_waits_behind_one_keyed_more_than_horizon_later() -> None:
    """Starvation bound: FR ∈ [−(1−α), α], so virtual keys differ from keys by at most
    horizon_s, whatever the history."""
    p = xf(window_s=1e9, horizon_s=5.0, order="arrival")  # type: ignore[arg-type]
    resolve(p, "b", violated=50, met=0)
    p.on_dispatch(req(100, "a", prompt=10_000), 0.0)  # a: all the service, no violations
    old, new = req(1, "a", 0.0), req(2, "b", 5.01)
    assert p.submission_priority(old, 6.0) < p.submission_priority(new, 6.0)
