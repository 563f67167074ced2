"""`exfairs-live`: run scenarios against a real vLLM engine, and validate the simulator against it.

    exfairs-live run SCENARIO -e QUEUE_VTC -e ExFairS --model DIR [--profile ID|FILE] [...]
    exfairs-live run SCENARIO -e VTC --vllm-url http://host:8000 [--api-key-env VAR]
    exfairs-live validate SCENARIO -e QUEUE_FCFS -e QUEUE_VTC --model DIR --profile cpu-...

With ``--model`` ExFairS starts vLLM's AsyncLLM in this process (one engine per scheduling policy
the experiments need: gate experiments run on an FCFS engine, priority ones on a priority engine,
as in the simulator; ENGINE_* experiments run on the FCFS engine, where the ExFairS scheduler
plug-in lets the policy order the queue); with ``--vllm-url`` it talks to a running
OpenAI-compatible server (start it with the same knobs, ``--scheduling-policy priority`` for
priority experiments, and ``--scheduler-cls exfairs.live.engine_plugin.ExfairsScheduler`` for
ENGINE_* experiments and step logs: docs/plugin.md). Every run's step log lands in OUT/steplogs/.

The API key is read from ``--api-key`` or, better (it stays out of the process list), from the
environment variable named by ``--api-key-env`` (default ``EXFAIRS_API_KEY``); it is never logged
or written. Before any load goes to a server, a preflight (`exfairs.live.preflight`) asks it
what it accepts and refuses experiments it cannot run. Each run reports its finished / failed /
timed-out / aborted counts. Exit codes: 0 ok, 1 the engine died, a run stopped early or some
request failed server-side, 2 bad input (including a preflight refusal), 130 interrupted (Ctrl-C;
the current run's partial results are written first).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from exfairs.cliutil import run_command
from exfairs.dirlock import locked_dir
from exfairs.errors import InputError
from exfairs.live.cli_args import _SHARED_KNOBS, _build_parser
from exfairs.live.cli_session import _run_live, _Session, outcome_counts
from exfairs.paths import check_named_input, check_output_file, check_results_dir
from exfairs.rng import MAX_SEED

# Importable from here as before the split.
__all__ = ["main", "outcome_counts"]


def _policy_params(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    from exfairs.policies.params import parse_param_args

    return parse_param_args(items)


@dataclasses.dataclass(slots=True)
class _Plan:
    prepared: Any
    experiments: list[Any]
    engine_args: dict[str, Any]
    sampling: Any
    driver: Any
    http: Any
    model: str | None
    out_dir: Path
    policy_params: dict[str, dict[str, Any]]
    warmup: bool
    admission: Any = None  # AdmissionConfig; None: off


def _plan(ns: argparse.Namespace, kind: str) -> _Plan:
    from exfairs.live.config import DriverConfig, HttpConfig, SamplingConfig
    from exfairs.live.run import default_out_dir, prepare_run
    from exfairs.policies import Mode, parse_experiment

    if getattr(ns, "replay", None) is None and (ns.model is None) == (ns.vllm_url is None):
        raise InputError("give exactly one of --model (start vLLM here) or --vllm-url (a running "
                         "server)", field="--model/--vllm-url", value=None)
    experiments = [parse_experiment(e) for e in (ns.experiments or
                                                 ("QUEUE_FCFS", "QUEUE_VTC", "QUEUE_ExFairS"))]
    seen: set[str] = set()
    for e in experiments:
        if e.name in seen:
            raise InputError("experiment listed twice", field="--experiment", value=e.name)
        seen.add(e.name)
    knobs = {k[len("engine__"):]: v for k, v in vars(ns).items()
             if k.startswith("engine__") and v is not None}
    sim_overrides = {_SHARED_KNOBS[k]: knobs.pop(k) for k in list(knobs) if k in _SHARED_KNOBS}
    if ns.max_inflight is not None and any(e.mode is Mode.PRIORITY for e in experiments):
        raise InputError("the concurrency limit is the gate's: priority experiments submit "
                         "every request at arrival (the engine's max_num_seqs bounds them)",
                         field="--max-concurrency", value=ns.max_inflight)
    check_named_input(ns.profile, suffix=".json", field="--profile", what="profile file")
    if not 0 <= ns.seed <= MAX_SEED:  # as the simulator's sweeps: results store an int64
        raise InputError(f"must be in [0, {MAX_SEED}]", field="--seed", value=ns.seed)
    if ns.load is not None and ns.request_rate is not None:
        raise InputError("give --load or --request-rate, not both", field="--request-rate",
                         value=ns.request_rate)
    load = 1.0 if ns.load is None else ns.load
    prepared = prepare_run(ns.scenario, ns.seed, load_factor=load, profile=ns.profile,
                           engine_overrides=sim_overrides, duration_s=ns.duration,
                           request_rate_rps=ns.request_rate, tokenizer=ns.tokenizer,
                           num_prompts=ns.num_prompts)
    sampling = SamplingConfig(temperature=ns.temperature, top_p=ns.top_p, top_k=ns.top_k,
                              repetition_penalty=ns.repetition_penalty)
    driver = DriverConfig(
        max_inflight=ns.max_inflight,
        request_timeout_s=ns.request_timeout if ns.request_timeout is not None else float("inf"),
        drain_timeout_s=ns.drain_timeout)
    http = None
    if ns.vllm_url is not None:
        key = ns.api_key or os.environ.get(ns.api_key_env) or None
        http = HttpConfig(url=ns.vllm_url, api_key=key, model=ns.served_model,
                          connect_timeout_s=ns.connect_timeout, read_timeout_s=ns.read_timeout,
                          endpoint=ns.endpoint)
    elif ns.endpoint != "completions":
        raise InputError("applies to --vllm-url only", field="--endpoint", value=ns.endpoint)
    out = ns.out if ns.out is not None else default_out_dir(prepared, kind)
    params = _policy_params(ns.policy_param)
    admission = _admission(getattr(ns, "admission", None), experiments)
    _check_before_start(ns, prepared, experiments, params, out)
    return _Plan(prepared=prepared, experiments=experiments, engine_args=knobs,
                 sampling=sampling, driver=driver, http=http, model=ns.model, out_dir=out,
                 policy_params=params, warmup=ns.warmup, admission=admission)


def _admission(spec: str | None, experiments: Sequence[Any]) -> Any:
    """``--admission SPEC`` as an AdmissionConfig (None: not given), checked against every
    experiment's mode; InputError naming ``--admission``."""
    from exfairs.live.gate import check_live_admission
    from exfairs.policies.admission import AdmissionConfig

    if spec is None:
        return None
    try:
        adm = AdmissionConfig.parse(spec)
        for e in experiments:
            try:
                check_live_admission(adm, e.mode)
            except InputError as exc:
                raise InputError(f"{e.name}: {exc.detail}", field=exc.field,
                                 value=exc.value) from None
    except InputError as exc:
        raise exc.with_source("--admission") from None
    return adm


