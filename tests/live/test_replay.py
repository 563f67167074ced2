"""Replay (issue 12, item 4) without vLLM: a simulated run stands in for the live one — its steps
become a step log, its records the "live" result — and replaying it must reproduce every
request's first-token and finish step exactly. A replay that ignored the log (the profile's
cost model instead) must not."""

from __future__ import annotations

from dataclasses import replace

import pytest

from exfairs.live.replay import replay_live_run, step_ends
from exfairs.live.steplog import LoggedRequest, ScheduledRequest, StepLog, StepRecord
from exfairs.metrics import compute_metrics
from exfairs.results import RunInfo, RunResult
from exfairs.sim.plan import StepInfo
from exfairs.sim.prepare import prepare_run
from exfairs.sim.replay import ReplayStepCost
from exfairs.sim.runner import simulate

ZERO = 1000.0  # the "live" run clock's zero on the monotonic clock


def _stand_in(exp: str, *, slower: float = 1.0) -> tuple[object, RunResult, StepLog]:
    """A prepared run, and a simulated run of it as a live result with its step log.
    `slower` scales the stand-in's step costs, so the log differs from the profile's model."""
    prepared = prepare_run("benchmarks/validation/cpu-val-mix.toml", 3, load_factor=0.9,
                           profile="cpu-llama-60m", duration_s=35)
    gate = exp.startswith("QUEUE_")
    eng = replace(prepared.engine, submit_latency_s=1e-3 if gate else 0.0,
                  prompt_credit="first_token")
    infos: list[StepInfo] = []
    base = prepared.profile.cost_model(eng.max_num_batched_tokens)

    class Scaled:
        def step_ms(self, plan: object) -> float:
            p = plan  # StepPlan
            return slower * base.step_ms(p.prefill_tokens, p.prefill_attn,  # type: ignore[attr-defined]
                                         p.decode_seqs, p.decode_ctx)  # type: ignore[attr-defined]

        def decode_run_ms(self, *a: object, **k: object) -> object:
            raise NotImplementedError

    sim = simulate(prepared.workload, exp, prepared.profile, engine=eng, step_by_step=True,
                   observer=infos.append, step_cost=Scaled(), max_inflight=4 if gate else None)
    prompts = {r.request_id: r.prompt_tokens for r in prepared.workload.requests}
    reqs = {r.request_id: LoggedRequest(f"v{r.request_id}", r.request_id, r.client,
                                        r.prompt_tokens, added_mono=ZERO + r.arrival_s)
            for r in prepared.workload.requests}
    steps = []
    busy = [i for i in infos if i.n_steps]
    for k, info in enumerate(busy):
        sched = tuple(ScheduledRequest(reqs[rid], n, c, c + n >= prompts[rid])
                      for rid, n, c in info.scheduled)
        # Back to back: no gap, and "waiting" marks it; an idle engine starts later.
        goes_on = k + 1 < len(busy) and busy[k + 1].start_s == info.end_s
        steps.append(StepRecord(index=k, start_mono=ZERO + info.start_s,
                                end_mono=ZERO + info.end_s, num_waiting=int(goes_on),
                                num_running=1, scheduled=sched, preempted=()))
    info_ = RunInfo(backend="live", scenario=prepared.scenario.name, experiment=exp,
                    policy=exp.split("_")[-1], mode="gate" if gate else "priority", seed=3,
                    load_factor=0.9, profile_id=prepared.profile.id,
                    engine_knobs=(("live_status", "complete"), ("run_zero_mono", ZERO),
                                  ("max_inflight", 4), ("clock_first_token_lag_p50_ms", 1.0)))
    live = RunResult(info=info_, clients=prepared.workload.clients, records=sim.records,
                     metrics=compute_metrics(sim.records, prepared.workload.clients))
    return prepared, live, StepLog("r", tuple(steps), tuple(reqs.values()))


@pytest.mark.parametrize("exp", ["QUEUE_FCFS", "QUEUE_VTC", "VTC", "ExFairS"])
def test_replay_of_a_stand_in_run_matches_every_request(exp: str) -> None:
    prepared, live, log = _stand_in(exp, slower=1.3)
    rep = replay_live_run(prepared, live, log)  # type: ignore[arg-type]
    assert rep.requests and rep.match_fraction == 1.0, rep.summary()
    assert abs(rep.mean_ttft_error) < 1e-6 and abs(rep.mean_e2e_error) < 1e-6
    assert rep.meets_targets and rep.sim_steps == rep.live_steps


def test_a_replay_needs_the_logged_durations() -> None:
    # The same stand-in, but the log's steps are priced 30% slower than the profile: a
    # simulation with the profile's own costs cannot match it (the test can fail).
    prepared, live, _log = _stand_in("QUEUE_FCFS", slower=1.3)
    sim = simulate(prepared.workload, "QUEUE_FCFS", prepared.profile,  # type: ignore[attr-defined]
                   engine=replace(prepared.engine, submit_latency_s=1e-3,  # type: ignore[attr-defined]
                                  prompt_credit="first_token"), max_inflight=4)
    live_ttft = sum(r.first_token_s - r.arrival_s for r in live.records)  # type: ignore[operator]
    sim_ttft = sum(r.first_token_s - r.arrival_s for r in sim.records)  # type: ignore[operator]
    assert abs(sim_ttft - live_ttft) / live_ttft > 0.05


def test_step_ends_follow_the_next_start_while_busy() -> None:
    req = LoggedRequest("v0", 0, "a", 10)
    s = ScheduledRequest(req, 1, 10, True)
    steps = [StepRecord(0, 1.0, 1.02, 0, 1, (s,), ()), StepRecord(1, 1.0203, 1.04, 0, 1, (s,), ()),
             StepRecord(2, 5.0, 5.03, 0, 1, (ScheduledRequest(LoggedRequest("v1", 1, "a", 5), 5,
                                                               0, True),), ())]
    ends = step_ends(steps, 1.0)
    assert ends[0] == pytest.approx(0.0203)  # the next schedule() started then
    assert ends[1] == pytest.approx(0.04 + 0.0003)  # went idle: own end + median busy gap
    assert ends[2] == pytest.approx(4.03 + 0.0003)


def test_replay_cost_needs_the_clock_and_prices_one_step_at_a_time() -> None:
    cost = ReplayStepCost([0.5], fallback_ms=7.0)
    with pytest.raises(RuntimeError, match="bind_clock"):
        cost.step_ms(None)  # type: ignore[arg-type]
    cost.bind_clock(lambda: 0.25)
    assert cost.step_ms(None) == pytest.approx(250.0)  # type: ignore[arg-type]
    assert cost.step_ms(None) == 7.0  # type: ignore[arg-type]  # beyond the record
    with pytest.raises(NotImplementedError):
        cost.decode_run_ms(2, 1, 1)
