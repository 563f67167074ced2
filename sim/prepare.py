"""The one recipe that turns (scenario, seed, load, profile, engine knobs) into the requests a run
serves, shared by the simulator's sweep cells (`exfairs.sweep.compute_cell`) and live runs
(`exfairs.live.run`): same scenario, engine limits, capacity estimate and workload draw, so both
worlds serve identical requests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from exfairs.calibration.costmodel import CostModel
from exfairs.calibration.profile import EngineDefaults, Profile, load_profile
from exfairs.errors import InputError
from exfairs.records import Workload
from exfairs.scenario import Scenario, load_scenario
from exfairs.sim.config import EngineConfig

__all__ = ["PreparedRun", "load_factor_for_rate", "prepare_run"]


@dataclass(frozen=True, slots=True)
class PreparedRun:
    """Everything shared by the experiments of one (scenario, seed, load, profile)."""

    scenario: Scenario
    profile: Profile
    engine: EngineConfig
    cost_model: CostModel
    capacity_rps: float
    load_factor: float
    workload: Workload
    window: tuple[float, float]


def prepare_run(
    scenario: str | Scenario,
    seed: int,
    *,
    load_factor: float = 1.0,
    profile: str | Profile,
    engine_overrides: Mapping[str, Any] | None = None,
    duration_s: float | None = None,
    request_rate_rps: float | None = None,
) -> PreparedRun:
    """Load the scenario and profile and draw the workload (as the simulator's sweep cells do).

    `duration_s` optionally shortens the scenario's arrival horizon (keeping its warm-up and
    cool-down), for quick live checks. `request_rate_rps` (total requests per second, all clients
    together) replaces `load_factor`: the load factor becomes the one that gives this rate (the
    clients keep their shares), and is what the result records.
    """
    from exfairs.workload import draw_workload, estimate_capacity_rps, measure_window

    scen = load_scenario(scenario) if not isinstance(scenario, Scenario) else scenario
    if duration_s is not None:
        scen = replace(scen, duration_s=float(duration_s))
    prof = load_profile(profile) if not isinstance(profile, Profile) else profile
    engine = EngineConfig.from_profile(prof, **dict(engine_overrides or {}))
    cost = prof.cost_model(engine.max_num_batched_tokens)
    defaults = EngineDefaults(
        num_gpu_blocks=engine.num_gpu_blocks, block_size=engine.block_size,
        max_num_seqs=engine.max_num_seqs, max_num_batched_tokens=engine.max_num_batched_tokens,
        max_model_len=engine.max_model_len)
    capacity = estimate_capacity_rps(scen, cost, defaults)
    if request_rate_rps is not None:
        load_factor = load_factor_for_rate(scen, request_rate_rps, capacity)
    workload = draw_workload(scen, seed, cost, load_factor=load_factor, capacity_rps=capacity,
                             max_model_len=engine.max_model_len)
    return PreparedRun(scenario=scen, profile=prof, engine=engine, cost_model=cost,
                       capacity_rps=capacity, load_factor=load_factor, workload=workload,
                       window=measure_window(scen, workload))




def load_factor_for_rate(scenario: Scenario, request_rate_rps: float, capacity_rps: float
                         ) -> float:
    """The load factor at which `scenario`'s clients together send `request_rate_rps` requests
    per second (capacity basis: a multiple of `capacity_rps`; absolute basis: of the scenario's
    own total rate)."""
    if not (isinstance(request_rate_rps, (int, float)) and request_rate_rps > 0
            and request_rate_rps < float("inf")):
        raise InputError("must be a finite number > 0 (requests per second, all clients)",
                         field="--request-rate", value=request_rate_rps)
    base = (capacity_rps if scenario.rate_basis == "capacity"
            else scenario.total_rate_per_min / 60.0)
    return float(request_rate_rps) / base