def _check_before_start(ns: argparse.Namespace, prepared: Any, experiments: list[Any],
                        params: dict[str, dict[str, Any]], out: Path) -> None:
    """What can be checked before an engine starts: output places, policy parameters (named
    POLICY.PARAM) and whether the run's results fit in memory (exfairs.preflight)."""
    from exfairs.policies.params import check_params_for
    from exfairs.preflight import check_run_fits, estimate_run_memory

    check_results_dir(out, dirs=("plots", "steplogs"))
    if getattr(ns, "report", None) is not None:
        check_output_file(ns.report, field="--report")
    check_params_for([e.policy for e in experiments], params)
    cost = prepared.profile.cost_model(prepared.engine.max_num_batched_tokens)
    check_run_fits(estimate_run_memory(prepared.workload,
                                       min_step_s=cost.step_ms(0, 0, 1, 1) / 1e3),
                   what=f"scenario {prepared.scenario.name}")


def _sim_results(plan: _Plan, loop_knobs: dict[str, Any] | None = None) -> list[Any]:
    from exfairs import __version__
    from exfairs.metrics import compute_metrics
    from exfairs.results import RunInfo, RunResult, git_revision, utc_now
    from exfairs.sim.runner import simulate

    prepared = plan.prepared
    out: list[Any] = []
    for exp in plan.experiments:
        t0 = time.perf_counter()
        engine = dataclasses.replace(prepared.engine, **(loop_knobs or {}))
        sim = simulate(prepared.workload, exp, prepared.profile, engine=engine,
                       policy_params=plan.policy_params.get(exp.policy.upper(), {}),
                       max_inflight=plan.driver.max_inflight, admission=plan.admission)
        metrics = compute_metrics(sim.records, prepared.workload.clients, window=prepared.window)
        used = sim.engine if sim.engine is not None else prepared.engine
        knobs = tuple(sorted((k, v) for k, v in dataclasses.asdict(used).items()
                             if isinstance(v, (int, float, str, bool))))
        if plan.admission is not None and plan.admission.active:
            knobs += (("admission", plan.admission.label),)
        params = plan.policy_params.get(exp.policy.upper(), {})
        info = RunInfo(
            backend="sim", scenario=prepared.scenario.name, experiment=exp.name,
            policy=exp.policy, mode=exp.mode.value, seed=prepared.workload.seed,
            load_factor=prepared.load_factor, profile_id=prepared.profile.id,
            engine_knobs=knobs, policy_params=tuple(sorted(params.items())),
            package_version=__version__, git_revision=git_revision(), created_utc=utc_now(),
            wall_time_s=time.perf_counter() - t0)
        out.append(RunResult(info=info, clients=prepared.workload.clients, records=sim.records,
                             metrics=metrics, policy_samples=sim.policy_samples))
    return out


