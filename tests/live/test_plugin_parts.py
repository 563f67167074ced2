"""The scheduler plug-in's vLLM-free parts: the extra-args protocol, the step log file, and the
engine-side run state (hooks in the simulator's order, contained policy errors)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from exfairs.errors import InputError
from exfairs.live.engine_run import EngineRun, read_report
from exfairs.live.plugin_protocol import (
    RunSpec,
    UnsupportedVllm,
    check_vllm_version,
    control_xargs,
    parse_control,
    parse_request,
    request_xargs,
)
from exfairs.live.steplog import StepLogBuffer, read_steplog
from exfairs.policies.base import FloatArray, Policy
from exfairs.records import SLO, Request


def test_version_pin() -> None:
    check_vllm_version("0.32.0")
    check_vllm_version("0.32.0+cpu")
    with pytest.raises(UnsupportedVllm, match=r"supports vLLM 0\.32\.0.*found vLLM 0\.33\.1"):
        check_vllm_version("0.33.1")


@given(rid=st.integers(0, 2**40), client=st.text(min_size=1, max_size=20),
       arrival=st.floats(0, 1e6), prompt=st.integers(1, 10**5), out=st.integers(1, 10**4),
       e2e=st.none() | st.floats(0.01, 1e4), ttft=st.none() | st.floats(0.01, 1e4),
       unloaded=st.floats(0, 100))
def test_request_xargs_round_trip(rid: int, client: str, arrival: float, prompt: int, out: int,
                                  e2e: float | None, ttft: float | None, unloaded: float) -> None:
    r = Request(request_id=rid, client=client, arrival_s=arrival, prompt_tokens=prompt,
                output_tokens=out, slo=SLO(e2e_s=e2e, ttft_s=ttft), unloaded_e2e_s=unloaded)
    args = request_xargs(r, "run-1")
    assert all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in args.values())
    assert all(math.isfinite(v) for v in args.values() if isinstance(v, float))  # JSON-safe
    assert parse_request(args) == ("run-1", r)


def test_untagged_control_and_malformed_requests() -> None:
    assert parse_request(None) is None and parse_request({"other": 1}) is None
    spec = RunSpec(run_id="r", mode="engine", policy="VTC", out_dir="/tmp/x",
                   policy_params={"w_p": 2}, clients=(("a", 1.0), ("b", 2.0)))
    start = control_xargs("start", spec)
    assert parse_request(start) is None
    assert parse_control(start) == ("start", "r", spec)
    assert parse_control(control_xargs("end", spec)) == ("end", "r", None)
    with pytest.raises(ValueError, match="exfairs_id"):
        parse_request({"exfairs_run": "r", "exfairs_client": "a"})
    with pytest.raises(InputError, match="mode"):
        RunSpec(run_id="r", mode="bogus", policy="VTC", out_dir="/tmp")
    with pytest.raises(InputError, match="run_id"):
        RunSpec(run_id="../x", mode="gate", policy="VTC", out_dir="/tmp")
    with pytest.raises(InputError, match="exfairs_spec"):
        RunSpec.from_json("{not json")


def test_step_log_round_trip(tmp_path: Path) -> None:
    buf = StepLogBuffer()
    a = buf.request_index("v-a", 7, "alice", 30)
    b = buf.request_index("v-b", None, None, 5)
    assert buf.request_index("v-a", 7, "alice", 30) == a
    buf.add_step(1.0, 3, 1)
    buf.add_scheduled(a, 30, 0, True)
    buf.close_step()
    buf.end_step(1.5)
    buf.add_step(2.0, 2, 2)
    buf.add_scheduled(a, 1, 30, True)
    buf.add_scheduled(b, 5, 0, False)
    buf.add_preempted(a)
    buf.close_step()  # no end: the engine stopped mid-step
    path = buf.write(tmp_path / "r.steps.npz", "r")
    log = read_steplog(path)
    assert log.run_id == "r" and len(log) == 2
    s0, s1 = log.steps
    assert (s0.start_mono, s0.end_mono, s0.num_waiting, s0.num_running) == (1.0, 1.5, 3, 1)
    assert s0.scheduled[0].request.client == "alice" and s0.scheduled[0].request.request_id == 7
    assert s0.total_tokens == 30 and s1.total_tokens == 6
    assert math.isnan(s1.end_mono)
    assert s1.scheduled[1].request.request_id is None and not s1.scheduled[1].samples_token
    assert [p.vllm_id for p in s1.preempted] == ["v-a"]
    empty = read_steplog(StepLogBuffer().write(tmp_path / "e.steps.npz", "e"))
    assert len(empty) == 0


class _Recorder(Policy):
    def __init__(self, fail_on: str = "") -> None:
        super().__init__()
        self.calls: list[tuple[str, object, float]] = []
        self.fail_on = fail_on

    def _log(self, hook: str, what: object, now_s: float) -> None:
        if hook == self.fail_on:
            raise RuntimeError(f"boom in {hook}")
        self.calls.append((hook, what, now_s))

    def on_arrival(self, request: Request, now_s: float) -> None:
        self._log("arrival", request.request_id, now_s)

    def on_violation(self, request: Request, now_s: float) -> None:
        self._log("violation", request.request_id, now_s)

    def on_service(self, client: str, prefill_tokens: int, decode_tokens: int,
                   now_s: float) -> None:
        self._log("service", (client, prefill_tokens, decode_tokens), now_s)

    def on_finish(self, request: Request, now_s: float, slo_met: bool) -> None:
        self._log("finish", (request.request_id, slo_met), now_s)

    def on_drop(self, request: Request, now_s: float) -> None:
        self._log("drop", request.request_id, now_s)

    def client_scores(self, now_s: float) -> FloatArray:
        return np.zeros(self.n_clients)


def _engine_run(tmp_path: Path, policy: _Recorder, monkeypatch: pytest.MonkeyPatch) -> EngineRun:
    from exfairs.live import engine_run

    monkeypatch.setattr(engine_run, "make_policy", lambda name, params: policy)
    spec = RunSpec(run_id="t", mode="engine", policy="REC", out_dir=str(tmp_path),
                   clients=(("a", 1.0), ("b", 1.0)), sample_every_s=1.0)
    return EngineRun(spec, str(tmp_path))


def test_engine_run_feeds_hooks_in_the_simulators_order(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pol = _Recorder()
    run = _engine_run(tmp_path, pol, monkeypatch)
    r0 = Request(request_id=0, client="a", arrival_s=0.0, prompt_tokens=4, output_tokens=2,
                 slo=SLO(e2e_s=0.5))
    r1 = Request(request_id=1, client="b", arrival_s=0.1, prompt_tokens=4, output_tokens=2,
                 slo=SLO(e2e_s=10.0))
    run.anchor(r0, 100.0)
    assert run.now(100.25) == 0.25
    run.begin_step(0.0, [r0])
    assert run.queue is not None and run.queue.pop(0.0) == r0
    run.step_done(0.2, {0: [4, 1]}, [r0], [])
    run.begin_step(0.6, [r1])  # r0's deadline (0.5) passed before r1 is taken in
    run.step_done(0.7, {0: [0, 1], 1: [4, 1]}, [r1], [(r0, 2)])
    run.dropped(r1, 0.8)
    assert [c[0] for c in pol.calls] == ["arrival", "service", "violation", "arrival",
                                         "service", "service", "finish", "violation", "drop"]
    assert pol.calls[6] == ("finish", (0, False), 0.7)
    report = run.finalize()
    back = read_report(tmp_path / "t.report.json")
    assert report.error is None and back.error is None and math.isnan(back.step_ms_p50)
    assert (back.run_id, back.steps, back.policy_samples, back.steplog_path) == (
        report.run_id, report.steps, report.policy_samples, report.steplog_path)
    assert [s.time_s for s in report.policy_samples] == [0.0]
    assert read_steplog(report.steplog_path or "").run_id == "t"


def test_a_policy_error_is_contained_and_reported(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    pol = _Recorder(fail_on="service")
    run = _engine_run(tmp_path, pol, monkeypatch)
    r0 = Request(request_id=0, client="a", arrival_s=0.0, prompt_tokens=4, output_tokens=2)
    run.begin_step(0.0, [r0])
    assert run.engine_mode
    run.step_done(0.1, {0: [4, 1]}, [r0], [])
    assert not run.engine_mode
    assert run.error is not None and "boom in service" in run.error and "REC" in run.error
    n = len(pol.calls)
    run.step_done(0.2, {0: [0, 1]}, [], [(r0, 2)])  # no longer consulted
    assert len(pol.calls) == n and run.choose_victim([r0], 0.3) is None
    run.finalize()
    assert read_report(tmp_path / "t.report.json").error == run.error


def test_engine_samples_are_sparse_and_survive_the_report(tmp_path: Path) -> None:
    # Three registered clients; "b" sends from 1.5 s on, "idle" never: samples hold the clients
    # heard from by then (indices into the spec's clients), the dense view NaN for the others.
    spec = RunSpec(run_id="s", mode="engine", policy="VTC", out_dir=str(tmp_path),
                   clients=(("a", 1.0), ("b", 1.0), ("idle", 1.0)), sample_every_s=1.0)
    run = EngineRun(spec, str(tmp_path))
    ra = Request(request_id=0, client="a", arrival_s=0.0, prompt_tokens=4, output_tokens=2)
    rb = Request(request_id=1, client="b", arrival_s=1.5, prompt_tokens=4, output_tokens=2)
    run.begin_step(0.0, [ra])
    run.step_done(0.5, {0: [4, 1]}, [ra], [])
    run.begin_step(1.5, [rb])
    run.begin_step(2.0, [])
    report = run.finalize()
    # The 1 s sample is taken at the 1.5 s decision point, after b's arrival (as the simulator).
    assert [(s.time_s, s.clients) for s in report.policy_samples] == [
        (0.0, (0,)), (1.0, (0, 1)), (2.0, (0, 1))]
    dense = dict(report.policy_samples[-1].dense(3))["counter"]
    assert math.isnan(dense[2]) and not math.isnan(dense[1])
    back = read_report(tmp_path / "s.report.json")
    assert back.policy_samples == report.policy_samples


def test_a_report_written_with_dense_samples_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "old.report.json"
    path.write_text(json.dumps({
        "run_id": "old", "mode": "engine", "policy": "VTC", "steps": 1, "busy_s": 0.1,
        "error": None, "steplog_path": None,
        "policy_samples": [[0.0, [["counter", [1.0, None]]]]]}), encoding="utf-8")
    (s,) = read_report(path).policy_samples
    assert s.clients is None and s.values[0][0] == "counter"
    assert s.values[0][1][0] == 1.0 and math.isnan(s.values[0][1][1])
