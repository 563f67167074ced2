"""One sweep cell: simulate it (`compute_cell`, pure), write its results file atomically
(`run_cell`, safe in a worker), tell whether a finished file is already there (`is_done`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exfairs import __version__
from exfairs.errors import InputError
from exfairs.policies.admission import AdmissionConfig
from exfairs.sim.sweep_grid import Cell, Knobs

if TYPE_CHECKING:
    from exfairs.results import RunResult


_log = logging.getLogger(__name__)


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
                   max_inflight=split_gate_knob(cell.engine)[1],
                   admission=cell.admission if cell.admission.active else None,
                   policy_samples=cell.policy_samples)
    metrics = compute_metrics(sim.records, workload.clients, window=prepared.window)
    wall = time.perf_counter() - t0
    info = RunInfo(
        backend="sim", scenario=scenario.name, experiment=experiment.name,
        policy=experiment.policy, mode=experiment.mode.value, seed=cell.seed,
        load_factor=cell.load_factor, profile_id=profile.id,
        engine_knobs=_engine_knobs(engine) + _gate_knobs(sim) + _admission_knobs(cell.admission)
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


def _admission_knobs(admission: AdmissionConfig) -> Knobs:
    # Recorded with the gate's knobs (results schema unchanged); absent when inactive.
    return (("admission", admission.label),) if admission.active else ()


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


def _light(path: Path) -> RunResult:
    from exfairs.results import read_result

    return replace(read_result(path, records=False), policy_samples=())
