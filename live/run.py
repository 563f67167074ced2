"""Live runs of a scenario: the same workload, engine limits and result files as the simulator.

`prepare_run` (`exfairs.sim.prepare`, re-exported here) draws the workload for both the simulator's
sweep cells and live runs (scenario, profile, engine knobs, capacity estimate, seed, load factor),
so a live run and a simulated run of one (scenario, seed, load, profile) serve identical requests.
`live_engine_config` turns the simulator's engine knobs into vLLM engine arguments (same
`max_num_seqs`, token budget, block size, KV blocks, context length, chunked prefill), and
`run_live_experiment` drives one experiment through a backend and packages a `RunResult`.

A run that stopped early (Ctrl-C, engine death, drain limit) still yields a valid result: every
request has a record, and the reason is recorded in the result's engine knobs as
``("live_status", "partial: <reason>")`` (``"complete"`` otherwise).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from exfairs import __version__
from exfairs.dataset_spec import dataset_knobs
from exfairs.errors import InputError
from exfairs.live.backend import Backend
from exfairs.live.config import DriverConfig, SchedulingPolicy, VllmEngineConfig
from exfairs.live.driver import LiveDriver, LiveRunOutput, Progress
from exfairs.live.gate import check_live_admission, predictive_limiter
from exfairs.policies import Mode, make_policy, parse_experiment
from exfairs.policies.admission import AdmissionConfig
from exfairs.policies.experiments import Experiment
from exfairs.records import Outcome, RequestRecord
from exfairs.results import RunInfo, RunResult, git_revision, utc_now
from exfairs.sim.config import EngineConfig
from exfairs.sim.prepare import PreparedRun as PreparedRun
from exfairs.sim.prepare import prepare_run as prepare_run

_log = logging.getLogger(__name__)

Scalar = int | float | str | bool
Knobs = tuple[tuple[str, Scalar], ...]


def scheduling_policy_for(experiments: list[Experiment]) -> SchedulingPolicy:
    """The vLLM scheduling policy one engine needs to serve all `experiments`.

    Priority-mode experiments need ``"priority"``. Gate-mode experiments submit everything with
    priority 0, which a priority engine orders by arrival exactly as ``"fcfs"`` would, so one
    engine serves a mixed list (the simulator is given the same policy, see `validate`).
    """
    return "priority" if any(e.mode is Mode.PRIORITY for e in experiments) else "fcfs"


def live_engine_config(prepared: PreparedRun, model: str, *,
                       scheduling_policy: SchedulingPolicy, **engine_args: Any
                       ) -> VllmEngineConfig:
    """vLLM engine arguments matching the simulated engine's limits; `engine_args` adds or
    overrides vLLM arguments (e.g. ``load_format="dummy"``, ``dtype="float32"``)."""
    return VllmEngineConfig.from_knobs(model, prepared.engine,
                                       **{"scheduling_policy": scheduling_policy, **engine_args})


def sim_engine_for(prepared: PreparedRun, scheduling_policy: SchedulingPolicy) -> EngineConfig:
    """The simulator's engine with the live engine's scheduling policy."""
    return replace(prepared.engine, scheduling_policy=scheduling_policy)


def result_file_name(prepared: PreparedRun, experiment: str, seed: int, backend: str = "live"
                     ) -> str:
    """``<scenario>__<experiment>__load<L>__seed<S>__<backend>.json``."""
    return (f"{prepared.scenario.name}__{experiment}__load{prepared.load_factor:g}"
            f"__seed{seed}__{backend}.json")


def warmup(backend: Backend, prepared: PreparedRun, *, max_batch: int | None = None,
           output_tokens: int = 4) -> Callable[[], Any]:
    """A coroutine factory that serves a few batches of the workload's prompt lengths so that
    vLLM's per-shape set-up cost (docs/design.md §9) is paid before measuring."""
    from exfairs.live.driver import prompt_token_ids
    from exfairs.records import Request

    reqs = prepared.workload.requests
    limit = max_batch or prepared.engine.max_num_seqs

    async def go() -> None:
        if not reqs:
            return
        sizes = sorted({1, 2, max(1, limit // 2), limit})
        rid = 10**9
        for size in sizes:
            batch = [reqs[(i * 7919) % len(reqs)] for i in range(size)]
            tasks = []
            for r in batch:
                rid += 1
                req = Request(request_id=rid, client=r.client, arrival_s=0.0,
                              prompt_tokens=r.prompt_tokens, output_tokens=output_tokens)
                ids = prompt_token_ids(prepared.workload.seed + 1, req, 4096)

                async def consume(req: Request = req, ids: list[int] = ids) -> None:
                    async for _ in backend.stream(req, ids, 0):
                        pass

                tasks.append(asyncio.ensure_future(consume()))
            await asyncio.gather(*tasks)

    return go


def check_text_prompts(prepared: PreparedRun, backend: Backend) -> None:
    """Refuse, before any load, a workload of text prompts on a backend that cannot encode text
    (an in-process engine without a tokenizer, such as the validation model)."""
    if getattr(backend, "accepts_text", True):
        return
    if any(r.prompt_text is not None for r in prepared.workload.requests):
        raise InputError("the scenario's dataset sends text prompts, but this engine has no "
                         "tokenizer (skip_tokenizer_init): serve a model with a tokenizer "
                         "(e.g. the 'tiny' model) or a scenario without a dataset",
                         field="dataset", value=prepared.scenario.dataset.path
                         if prepared.scenario.dataset is not None else None)


async def run_live_experiment(
    prepared: PreparedRun,
    experiment: str | Experiment,
    backend: Backend,
    *,
    seed: int,
    driver_config: DriverConfig | None = None,
    policy_params: Mapping[str, Any] | None = None,
    progress: Callable[[Progress], None] | None = None,
    on_driver: Callable[[LiveDriver], None] | None = None,
    engine_knobs: Knobs = (),
    steplog_dir: str | Path = "steplogs",
    steplog: bool = True,
    policy_modules: tuple[str, ...] = (),
    admission: AdmissionConfig | None = None,
) -> tuple[RunResult, LiveRunOutput]:
    """Run one experiment live and return its result (metrics over the scenario's window) and
    the raw driver output. `on_driver` receives the driver before it starts (e.g. so a SIGINT
    handler can call its `request_stop`).

    The run is opened and closed in the scheduler plug-in (`exfairs.live.plugin_client`): it
    writes the step log and report into `steplog_dir` (`steplog` False: counts only), and, for
    ENGINE_* experiments, runs the policy inside the engine (`policy_modules` are imported there
    first, for user policies). The result's engine knobs name the step log
    (``steplog_path``); its policy samples are the engine's in engine mode. A run whose policy
    failed in the engine (or an engine-mode run without the plug-in) has
    ``live_status = "failed: <why>"``; its records are all there. `admission` adds SLO-aware
    admission, its predictive limit from the prepared profile's cost model: at the gate in gate
    mode (`exfairs.live.gate`), inside the engine in engine mode (the plug-in, through the run
    spec; requests it rejects are recorded as REJECTED from its report); an active one is
    recorded as the knob ``admission``."""
    from exfairs.live.plugin_client import close_run, new_run_spec, open_run
    from exfairs.metrics import compute_metrics

    exp = experiment if isinstance(experiment, Experiment) else parse_experiment(experiment)
    check_text_prompts(prepared, backend)
    params = dict(policy_params or {})
    policy = make_policy(exp.policy, params)
    cfg = driver_config or DriverConfig()
    adm = admission if admission is not None else AdmissionConfig()
    check_live_admission(adm, exp.mode)
    # Engine mode: the plug-in applies the admission at schedule(), the driver none.
    engine_adm = exp.mode is Mode.ENGINE and adm.active
    spec = new_run_spec(
        f"{prepared.scenario.name}__{exp.name}__seed{seed}", exp.mode.value, exp.policy,
        steplog_dir, policy_params=params,
        clients=tuple((c.name, c.weight) for c in prepared.workload.clients),
        sample_every_s=cfg.sample_every_s, steplog=steplog, policy_modules=policy_modules,
        admission=adm.label if engine_adm else "",
        admission_model=_admission_model(prepared, backend) if engine_adm
        and adm.limit != "off" else None)
    limit = cfg.max_inflight or backend.max_num_seqs or 256  # the driver's own rule
    gate_adm = adm if exp.mode is Mode.GATE else AdmissionConfig()
    limiter = predictive_limiter(gate_adm, prepared.profile,
                                 prepared.engine.max_num_batched_tokens, limit,
                                 kv_tokens=prepared.engine.kv_capacity_tokens)
    driver = LiveDriver(prepared.workload, policy, exp.mode, backend, cfg,
                        progress=progress, run_tag=spec.run_id, admission=gate_adm,
                        limiter=limiter)
    if on_driver is not None:
        on_driver(driver)
    await open_run(backend, spec)
    t0 = time.perf_counter()
    out = await driver.run()
    wall = time.perf_counter() - t0
    plugin = await close_run(backend, spec)
    if plugin.report is not None and plugin.report.rejected:
        out = replace(out, records=_rejected_records(out.records, plugin.report.rejected))
    metrics = compute_metrics(out.records, prepared.workload.clients, window=prepared.window)
    status = "complete" if out.stopped is None else f"partial: {out.stopped}"
    if plugin.error is not None:
        status = f"failed: {plugin.error}"
        _log.error("%s: %s", exp.name, plugin.error)
    # run_zero_mono: the run clock's zero on the host's monotonic clock, which the step log uses
    # (replay maps logged steps onto the run clock with it).
    knobs: list[tuple[str, Scalar]] = [("live_status", status),
                                       ("max_inflight", driver.max_inflight),
                                       ("run_zero_mono", driver.start_monotonic)]
    if adm.active:
        knobs.append(("admission", adm.label))
    if out.clock_check is not None:
        knobs += [(f"clock_{k}", v) for k, v in asdict(out.clock_check).items()]
    knobs += list(plugin.knobs())
    knobs += list(engine_knobs) or list(backend.knobs())
    knobs += list(dataset_knobs(prepared.scenario.dataset))
    samples = out.policy_samples
    if exp.mode is Mode.ENGINE:
        samples = plugin.report.policy_samples if plugin.report is not None else ()
    info = RunInfo(
        backend="live", scenario=prepared.scenario.name, experiment=exp.name, policy=exp.policy,
        mode=exp.mode.value, seed=seed, load_factor=prepared.load_factor,
        profile_id=prepared.profile.id, engine_knobs=tuple(knobs),
        policy_params=tuple(sorted((k, v) for k, v in params.items()
                                   if isinstance(v, (int, float, str, bool)))),
        package_version=__version__, git_revision=git_revision(), created_utc=utc_now(),
        wall_time_s=wall,
    )
    result = RunResult(info=info, clients=prepared.workload.clients, records=out.records,
                       metrics=metrics, policy_samples=samples)
    return result, out


def _admission_model(prepared: PreparedRun, backend: Backend) -> dict[str, object]:
    """`RunSpec.admission_model`: the prepared profile's cost model (its measurements left
    out: the limit needs only the coefficients) and the engine's limits."""
    doc = prepared.profile.to_json()
    doc["measurements"] = []
    doc["residuals"] = None
    return {"profile": doc,
            "max_num_batched_tokens": prepared.engine.max_num_batched_tokens,
            "max_inflight": backend.max_num_seqs or prepared.engine.max_num_seqs}


def _rejected_records(records: tuple[RequestRecord, ...],
                      rejected: tuple[tuple[int, float], ...]) -> tuple[RequestRecord, ...]:
    """`records` with those the engine's admission rejected (request id, run-clock time;
    their streams ended without tokens, reason abort) recorded as the simulator does: outcome
    REJECTED, `finish_s` the time of the rejection, nothing served."""
    when = dict(rejected)
    out = []
    for r in records:
        t = when.get(r.request_id)
        if t is None or r.generated_tokens:
            out.append(r)  # a request that got tokens was not rejected (cannot happen)
            continue
        out.append(RequestRecord(
            request_id=r.request_id, client=r.client, arrival_s=r.arrival_s,
            prompt_tokens=r.prompt_tokens, output_tokens=r.output_tokens, slo=r.slo,
            outcome=Outcome.REJECTED, finish_s=t,
            error="rejected by the engine's admission: it could no longer meet its deadline"))
    return tuple(out)


def default_out_dir(prepared: PreparedRun, kind: str) -> Path:
    """``results/live-<kind>/<scenario>``."""
    return Path("results") / f"live-{kind}" / prepared.scenario.name
