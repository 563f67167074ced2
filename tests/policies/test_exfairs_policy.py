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
    # Default order: (1 − α)·counter + α·B·(u/K − v); counters are VTC's (a: 10, b: 30), no
    # e2e SLO → u = K; B = 4 × mean cost of the requests seen (none arrived yet: 0).
    assert p.counters.tolist() == pytest.approx([10.0, 30.0])
    assert p.client_scores(0.0).tolist() == pytest.approx([0.3 * 10.0, 0.3 * 30.0])
    p.on_arrival(req(6, "a", 0.0, prompt=100, output=50), 0.0)  # cost 200 → B = 800
    assert p.credit_tokens() == pytest.approx(800.0)
    assert p.client_scores(0.0).tolist() == pytest.approx(
        [0.3 * 10.0 + 0.7 * 800.0 * (1.0 - 0.25), 0.3 * 30.0 + 0.7 * 800.0 * 1.0])
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


def test_priority_mode_uses_start_tag_urgency_and_charges_output_at_submission() -> None:
    p = xf(window_s=1e9, horizon_s=10.0, credit_requests=1.0)
    r1 = req(1, "a", 0.0, prompt=100, output=50, e2e_s=8.0, unloaded_e2e_s=3.0)
    p.on_arrival(r1, 0.0)  # B = 1 × 200
    # Tag 0, slack 8 − 3 − 0 = 5 s of K = 10, no violations yet.
    assert p.submission_priority(r1, 0.0) == round(0.7 * 200.0 * 0.5)
    p.on_dispatch(r1, 0.0)
    assert p.counters.tolist() == pytest.approx([200.0, 0.0])  # prompt + 2 × requested output
    p.on_service("a", 100, 50, 1.0)  # prepaid: not charged again
    assert p.counters.tolist() == pytest.approx([200.0, 0.0])
    r2 = req(2, "a", 1.0, prompt=100, output=50)  # no deadline: u = K
    p.on_arrival(r2, 1.0)
    assert p.submission_priority(r2, 1.0) == round(0.3 * 200.0 + 0.7 * 200.0)


@pytest.mark.parametrize("params", [{"order": "fifo"}, {"horizon_s": -1.0}, {"horizon_s": 0.0},
                                    {"credit_requests": -1.0},
                                    {"early_violations": "yes"}])
def test_bad_parameters_are_config_errors(params: dict[str, object]) -> None:
    from exfairs.errors import ConfigError

    with pytest.raises(ConfigError):
        xf(**params)  # type: ignore[arg-type]


def test_urgency_is_least_slack_of_savable_requests_and_ignores_hopeless_ones() -> None:
    p = xf(window_s=1e9, horizon_s=10.0)
    p.on_arrival(req(1, "a", 0.0, e2e_s=4.0, unloaded_e2e_s=1.0), 0.0)  # latest start 3
    p.on_arrival(req(2, "a", 0.0, e2e_s=9.0, unloaded_e2e_s=1.0), 0.0)  # latest start 8
    p.on_arrival(req(3, "b", 0.0, e2e_s=30.0, unloaded_e2e_s=1.0), 0.0)  # latest start 29
    assert p.urgency(1.0).tolist() == pytest.approx([2.0, 10.0])  # b's slack 28 clipped to K
    assert p.urgency(5.0).tolist() == pytest.approx([3.0, 10.0])  # request 1 is hopeless now
    assert p.urgency(9.0).tolist() == pytest.approx([10.0, 10.0])  # only hopeless ones: K
    p.on_dispatch(req(2, "a", 0.0, e2e_s=9.0, unloaded_e2e_s=1.0), 5.0)
    assert p.urgency(5.0).tolist() == pytest.approx([10.0, 10.0])


def test_hopeless_request_does_not_pin_a_client_ahead() -> None:
    """The issue #17 failure: a client whose oldest request is hopeless kept the best rank while
    the queue served its savable requests (the rule before this change gives light 0 turns here).
    Now the rank follows the counter, which rises with every token the client is served."""
    p = xf(("heavy", "light"), window_s=1e9, horizon_s=10.0)
    q = PolicyQueue(p)
    arrive(q, req(1, "heavy", 0.0, e2e_s=1.0, unloaded_e2e_s=0.5), 0.0)  # hopeless from 0.5
    served = []
    t = 1.0
    for k in range(20):  # overload: 3 arrivals, 2 dispatches per round
        arrive(q, req(100 + 2 * k, "heavy", t, e2e_s=60.0, unloaded_e2e_s=0.5), t)
        arrive(q, req(101 + 2 * k, "heavy", t, e2e_s=60.0, unloaded_e2e_s=0.5), t)
        arrive(q, req(200 + k, "light", t, e2e_s=60.0, unloaded_e2e_s=0.5), t)
        for _ in range(2):
            r = q.pop(t)
            assert r is not None
            served.append(r.client)
            p.on_service(r.client, 0, 10, t)
        t += 1.0
    assert served.count("light") >= 19


def test_preempted_request_waits_again_and_finish_forgets_it() -> None:
    p = xf(window_s=1e9, order="arrival", horizon_s=10.0)  # type: ignore[arg-type]
    r = req(1, "a", 3.0)
    p.on_arrival(r, 3.0)
    assert p.urgency(4.0)[0] == pytest.approx(9.0)  # waited 1 s of K = 10
    p.on_dispatch(r, 3.0)
    assert p.urgency(4.0)[0] == pytest.approx(10.0)  # nothing waiting
    p.on_preempt(r, 4.0)
    assert p.urgency(6.0)[0] == pytest.approx(7.0)  # waiting again, since its arrival
    p.on_finish(r, 9.0, True)
    assert p.urgency(9.0)[0] == pytest.approx(10.0)


