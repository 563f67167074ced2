"""SLO-aware admission at the live gate (issue 15, `exfairs.live.gate`), against the fake engine:
hopeless requests demoted or refused with outcome REJECTED, the predictive limit holding the
policy's pick back, and the modes that do not take it refused up front."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from live_fakes import FakeEngine, make_workload
from test_driver import Recording, run

from exfairs.errors import ConfigError
from exfairs.live.config import DriverConfig
from exfairs.live.driver import LiveDriver
from exfairs.live.gate import LiveGate, predictive_limiter
from exfairs.policies import Mode, PolicyQueue, make_policy
from exfairs.policies.admission import AdmissionConfig, SloAdmission
from exfairs.policies.admission_feedback import FeedbackLimit
from exfairs.records import SLO, ClientInfo, Outcome, Request, Workload

REJECT = AdmissionConfig(hopeless="reject")
DEMOTE = AdmissionConfig(hopeless="demote")


def _workload(specs: list[tuple[str, float, int, float]]) -> Workload:
    """(client, arrival, output tokens, e2e SLO) per request; prompts of 16 tokens."""
    reqs = tuple(Request(request_id=i, client=c, arrival_s=t, prompt_tokens=16, output_tokens=o,
                         slo=SLO(e2e_s=e2e)) for i, (c, t, o, e2e) in enumerate(specs))
    clients = tuple(ClientInfo(c) for c in sorted({s[0] for s in specs}))
    return Workload(name="t", seed=0, clients=clients, requests=reqs, duration_s=1.0)


def test_hopeless_requests_are_rejected_at_the_gate_and_never_submitted() -> None:
    # One slot, 0.1 s per request, deadlines 30 ms after arrival: the five queued requests turn
    # hopeless while the first runs and leave at the gate.
    wl = make_workload(6, arrivals_s=[0.0] * 6, output_tokens=10, slo=SLO(e2e_s=0.03))
    eng = FakeEngine(max_num_seqs=1, token_s=0.01)
    pol = Recording()
    out = run(LiveDriver(wl, pol, Mode.GATE, eng, DriverConfig(advance_every_s=0.005),
                         admission=REJECT), eng)
    assert out.records[0].outcome is Outcome.VIOLATED
    rejected = out.records[1:]
    assert all(r.outcome is Outcome.REJECTED for r in rejected)
    assert all(r.finish_s is not None and r.finish_s >= 0.03 and r.dispatch_s is None
               and r.generated_tokens == 0 for r in rejected)
    assert [rid for rid, _ in eng.submissions] == [0]
    calls = Counter((k, rid) for k, rid, _ in pol.calls if k in ("violation", "drop", "dispatch"))
    for r in rejected:
        assert calls[("violation", r.request_id)] == calls[("drop", r.request_id)] == 1
        assert calls[("dispatch", r.request_id)] == 0


def test_without_admission_the_same_requests_are_served_late() -> None:
    wl = make_workload(6, arrivals_s=[0.0] * 6, output_tokens=10, slo=SLO(e2e_s=0.03))
    eng = FakeEngine(max_num_seqs=1, token_s=0.01)
    out = run(LiveDriver(wl, Recording(), Mode.GATE, eng, DriverConfig(advance_every_s=0.005)),
              eng)
    assert all(r.outcome is Outcome.VIOLATED for r in out.records)
    assert len(eng.submissions) == 6


@pytest.mark.parametrize(("admission", "order"), [(None, [0, 1, 2]), (DEMOTE, [0, 2, 1])])
def test_demote_puts_hopeless_requests_behind_savable_ones(
        admission: AdmissionConfig | None, order: list[int]) -> None:
    # The policy ranks a first; request 1 (a) turns hopeless at 20 ms while request 0 holds the
    # only slot for 100 ms, so demotion serves b's savable request 2 before it.
    wl = _workload([("a", 0.0, 10, 10.0), ("a", 0.0, 2, 0.02), ("b", 0.0, 2, 10.0)])
    eng = FakeEngine(max_num_seqs=1, token_s=0.01)
    out = run(LiveDriver(wl, Recording({"a": 0.0, "b": 1.0}), Mode.GATE, eng,
                         DriverConfig(advance_every_s=0.005), admission=admission), eng)
    assert eng.started_order == order
    assert len(out.records) == 3 and not any(r.outcome is Outcome.REJECTED for r in out.records)


def _limiter(max_inflight: int = 8) -> SloAdmission:
    # 10 ms per decoding sequence per step, no prefill cost: with a 25 ms per-token budget and
    # headroom 0.9 (22.5 ms), two requests in flight keep pace and a third would not.
    return SloAdmission(AdmissionConfig(limit="predictive"), lambda n, ctx: 0.01 * n, 0.0,
                        max_inflight)


def test_live_gate_predictive_limit_holds_the_pick_until_a_request_leaves() -> None:
    pol = make_policy("FCFS")
    pol.add_client("a", 1.0)
    q = PolicyQueue(pol)
    gate = LiveGate(q, AdmissionConfig(limit="predictive"), _limiter())
    reqs = [Request(request_id=i, client="a", arrival_s=0.0, prompt_tokens=16, output_tokens=8,
                    slo=SLO(e2e_s=10.0, tpot_s=0.025)) for i in range(4)]
    for r in reqs:
        pol.on_arrival(r, 0.0)
        q.push(r, 0.0)
    released, refused = gate.release(0.0, 0, 8)
    assert [r.request_id for r in released] == [0, 1] and refused == []
    assert gate.release(0.01, 2, 8) == ([], [])
    gate.finished(0)
    released, _ = gate.release(0.02, 1, 8)
    assert [r.request_id for r in released] == [2]


def test_driver_with_the_predictive_limit_keeps_two_in_flight() -> None:
    wl = make_workload(8, arrivals_s=[0.0] * 8, output_tokens=5,
                       slo=SLO(e2e_s=10.0, tpot_s=0.025))
    limited, free = FakeEngine(max_num_seqs=8), FakeEngine(max_num_seqs=8)
    out = run(LiveDriver(wl, Recording(), Mode.GATE, limited, admission=AdmissionConfig(
        limit="predictive"), limiter=_limiter()), limited)
    run(LiveDriver(wl, Recording(), Mode.GATE, free), free)
    assert limited.max_running_seen == 2 < free.max_running_seen
    assert all(r.outcome.completed for r in out.records)


def test_predictive_limiter_from_a_profile() -> None:
    from exfairs.calibration.profile import load_profile

    prof = load_profile("cpu-tiny-llama")
    assert predictive_limiter(REJECT, prof, 512, 8) is None
    lim = predictive_limiter(AdmissionConfig(limit="predictive"), prof, 512, 8)
    assert lim is not None and lim.mean_step_s(4, 100, 50) > lim.mean_step_s(1, 100, 50) > 0


@pytest.mark.parametrize("mode", [Mode.PRIORITY, Mode.ENGINE])
def test_admission_needs_gate_mode_live(mode: Mode) -> None:
    wl = make_workload(2)
    with pytest.raises(ConfigError) as info:
        LiveDriver(wl, Recording(), mode, FakeEngine(), admission=DEMOTE)
    assert info.value.field == "admission" and "hopeless=demote" in str(info.value)
    LiveDriver(wl, Recording(), mode, FakeEngine(), admission=AdmissionConfig())  # inactive: fine


@pytest.mark.live
def test_real_engine_rejects_hopeless_requests_at_the_gate(live_engine: object) -> None:
    # Two slots busy with long outputs; six more requests wait with a 0.3 s deadline that the
    # first two cannot free a slot for: they are refused at the gate and never reach vLLM.
    from test_live_engine import Counting

    reqs = [Request(request_id=i, client="ab"[i % 2], arrival_s=0.0, prompt_tokens=32,
                    output_tokens=600 if i < 2 else 8, slo=SLO(e2e_s=600.0 if i < 2 else 0.3))
            for i in range(8)]
    wl = Workload("reject", 0, (ClientInfo("a"), ClientInfo("b")), tuple(reqs), 0.1)
    backend = Counting(live_engine.backend)  # type: ignore[attr-defined]
    pol = Recording()
    driver = LiveDriver(wl, pol, Mode.GATE, backend, DriverConfig(max_inflight=2),
                        admission=REJECT)
    out = live_engine.run(driver.run)  # type: ignore[attr-defined]
    assert out.stopped is None
    by_id = {r.request_id: r for r in out.records}
    for i in (0, 1):
        assert by_id[i].outcome is Outcome.FINISHED and by_id[i].generated_tokens == 600
    for i in range(2, 8):
        r = by_id[i]
        assert r.outcome is Outcome.REJECTED and r.dispatch_s is None, r
        assert r.finish_s is not None and 0.3 <= r.finish_s < by_id[0].finish_s  # type: ignore[operator]
    assert backend.peak == 2
    assert sum(k == "drop" for k, _, _ in pol.calls) == 6


@pytest.mark.live
def test_real_engine_feedback_limit_falls_on_violations(live_engine: object) -> None:
    # Twelve short requests at once, four slots, an e2e SLO no engine meets (10 ms) and no
    # unloaded latency (every release is judged): the first finishes are violations, so the
    # feedback limit falls below the gate's 4, from the driver's own first-token and finish
    # times of a real vLLM; every release is reported back and every request has its record.
    reqs = [Request(request_id=i, client="ab"[i % 2], arrival_s=0.0, prompt_tokens=16,
                    output_tokens=8, slo=SLO(e2e_s=0.01)) for i in range(12)]
    wl = Workload("feedback", 0, (ClientInfo("a"), ClientInfo("b")), tuple(reqs), 0.1)
    adm = AdmissionConfig(limit="feedback")
    lim = predictive_limiter(adm, None, 0, 4)
    assert isinstance(lim, FeedbackLimit)
    driver = LiveDriver(wl, Recording(), Mode.GATE, live_engine.backend,  # type: ignore[attr-defined]
                        DriverConfig(max_inflight=4), admission=adm, limiter=lim)
    out = live_engine.run(driver.run)  # type: ignore[attr-defined]
    assert out.stopped is None and len(out.records) == 12
    assert all(r.outcome is Outcome.VIOLATED for r in out.records)
    assert lim.decreases >= 1 and lim.cap < 4 and not lim._live_ids


DEAD_URL = ["--vllm-url", "http://127.0.0.1:9", "--no-warmup"]  # nothing listens: never reached


@pytest.mark.parametrize(("args", "field", "value"), [
    (["-e", "QUEUE_VTC", "--admission", "hopeless=sure"], "admission.hopeless", "sure"),
    (["-e", "QUEUE_VTC", "-e", "VTC", "--admission", "hopeless=demote"], "admission",
     "hopeless=demote"),
])
def test_live_cli_admission_bad_input_exits_2(
        tmp_path: object, capsys: pytest.CaptureFixture[str], args: list[str], field: str,
        value: str) -> None:
    from pathlib import Path

    from exfairs.live.cli import main as live_main

    out = Path(str(tmp_path)) / "out"
    assert live_main(["run", "default", *args, *DEAD_URL, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("exfairs-live: error:")]
    assert f"field '{field}'" in line and value in line and "--admission" in line, line
    assert not out.exists()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ab"), st.floats(0.0, 1.0), st.floats(0.01, 2.0)),
                min_size=1, max_size=30),
       st.sampled_from(["hopeless=demote", "hopeless=reject", "limit=predictive",
                        "hopeless=reject,limit=predictive"]),
       st.floats(0.0, 3.0), st.integers(0, 6), st.integers(1, 8))
def test_live_gate_accounts_for_every_request(
        specs: list[tuple[str, float, float]], spec: str, now: float, inflight: int,
        max_inflight: int) -> None:
    # Whatever the options: each queued request is released, refused or still queued, exactly
    # once; releases never exceed the free slots; only hopeless=reject refuses.
    adm = AdmissionConfig.parse(spec)
    pol = make_policy("VTC")
    for c in "ab":
        pol.add_client(c, 1.0)
    q = PolicyQueue(pol, hopeless_last=adm.hopeless != "keep")
    reqs = [Request(request_id=i, client=c, arrival_s=t, prompt_tokens=16, output_tokens=8,
                    slo=SLO(e2e_s=e2e, tpot_s=0.025)) for i, (c, t, e2e) in enumerate(specs)]
    for r in sorted(reqs, key=lambda r: r.arrival_s):
        pol.on_arrival(r, r.arrival_s)
        q.push(r, r.arrival_s)
    gate = LiveGate(q, adm, _limiter(max_inflight) if adm.limit == "predictive" else None)
    released, refused = gate.release(max(now, max(r.arrival_s for r in reqs)), inflight,
                                     max_inflight)
    ids = [r.request_id for r in released + refused]
    assert len(ids) == len(set(ids)) and len(ids) + len(q) == len(reqs)
    assert len(released) <= max(0, max_inflight - inflight)
    assert not refused or adm.hopeless == "reject"


def test_driver_with_the_feedback_limit_learns_a_smaller_batch() -> None:
    # Each other running request adds 4 ms per token: 8 running take 30 ms per token, 0.3 s for
    # 10 tokens, against an e2e SLO of 0.15 s. 60 requests, one every 15 ms: the fixed gate
    # would run them 8 at a time, all late; the driver's reports of first tokens and finishes
    # (wall clock, so only the direction is asserted) must bring the limit down.
    wl = make_workload(60, gap_s=0.015, output_tokens=10, slo=SLO(e2e_s=0.15))
    wl = replace(wl, requests=tuple(replace(r, unloaded_e2e_s=0.02) for r in wl.requests))
    adm = AdmissionConfig(hopeless="reject", limit="feedback")
    lim = predictive_limiter(adm, None, 0, 8)
    assert isinstance(lim, FeedbackLimit)
    eng = FakeEngine(max_num_seqs=8, token_s=0.002, token_s_per_running=0.004)
    out = run(LiveDriver(wl, Recording(), Mode.GATE, eng, DriverConfig(advance_every_s=0.005),
                         admission=adm, limiter=lim), eng)
    assert sorted(r.request_id for r in out.records) == list(range(60))
    assert lim.decreases >= 1 and lim.cap < 8 and lim.stretch > 1.0
    assert not lim._live_ids  # every release was reported back
