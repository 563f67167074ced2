"""Sweeps: the grid scenarios × experiments × seeds × load factors, run cell by cell in parallel.

Each cell is one simulation with its own results file, named by a hash of the cell's full
configuration (scenario, experiment, seed, load, profile, engine knobs, policy parameters,
admission options, a policy-sample layout other than sparse and the package version), so a sweep
rerun into the same directory skips cells
already done and recomputes missing or unreadable ones. Cells are independent and deterministic:
results do not depend on how many workers ran them or in which order.

This module runs a sweep (`run_sweep`: resume, locking, process or Dask executors, input checks);
the grid and cell keys are `exfairs.sim.sweep_grid`'s, sweep files `exfairs.sim.sweep_file`'s,
one cell's simulation `exfairs.sim.sweep_cell`'s. Their names are importable from here too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exfairs.atomic import remove_stale_temps
from exfairs.dirlock import locked_dir
from exfairs.errors import InputError
from exfairs.paths import check_named_input, check_output_dir
from exfairs.sim.sweep_cell import (
    GATE_KNOB,
    CellOutcome,
    _light,
    _prepare,
    compute_cell,
    is_done,
    run_cell,
    split_gate_knob,
)
from exfairs.sim.sweep_file import admission_from_table, bundled_sweeps, load_sweep, sweep_from_toml
from exfairs.sim.sweep_grid import Cell, Knobs, Scalar, SweepConfig, override

if TYPE_CHECKING:
    from exfairs.results import RunResult

# The grid, file and cell modules' names stay importable from here, as before the split.
__all__ = [
    "GATE_KNOB",
    "Cell",
    "CellOutcome",
    "Knobs",
    "Scalar",
    "SweepConfig",
    "SweepRun",
    "_prepare",
    "admission_from_table",
    "bundled_sweeps",
    "compute_cell",
    "is_done",
    "load_sweep",
    "override",
    "run_cell",
    "run_sweep",
    "split_gate_knob",
    "sweep_from_toml",
    "validate_inputs",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SweepRun:
    """The finished sweep: one outcome per cell, in grid order."""

    config: SweepConfig
    out_dir: Path
    outcomes: tuple[CellOutcome, ...] = field(default=())

    def light_results(self) -> list[RunResult]:
        """Every cell's result without records (read from disk for reused cells)."""
        from exfairs.results import read_result

        out: list[RunResult] = []
        for o in self.outcomes:
            light = o.light
            if light is None:
                light = replace(read_result(o.path, records=False), policy_samples=())
            out.append(light)
        return out


def run_sweep(
    config: SweepConfig,
    out_dir: Path,
    *,
    jobs: int = 1,
    force: bool = False,
    progress: Callable[[int, int, CellOutcome], None] | None = None,
    executor: str = "process",
    scheduler: str | None = None,
    on_done: Callable[[SweepRun], None] | None = None,
) -> SweepRun:
    """Run every cell not already done (all with `force`), `jobs` processes at a time.

    `on_done` is called with the finished run while the directory is still locked: whatever
    it writes there (summaries, plots) cannot meet another sweep's cleanup.

    `executor` is ``"process"`` (a local process pool of `jobs` workers) or ``"dask"``: the cells
    run on the Dask cluster at `scheduler` (``tcp://host:port``), or on a `LocalCluster` of `jobs`
    single-threaded workers when no scheduler is given; results come back to this process, which
    writes the files, so workers need no shared file system.

    Interrupting (Ctrl-C) keeps every cell finished so far: each is its own file, written
    atomically. The directory is locked for the run (exfairs.dirlock): a second sweep into it
    is refused with InputError; temporary files left by a killed run are removed, and any cell
    whose file does not load is recomputed.
    """
    if executor not in ("process", "dask"):
        raise InputError("must be 'process' or 'dask'", field="executor", value=executor)
    cells = config.cells()
    # Every input is checked before the output directory is touched, so bad input leaves nothing
    # behind and fails at once, not in a worker after other cells were written.
    validate_inputs(config, jobs)
    check_output_dir(out_dir)
    if executor == "dask":
        _dask_api()
        if scheduler is not None:
            _probe_scheduler(scheduler)
    with locked_dir(out_dir):
        # Holding the lock, no other exfairs process writes here: temporary files are a killed
        # run's leftovers.
        for stale in remove_stale_temps(out_dir):
            _log.info("removed %s, left by an interrupted run", stale)
        run = _run_locked(config, cells, out_dir, jobs, force, progress, executor, scheduler)
        if on_done is not None:
            on_done(run)
        return run


