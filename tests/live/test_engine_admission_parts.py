"""Engine-mode admission in the scheduler plug-in, without an engine (issue 15): the run spec
carries the admission, `EngineRun` builds the simulator's `EngineAdmission` from it, and the
plug-in's waiting queue refuses hopeless requests and holds the head back under the predictive
limit, reporting what it rejected."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from exfairs.calibration.profile import load_profile
from exfairs.errors import InputError
from exfairs.live.engine_run import EngineRun, read_report
from exfairs.live.gate import predictive_limiter
from exfairs.live.plugin_protocol import RunSpec
from exfairs.policies.admission import AdmissionConfig
from exfairs.records import SLO, Request

PROFILE = "cpu-tiny-llama"


def _model() -> dict[str, object]:
    doc = load_profile(PROFILE).to_json()
    doc["measurements"] = []
    return {"profile": doc, "max_num_batched_tokens": 512, "max_inflight": 8}


def _spec(tmp_path: Path, admission: str, model: bool = False) -> RunSpec:
    return RunSpec(run_id="adm", mode="engine", policy="FCFS", out_dir=str(tmp_path),
                   clients=(("a", 1.0), ("b", 1.0)), admission=admission,
                   admission_model=_model() if model else None)


def test_run_spec_carries_the_admission(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "hopeless=reject,limit=predictive", model=True)
    back = RunSpec.from_json(spec.to_json())
    assert back == spec
    assert RunSpec.from_json(RunSpec(run_id="x", mode="gate", policy="FCFS",
                                     out_dir="/o").to_json()).admission == ""


def test_engine_run_builds_the_admission_from_the_spec(tmp_path: Path) -> None:
    run = EngineRun(_spec(tmp_path, "hopeless=reject"), str(tmp_path))
    assert run.admission is not None and run.admission.reject and run.admission.limiter is None
    run = EngineRun(_spec(tmp_path, "limit=predictive", model=True), str(tmp_path))
    assert run.admission is not None and run.admission.limiter is not None
    assert EngineRun(_spec(tmp_path, "hopeless=demote"), str(tmp_path)).admission is None
    assert EngineRun(_spec(tmp_path, ""), str(tmp_path)).admission is None
    with pytest.raises(InputError) as info:  # the limit needs the cost model
        EngineRun(_spec(tmp_path, "limit=predictive"), str(tmp_path))
    assert info.value.field == "admission_model"


def _queue(run: EngineRun) -> tuple[Any, dict[str, Request]]:
    pytest.importorskip("vllm")
    from exfairs.live.engine_queue import PluginWaitingQueue
    from exfairs.live.inprocess import import_vllm

    rq = import_vllm("vllm.v1.core.sched.request_queue")
    tags: dict[str, Request] = {}
    q = PluginWaitingQueue(rq.create_request_queue(rq.SchedulingPolicy.FCFS),
                           lambda v: tags.get(v.request_id))
    q.run = run
    return q, tags


def _vreq(r: Request, tags: dict[str, Request]) -> Any:
    v = SimpleNamespace(request_id=f"v{r.request_id}", arrival_time=r.arrival_s)
    tags[v.request_id] = r
    return v


def test_the_queue_rejects_hopeless_requests_never_admitted(tmp_path: Path) -> None:
    run = EngineRun(_spec(tmp_path, "hopeless=reject"), str(tmp_path))
    q, tags = _queue(run)
    ok = Request(request_id=0, client="a", arrival_s=0.0, prompt_tokens=8, output_tokens=4,
                 slo=SLO(e2e_s=10.0), unloaded_e2e_s=0.5)
    late = Request(request_id=1, client="b", arrival_s=0.0, prompt_tokens=8, output_tokens=4,
                   slo=SLO(e2e_s=1.0), unloaded_e2e_s=0.5)
    v_ok, v_late = _vreq(ok, tags), _vreq(late, tags)
    for v in (v_ok, v_late):
        q.add_request(v)
    q.ingest(0.2)
    assert q.admission_step() == "admit" and not q.refused  # both can still make it
    q.ingest(0.6)  # 0.6 + 0.5 > 1.0: request 1 is hopeless
    assert q.admission_step() == "admit"
    assert q.refused == [v_late] and run.rejected == [(1, 0.6)]
    assert len(q) == 1 and q.pop_request() is v_ok
    run.step_done(0.7, {}, [], [(ok, 4)])
    assert run.admission is not None and run.admission.inflight == 0
    report = run.finalize()
    assert report.rejected == ((1, 0.6),)
    assert read_report(tmp_path / "adm.report.json").rejected == ((1, 0.6),)


def test_the_queue_holds_the_head_back_under_the_predictive_limit(tmp_path: Path) -> None:
    lim = predictive_limiter(AdmissionConfig(limit="predictive"), load_profile(PROFILE), 512, 8)
    assert lim is not None
    s1, s2 = lim.mean_step_s(1, 16.0, 8.0), lim.mean_step_s(2, 16.0, 8.0)
    assert s2 > s1
    tpot = 0.99 * s2 / 0.9  # one request alone keeps it; a second one in flight would not
    run = EngineRun(_spec(tmp_path, "limit=predictive", model=True), str(tmp_path))
    q, tags = _queue(run)
    reqs = [Request(request_id=i, client="ab"[i], arrival_s=0.0, prompt_tokens=16,
                    output_tokens=8, slo=SLO(tpot_s=tpot)) for i in range(2)]
    vs = [_vreq(r, tags) for r in reqs]
    for v in vs:
        q.add_request(v)
    held: list[int] = []
    q.on_block = lambda: held.append(1)
    q.ingest(0.0)
    assert q.admission_step() == "admit"  # an empty engine always admits
    assert q.pop_request() is vs[0]
    assert held == [1]  # the next head waits while the first runs
    q.ingest(0.1)
    assert q.admission_step() == "wait"
    run.step_done(0.5, {}, [], [(reqs[0], 8)])
    q.ingest(0.5)
    assert q.admission_step() == "admit"
    assert q.pop_request() is vs[1] and not run.rejected