def _print_summary(results: list[Any], out_dir: Path, plots: bool,
                   formats: Sequence[str] | None = None) -> None:
    from exfairs.plots import DEFAULT_FORMATS, plot_fairness, plot_performance
    from exfairs.summary import format_table, summarize, write_summary_csv

    if not results:
        return
    rows = summarize(results)
    write_summary_csv(rows, out_dir / "summary.csv")
    sys.stdout.write(format_table(rows) + "\n")
    if plots:
        fmt = tuple(formats or DEFAULT_FORMATS)
        made = (plot_performance(results, out_dir / "plots", formats=fmt)
                + plot_fairness(results, out_dir / "plots", formats=fmt))
        sys.stdout.write(f"{len(made)} plot files in {out_dir / 'plots'}/\n")


def _describe(plan: _Plan) -> str:
    p = plan.prepared
    n = len(p.workload.requests)
    target = plan.http.base_url if plan.http is not None else plan.model
    return (f"exfairs-live: scenario {p.scenario.name}: {n} requests over "
            f"{p.workload.duration_s:g}s (load {p.load_factor:g} × capacity "
            f"{p.capacity_rps:.2f} req/s on profile {p.profile.id}); target {target}; "
            f"experiments {', '.join(e.name for e in plan.experiments)}\n")


def _apply_threads(ns: argparse.Namespace) -> None:
    # The engine core is a spawned process: it reads OMP_NUM_THREADS when it imports torch.
    if ns.omp_threads is not None:
        if not 1 <= ns.omp_threads <= 4096:
            raise InputError("must be in [1, 4096]", field="--omp-threads", value=ns.omp_threads)
        os.environ["OMP_NUM_THREADS"] = str(ns.omp_threads)


def _cmd_run(ns: argparse.Namespace) -> int:
    _apply_threads(ns)
    plan = _plan(ns, "run")
    with locked_dir(plan.out_dir):
        return _run_planned(ns, plan)


def _run_planned(ns: argparse.Namespace, plan: _Plan) -> int:
    sys.stderr.write(_describe(plan))
    session = _Session()
    results = asyncio.run(_run_live(plan, session))
    _print_summary(results, plan.out_dir, plots=ns.plots, formats=ns.plot_formats)
    sys.stdout.write(f"{len(results)} live results in {plan.out_dir}/\n")
    return _exit_code(session, results)


def _exit_code(session: _Session, results: list[Any]) -> int:
    if session.interrupted:
        return 130
    if session.engine_dead:
        return 1
    from exfairs.records import Outcome

    partial = [r for r in results
               if dict(r.info.engine_knobs).get("live_status", "complete") != "complete"]
    # A request the server failed is a broken run, not a slow one: the exit code says so.
    failed = any(rec.outcome is Outcome.FAILED for r in results for rec in r.records)
    return 1 if partial or failed else 0


def _cmd_validate(ns: argparse.Namespace) -> int:
    _apply_threads(ns)
    if ns.replay is not None:
        if ns.out is None:
            ns.out = ns.replay
        plan = _plan(ns, "validate")
        return _replay(ns, plan)
    from exfairs.live.machine import check_machine

    plan = _plan(ns, "validate")  # bad input is reported before the machine's state
    notes = check_machine(ns.max_load, ns.allow_busy, ns.cpus)
    for n in notes:
        sys.stderr.write(f"exfairs-live: {n}\n")
    with locked_dir(plan.out_dir):
        return _validate_planned(ns, plan, notes)