def _run_locked(config: SweepConfig, cells: list[Cell], out_dir: Path, jobs: int, force: bool,
                progress: Callable[[int, int, CellOutcome], None] | None, executor: str,
                scheduler: str | None) -> SweepRun:
    from exfairs.resume_index import ResumeIndex

    results: dict[Cell, CellOutcome] = {}
    todo: list[Cell] = []
    # The resume index vouches for unchanged finished cells, so a rerun opens no results file.
    index = ResumeIndex.load(out_dir)
    for cell in cells:
        path = out_dir / cell.file_name()
        light = None if force else index.lookup(path)
        if light is None and not force and is_done(cell, out_dir):
            light = _light(path)
            index.record(path, light)
        if light is not None:
            results[cell] = CellOutcome(cell, path, skipped=True, light=light)
        else:
            todo.append(cell)
    done = len(results)
    if progress:
        for outcome in results.values():
            progress(done, len(cells), outcome)
    runner = (_execute_dask(todo, out_dir, jobs, scheduler) if executor == "dask"
              else _execute(todo, out_dir, jobs))
    try:
        for outcome in runner:
            results[outcome.cell] = outcome
            if outcome.light is not None:
                index.record(outcome.path, outcome.light)
            done += 1
            if progress:
                progress(done, len(cells), outcome)
    finally:
        index.rewrite(o.path.name for o in results.values())
    return SweepRun(config, out_dir, tuple(results[c] for c in cells))


def _execute(cells: Sequence[Cell], out_dir: Path, jobs: int) -> Iterator[CellOutcome]:
    if jobs <= 1 or len(cells) <= 1:
        for cell in cells:
            yield run_cell(cell, out_dir)
        return
    # Workers ignore SIGINT: a terminal's Ctrl-C reaches the whole process group, and a worker
    # interrupted while it waits on the pool's call queue can leave the pool unable to shut down
    # (the sweep then hangs). The parent alone stops: it cancels the cells not started and waits
    # for the running ones, whose files are written atomically.
    with ProcessPoolExecutor(max_workers=jobs, initializer=_ignore_sigint) as pool:
        pending: set[Future[CellOutcome]] = set()
        queue = list(cells)
        try:
            while queue or pending:
                while queue and len(pending) < 2 * jobs:
                    pending.add(pool.submit(run_cell, queue.pop(0), out_dir))
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    yield fut.result()
        except BaseException:
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _ignore_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _execute_dask(cells: Sequence[Cell], out_dir: Path, jobs: int,
                  scheduler: str | None) -> Iterator[CellOutcome]:
    Client, LocalCluster, as_completed = _dask_api()
    from exfairs.results import write_result

    if not cells:
        return
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=max(1, jobs), threads_per_worker=1, processes=True,
                               dashboard_address=None)
    try:
        try:
            client = Client(scheduler if scheduler is not None else cluster, timeout="30s")
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot reach the Dask scheduler: {exc}", field="--scheduler",
                             value=scheduler) from None
        with client:
            futures = {client.submit(compute_cell, cell, pure=False): cell for cell in cells}
            for fut in as_completed(futures):
                result = fut.result()
                cell = futures[fut]
                path = out_dir / cell.file_name()
                write_result(result, path)
                yield CellOutcome(cell, path, skipped=False, wall_time_s=result.info.wall_time_s,
                                  light=replace(result, records=(), policy_samples=()))
    finally:
        if cluster is not None:
            cluster.close()


