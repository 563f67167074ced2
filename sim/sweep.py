"""Sweeps: the grid scenarios × experiments × seeds × load factors, run cell by cell in parallel.

Each cell is one simulation with its own results file, named by a hash of the cell's full
configuration (scenario, experiment, seed, load, profile, engine knobs, policy parameters and the
package version), so a sweep rerun into the same directory skips cells already done and recomputes
missing or unreadable ones. Cells are independent and deterministic: results do not depend on how
many workers ran them or in which order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exfairs import __version__
from exfairs.atomic import remove_stale_temps
from exfairs.dirlock import locked_dir
from exfairs.errors import InputError
from exfairs.paths import check_named_input, check_output_dir, read_input_bytes
from exfairs.rng import MAX_SEED

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

if TYPE_CHECKING:
    from exfairs.results import RunResult

_log = logging.getLogger(__name__)

Scalar = int | float | str | bool
Knobs = tuple[tuple[str, Scalar], ...]

# A sweep's name becomes a directory name (results/<name>): no separators, no leading dot.
_SWEEP_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Cell:
    """One simulation of a sweep."""

    scenario: str
    experiment: str
    seed: int
    load_factor: float
    profile: str
    engine: Knobs = ()
    policy_params: Knobs = ()
    #: `exfairs.sim.prepare.prepare_run`'s arrival horizon / request count (None: the scenario's).
    duration_s: float | None = None
    num_prompts: int | None = None

    def key(self) -> str:
        """Hash of everything that determines the cell's result (`exfairs.identity`): scenario
        and referenced traces by content, profile by content, knobs, package version and the
        source of the code that computes results."""
        from exfairs.identity import profile_identity, scenario_identity, source_identity
        from exfairs.policies.experiments import parse_experiment

        try:
            policy: str | None = parse_experiment(self.experiment).policy
        except Exception:  # an unknown name fails when the cell runs
            policy = None
        doc = {
            "scenario": scenario_identity(self.scenario),
            "experiment": self.experiment,
            "seed": self.seed,
            "load_factor": self.load_factor,
            "profile": profile_identity(self.profile),
            "engine": sorted(self.engine),
            "policy_params": sorted(self.policy_params),
            "version": __version__,
            "source": source_identity(policy),
        }
        # Only when set, so that the keys of cells without them are unchanged.
        if self.duration_s is not None:
            doc["duration_s"] = self.duration_s
        if self.num_prompts is not None:
            doc["num_prompts"] = self.num_prompts
        blob = json.dumps(doc, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def file_name(self) -> str:
        """Results file name: readable prefix plus the configuration hash."""
        scen = Path(self.scenario).stem if self.scenario.endswith(".toml") else self.scenario
        stem = f"{scen}__{self.experiment}__load{self.load_factor:g}__seed{self.seed}"
        return f"{stem}__{self.key()}.json"


@dataclass(frozen=True, slots=True)
class SweepConfig:
    """A sweep: the grid and where to put its results.

    `engine` overrides the profile's engine knobs (vLLM names); `policy_params` maps a policy name
    to its constructor parameters. `source` names the sweep file the values came from (None
    once anything is overridden): errors found when the inputs are checked name it.
    """

    name: str = "sweep"
    scenarios: tuple[str, ...] = ("default",)
    experiments: tuple[str, ...] = ("FCFS",)
    seeds: tuple[int, ...] = (0,)
    load_factors: tuple[float, ...] = (1.0,)
    profile: str = "a100-llama2-7b"
    engine: Knobs = ()
    policy_params: tuple[tuple[str, Knobs], ...] = ()
    source: str | None = field(default=None, compare=False)
    #: Every cell's arrival horizon (seconds) or request count instead of the scenario's horizon
    #: (`exfairs-sim --duration / --num-prompts`); None: the scenario's own.
    duration_s: float | None = None
    num_prompts: int | None = None

    def __post_init__(self) -> None:
        for fname in ("scenarios", "experiments", "seeds", "load_factors"):
            if not getattr(self, fname):
                raise InputError("must list at least one value", field=fname, value=[])
        for s in self.seeds:
            if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED:
                raise InputError(f"seeds must be integers in [0, {MAX_SEED}]", field="seeds",
                                 value=s)
        for lf in self.load_factors:
            # Range first: math.isfinite raises OverflowError on an int beyond float range.
            if isinstance(lf, bool) or not isinstance(lf, (int, float)) or not 0 < lf <= 100 \
                    or not math.isfinite(lf):
                raise InputError("load factors must be numbers in (0, 100]", field="load_factors",
                                 value=lf)
        if self.duration_s is not None and self.num_prompts is not None:
            raise InputError("give --duration or --num-prompts, not both", field="--num-prompts",
                             value=self.num_prompts)
        if self.duration_s is not None and (
                isinstance(self.duration_s, bool) or not isinstance(self.duration_s, (int, float))
                or not 0 < self.duration_s <= 1e7 or not math.isfinite(self.duration_s)):
            raise InputError("must be a number of seconds in (0, 1e7]", field="--duration",
                             value=self.duration_s)
        if self.num_prompts is not None and (
                isinstance(self.num_prompts, bool) or not isinstance(self.num_prompts, int)
                or not 1 <= self.num_prompts <= 5_000_000):
            raise InputError("must be an integer in [1, 5000000]", field="--num-prompts",
                             value=self.num_prompts)

    def cells(self) -> list[Cell]:
        """Every cell of the grid, in a fixed order."""
        from exfairs.policies import parse_experiment

        params = {k.upper(): v for k, v in self.policy_params}
        out: list[Cell] = []
        for scen in self.scenarios:
            for exp_name in self.experiments:
                exp = parse_experiment(exp_name)
                for lf in self.load_factors:
                    for seed in self.seeds:
                        out.append(Cell(scen, exp.name, seed, float(lf), self.profile, self.engine,
                                        params.get(exp.policy.upper(), ()),
                                        duration_s=self.duration_s,
                                        num_prompts=self.num_prompts))
        return out


def _as_tuple(
    value: Any, fname: str, source: str, kind: type | tuple[type, ...]
) -> tuple[Any, ...]:
    items = value if isinstance(value, list) else [value]
    for item in items:
        if (isinstance(item, bool) and kind is not bool) or not isinstance(item, kind):
            raise InputError(f"expected a list of {getattr(kind, '__name__', kind)}", field=fname,
                             value=value, source=source)
    return tuple(items)


def _knobs(value: Any, fname: str, source: str) -> Knobs:
    if not isinstance(value, dict):
        raise InputError("must be a table", field=fname, value=value, source=source)
    for k, v in value.items():
        if not isinstance(v, (int, float, str, bool)):
            raise InputError("must be a number, string or boolean", field=f"{fname}.{k}", value=v,
                             source=source)
    return tuple(sorted(value.items()))


def sweep_from_toml(text: str, source: str) -> SweepConfig:
    """Parse a sweep file (TOML); InputError names the file, field and value."""
    try:
        doc = tomllib.loads(text)
    except (ValueError, RecursionError) as exc:
        # TOMLDecodeError is a ValueError; so is an integer literal too long to convert, and
        # absurdly deep nesting exhausts the parser's recursion.
        raise InputError(f"not valid TOML: {' '.join(str(exc).split())}", field="(file)",
                         value=source, source=source) from None
    if not doc:
        # An empty file would silently run the built-in defaults.
        raise InputError("empty sweep file: set at least scenarios and experiments",
                         field="(file)", value=source, source=source)
    known = {"name", "scenarios", "experiments", "seeds", "load_factors", "profile", "engine",
             "policy_params", "description"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise InputError(f"unknown keys; expected some of {sorted(known)}", field=unknown[0],
                         value=doc[unknown[0]], source=source)
    kw: dict[str, Any] = {}
    if "name" in doc:
        if not isinstance(doc["name"], str) or not _SWEEP_NAME_RE.match(doc["name"]):
            raise InputError("must be 1-64 letters, digits, '_', '-' or '.', starting with a "
                             "letter or digit (it names the output directory)", field="name",
                             value=doc["name"], source=source)
        kw["name"] = doc["name"]
    if "description" in doc and not isinstance(doc["description"], str):
        raise InputError("must be a string", field="description", value=doc["description"],
                         source=source)
    for fname, kind in (("scenarios", str), ("experiments", str), ("seeds", int),
                        ("load_factors", (int, float))):
        if fname in doc:
            kw[fname] = _as_tuple(doc[fname], fname, source, kind)
    if "profile" in doc:
        if not isinstance(doc["profile"], str):
            raise InputError("must be a string", field="profile", value=doc["profile"],
                             source=source)
        kw["profile"] = doc["profile"]
    if "engine" in doc:
        kw["engine"] = _knobs(doc["engine"], "engine", source)
    if "policy_params" in doc:
        pp = doc["policy_params"]
        if not isinstance(pp, dict):
            raise InputError("must be a table of tables", field="policy_params", value=pp,
                             source=source)
        kw["policy_params"] = tuple(sorted((k, _knobs(v, f"policy_params.{k}", source))
                                           for k, v in pp.items()))
    try:
        config = SweepConfig(**kw, source=source)
        config.cells()  # experiment names are checked here, where the file can be named
    except InputError as exc:
        raise exc.with_source(source) from None
    return config


def bundled_sweeps() -> list[str]:
    """Names of the sweeps shipped with the package (``exfairs/data/sweeps``)."""
    from importlib import resources

    folder = resources.files("exfairs").joinpath("data", "sweeps")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_sweep(path_or_name: str | os.PathLike[str]) -> SweepConfig:
    """A sweep file by path, or a bundled sweep by name (``default``)."""
    from importlib import resources

    p = Path(path_or_name)
    if p.suffix == ".toml" or p.exists():
        data = read_input_bytes(p, field="sweep", what="sweep file")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"cannot read sweep file: {exc}", field="sweep",
                             value=str(p)) from None
        return sweep_from_toml(text, str(p))
    folder = resources.files("exfairs").joinpath("data", "sweeps")
    res = folder.joinpath(f"{path_or_name}.toml")
    if not res.is_file():
        raise InputError("no such sweep file or bundled sweep (bundled: "
                         f"{', '.join(bundled_sweeps())})",
                         field="sweep", value=str(path_or_name))
    return sweep_from_toml(res.read_text(encoding="utf-8"), f"<bundled sweep {path_or_name}>")


@dataclass(frozen=True, slots=True)
class CellOutcome:
    """What the parent needs of a finished cell (the full result stays on disk)."""

    cell: Cell
    path: Path
    skipped: bool
    wall_time_s: float = 0.0
    #: The result without its per-request records and policy samples (None for reused cells):
    #: enough for summaries, cheap to send between processes.
    light: RunResult | None = None


def run_cell(cell: Cell, out_dir: Path) -> CellOutcome:
    """Simulate one cell and write its results file atomically. Safe to call in a worker."""
    from exfairs.results import write_result

    result = compute_cell(cell)
    path = out_dir / cell.file_name()
    write_result(result, path)
    return CellOutcome(cell, path, skipped=False, wall_time_s=result.info.wall_time_s,
                       light=replace(result, records=(), policy_samples=()))


def compute_cell(cell: Cell) -> RunResult:
    """Simulate one cell and return its result (nothing written). Pure: same cell, same result
    apart from the wall-clock fields of `RunInfo`."""
    import time

    from exfairs.dataset_spec import dataset_knobs
    from exfairs.metrics import compute_metrics
    from exfairs.policies import parse_experiment
    from exfairs.results import RunInfo, RunResult, git_revision
    from exfairs.sim.runner import simulate

    t0 = time.perf_counter()
    prepared = _prepare(cell)
    scenario, profile, engine = prepared.scenario, prepared.profile, prepared.engine
    workload = prepared.workload
    experiment = parse_experiment(cell.experiment)
    sim = simulate(workload, experiment, profile, engine=engine,
                   policy_params=dict(cell.policy_params),
                   max_inflight=split_gate_knob(cell.engine)[1])
    metrics = compute_metrics(sim.records, workload.clients, window=prepared.window)
    wall = time.perf_counter() - t0
    info = RunInfo(
        backend="sim", scenario=scenario.name, experiment=experiment.name,
        policy=experiment.policy, mode=experiment.mode.value, seed=cell.seed,
        load_factor=cell.load_factor, profile_id=profile.id,
        engine_knobs=_engine_knobs(engine) + _gate_knobs(sim)
        + dataset_knobs(scenario.dataset), policy_params=cell.policy_params,
        package_version=__version__, git_revision=git_revision(),
        created_utc=_utc_now(), wall_time_s=wall,
    )
    return RunResult(info=info, clients=workload.clients, records=sim.records, metrics=metrics,
                     policy_samples=sim.policy_samples)


def _prepare(cell: Cell) -> Any:
    """The cell's `exfairs.sim.prepare.PreparedRun` (scenario, profile, engine config, workload,
    measured window); the gate's knob is not the engine's and is left out here."""
    from exfairs.sim.prepare import prepare_run

    return prepare_run(cell.scenario, cell.seed, load_factor=cell.load_factor,
                       profile=cell.profile, engine_overrides=split_gate_knob(cell.engine)[0],
                       duration_s=cell.duration_s, num_prompts=cell.num_prompts)


#: Travels with the engine knobs (a sweep file's [engine] table, `exfairs-sim --max-inflight`)
#: but is the gate's: how many requests gate mode releases into the engine (default
#: max_num_seqs). Results record it, and the gate's KV warning (sim.runner.gate_kv_warning), as
#: the knobs `max_inflight` and `gate_warning`.
GATE_KNOB = "max_inflight"


def split_gate_knob(knobs: Knobs) -> tuple[dict[str, Any], int | None]:
    """(the engine's own knobs, `max_inflight` or None); InputError for a bad value."""
    rest = dict(knobs)
    value = rest.pop(GATE_KNOB, None)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InputError("must be an integer ≥ 1", field=f"engine.{GATE_KNOB}", value=value)
    return rest, value


def _gate_knobs(sim: Any) -> Knobs:
    knobs: list[tuple[str, Any]] = []
    if sim.max_inflight is not None:
        knobs.append((GATE_KNOB, sim.max_inflight))
    knobs.extend(("gate_warning", w) for w in sim.warnings)
    return tuple(knobs)


def _engine_knobs(engine: Any) -> Knobs:
    from dataclasses import asdict

    return tuple(sorted((k, v) for k, v in asdict(engine).items()
                        if isinstance(v, (int, float, str, bool))))


def _utc_now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def is_done(cell: Cell, out_dir: Path) -> bool:
    """True when the cell's results file exists and loads (a truncated file does not count)."""
    path = out_dir / cell.file_name()
    if not path.is_file():
        return False
    from exfairs.results import check_result

    try:
        check_result(path)  # everything read_result checks, without decoding every record
    except (InputError, OSError, ValueError):
        _log.warning("results file %s is unreadable; the cell will be recomputed", path)
        return False
    return True


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


def _light(path: Path) -> RunResult:
    from exfairs.results import read_result

    return replace(read_result(path, records=False), policy_samples=())


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


def override(config: SweepConfig, changes: Mapping[str, Any]) -> SweepConfig:
    """`config` with the given fields replaced (CLI arguments over a sweep file); None values
    are ignored. A changed config no longer comes from its file alone: its `source` is cleared."""
    given = {k: v for k, v in changes.items() if v is not None}
    return replace(config, **given, source=None) if given else config