def _replay(ns: argparse.Namespace, plan: _Plan) -> int:
    import json
    from dataclasses import asdict

    from exfairs.atomic import atomic_write_text
    from exfairs.live.replay import replay_live_run
    from exfairs.live.run import result_file_name
    from exfairs.live.steplog import read_steplog
    from exfairs.results import read_result

    prepared = plan.prepared
    reports = []
    for exp in plan.experiments:
        path = ns.replay / result_file_name(prepared, exp.name, prepared.workload.seed)
        if not path.is_file():
            raise InputError("no live result of this experiment in the replay directory",
                             field="--replay", value=str(path))
        live = read_result(path)
        logged = Path(str(dict(live.info.engine_knobs).get("steplog_path", "")))
        if not logged.is_file():  # the run directory may have moved
            logged = ns.replay / "steplogs" / logged.name
        if not logged.is_file():
            raise InputError("the live result's step log is missing", field="--replay",
                             value=str(logged))
        try:
            rep = replay_live_run(prepared, live, read_steplog(logged),
                                  policy_params=plan.policy_params.get(exp.policy.upper(), {}),
                                  max_inflight=plan.driver.max_inflight,
                                  hook_order=ns.hook_order or "stream")
        except ValueError as exc:
            raise InputError(str(exc), field="--replay", value=str(path)) from exc
        reports.append(rep)
        sys.stdout.write(rep.summary() + "\n")
    dest = plan.out_dir / "replay.json"
    atomic_write_text(dest, json.dumps([dict(asdict(r), match_fraction=r.match_fraction,
                                             mean_ttft_error=r.mean_ttft_error,
                                             mean_e2e_error=r.mean_e2e_error,
                                             meets_targets=r.meets_targets)
                                        for r in reports], indent=1) + "\n")
    sys.stdout.write(f"replay report: {dest}\n")
    return 0 if all(r.meets_targets for r in reports) else 1


def _validate_planned(ns: argparse.Namespace, plan: _Plan, notes: Sequence[str] = ()) -> int:
    from exfairs.live.validate import compare_results, format_report, plot_validation, write_report
    from exfairs.results import write_result

    sys.stderr.write(_describe(plan))
    sys.stderr.write("exfairs-live: simulating...\n")
    # Unset options keep the simulator's defaults (the profile's submit latency, vLLM 0.32's
    # admission and the live driver's crediting and hook order: sim/config.py).
    loop = {k: v for k, v in (("submit_latency_s", ns.submit_latency),
                              ("prompt_credit", ns.prompt_credit),
                              ("reserve_full_prompt", ns.reserve_full_prompt),
                              ("hook_order", ns.hook_order)) if v is not None}
    sims = _sim_results(plan, loop)
    for r in sims:
        write_result(r, plan.out_dir / f"{r.info.scenario}__{r.info.experiment}__load"
                                       f"{r.info.load_factor:g}__seed{r.info.seed}__sim.json")
    session = _Session()
    lives = asyncio.run(_run_live(plan, session))
    by_exp = {r.info.experiment: r for r in lives}
    pairs = [(s, by_exp[s.info.experiment]) for s in sims if s.info.experiment in by_exp]
    if not pairs:
        sys.stderr.write("exfairs-live: no live run finished; no report\n")
        return _exit_code(session, lives) or 1
    report = compare_results(pairs, notes=notes)
    path = ns.report if ns.report is not None else plan.out_dir / "validation.json"
    write_report(report, path)
    sys.stdout.write(format_report(report) + "\n")
    if ns.plots:
        made = plot_validation(report, plan.out_dir / "plots")
        _print_summary([*sims, *lives], plan.out_dir, plots=True, formats=ns.plot_formats)
        sys.stdout.write(f"validation plots: {', '.join(str(p) for p in made)}\n")
    sys.stdout.write(f"report: {path}\n")
    return _exit_code(session, lives)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `exfairs-live`; returns the exit code."""
    from exfairs.live.backend import BackendError

    parser = _build_parser()
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * min(ns.verbose, 2),
                        format="%(levelname)s %(name)s: %(message)s")
    return run_command("exfairs-live",
                       lambda: _cmd_run(ns) if ns.command == "run" else _cmd_validate(ns),
                       also={ImportError: 2, BackendError: 1})


if __name__ == "__main__":
    raise SystemExit(main())