def validate_inputs(config: SweepConfig, jobs: int = 1) -> None:
    """Load every scenario and the profile, build the engine configuration and each policy of
    the sweep once, and check that `jobs` cells at a time fit in memory, so that bad input raises
    InputError (naming the file, field and value) before any cell runs."""
    try:
        _validate_inputs(config, jobs)
    except InputError as exc:
        if exc.source is None and config.source is not None:
            raise exc.with_source(config.source) from None
        raise


def _validate_inputs(config: SweepConfig, jobs: int) -> None:
    from exfairs.calibration.profile import load_profile
    from exfairs.errors import ConfigError
    from exfairs.policies import parse_experiment
    from exfairs.policies.params import check_params_for
    from exfairs.scenario import load_scenario
    from exfairs.sim.config import EngineConfig

    for scen in config.scenarios:
        load_scenario(scen)
    check_named_input(config.profile, suffix=".json", field="profile", what="profile file")
    profile = load_profile(config.profile)
    try:
        EngineConfig.from_profile(profile, **split_gate_knob(config.engine)[0])
    except ConfigError as exc:
        raise InputError(exc.detail, field=f"engine.{exc.field}", value=exc.value,
                         source=exc.source) from None
    check_params_for([parse_experiment(e).policy for e in config.experiments],
                     {k: dict(v) for k, v in config.policy_params})
    _preflight(config, jobs)


def _preflight(config: SweepConfig, jobs: int) -> None:
    """Refuse a sweep whose cells cannot fit in memory (exfairs.preflight), before any runs: the
    capacity grids are checked from the client count before a workload is drawn, then the run
    from the workload of the heaviest load factor (first seed) of each scenario."""
    from exfairs.preflight import check_run_fits, estimate_run_memory, estimate_setup_memory
    from exfairs.scenario import load_scenario

    parallel = max(1, min(jobs, len(config.cells())))
    for scen in config.scenarios:
        scenario = load_scenario(scen)
        check_run_fits(estimate_setup_memory(len(scenario.clients)), what=f"scenario {scen}",
                       parallel=parallel)
        cell = Cell(scen, config.experiments[0], min(config.seeds), float(max(config.load_factors)),
                    config.profile, config.engine)
        prepared = _prepare(cell)
        profile, engine, workload = prepared.profile, prepared.engine, prepared.workload
        min_step_s = profile.cost_model(engine.max_num_batched_tokens).step_ms(0, 0, 1, 1) / 1e3
        check_run_fits(estimate_run_memory(workload, min_step_s=min_step_s),
                       what=f"scenario {scen}", parallel=parallel)


def _dask_api() -> tuple[Any, Any, Any]:
    """(Client, LocalCluster, as_completed) from `distributed`; InputError when the 'dist'
    extra is not installed."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise InputError("the Dask executor needs the 'dist' extra: pip install 'exfairs[dist]'",
                         field="--executor", value="dask") from None
    return Client, LocalCluster, as_completed


def _probe_scheduler(address: str, timeout_s: float = 5.0) -> None:
    """InputError unless `address` is a Dask scheduler address accepting TCP connections.

    A plain socket fails fast and cleanly where `distributed.Client` would retry for its whole
    timeout and then print an ignored exception from its finaliser."""
    import socket

    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address)
        host, port = parse_host_port(location)
    except (ValueError, TypeError) as exc:
        raise InputError(f"not a Dask scheduler address ({exc}); expected tcp://HOST:PORT",
                         field="--scheduler", value=address) from None
    if scheme not in ("tcp", "tls"):
        return
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError, OverflowError) as exc:
        raise InputError(f"cannot reach the Dask scheduler: {exc}", field="--scheduler",
                         value=address) from None
