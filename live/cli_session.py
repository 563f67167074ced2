"""`exfairs-live`'s event loop: every planned experiment against a live engine (one engine per
scheduling policy), with Ctrl-C handling, a progress line, the server preflight and outcome counts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from exfairs.live.config import SchedulingPolicy

if TYPE_CHECKING:
    from exfairs.live.cli import _Plan


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
                    steplog_dir=plan.out_dir / "steplogs", admission=plan.admission)
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
