"""The one recipe that turns (scenario, seed, load, profile, engine knobs) into the requests a run
serves, shared by the simulator's sweep cells (`exfairs.sim.sweep.compute_cell`) and live runs
(`exfairs.live.run`): same scenario, engine limits, capacity estimate and workload draw, so both
worlds serve identical requests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from exfairs.calibration.costmodel import CostModel
from exfairs.calibration.profile import Profile, load_profile
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
    tokenizer: str | None = None,
    num_prompts: int | None = None,
) -> PreparedRun:
    """Load the scenario and profile and draw the workload (as the simulator's sweep cells do).

    `duration_s` optionally shortens the scenario's arrival horizon (keeping its warm-up and
    cool-down), for quick live checks. `request_rate_rps` (total requests per second, all clients
    together) replaces `load_factor`: the load factor becomes the one that gives this rate (the
    clients keep their shares), and is what the result records. `tokenizer` (a local tokenizer
    directory, e.g. the served model's) re-measures the lengths of the scenario's dataset.
    `num_prompts` (as `vllm bench serve --num-prompts`; not with `duration_s`) serves exactly that
    many requests: the first ones by arrival of a draw over a long enough horizon, which then
    ends at the next arrival; warm-up and cool-down keep their share of the horizon.
    """
    from exfairs.calibration.capacity import estimate_capacity_rps
    from exfairs.workload import draw_workload, measure_window

    scen = load_scenario(scenario) if not isinstance(scenario, Scenario) else scenario
    if duration_s is not None:
        scen = replace(scen, duration_s=float(duration_s))
    if tokenizer is not None:
        scen = _with_tokenizer(scen, tokenizer)
    prof = load_profile(profile) if not isinstance(profile, Profile) else profile
    engine = EngineConfig.from_profile(prof, **dict(engine_overrides or {}))
    cost = prof.cost_model(engine.max_num_batched_tokens)
    capacity = estimate_capacity_rps(scen, cost, engine)
    if request_rate_rps is not None:
        load_factor = load_factor_for_rate(scen, request_rate_rps, capacity)
    if num_prompts is not None:
        if duration_s is not None:
            raise InputError("give --duration or --num-prompts, not both", field="--num-prompts",
                             value=num_prompts)
        scen, workload = _first_requests(scen, seed, cost, num_prompts, load_factor=load_factor,
                                         capacity_rps=capacity,
                                         max_model_len=engine.max_model_len)
    else:
        workload = draw_workload(scen, seed, cost, load_factor=load_factor,
                                 capacity_rps=capacity, max_model_len=engine.max_model_len)
    return PreparedRun(scenario=scen, profile=prof, engine=engine, cost_model=cost,
                       capacity_rps=capacity, load_factor=load_factor, workload=workload,
                       window=measure_window(scen, workload))




def _with_horizon(scenario: Scenario, duration_s: float) -> Scenario:
    k = duration_s / scenario.duration_s
    return replace(scenario, duration_s=duration_s, warmup_s=scenario.warmup_s * k,
                   cooldown_s=scenario.cooldown_s * k)


def _first_requests(scenario: Scenario, seed: int, cost: CostModel, n: int, *,
                    load_factor: float, capacity_rps: float, max_model_len: int
                    ) -> tuple[Scenario, Workload]:
    from exfairs.workload import MAX_REQUESTS, client_rates_rps, draw_workload

    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_REQUESTS:
        raise InputError(f"must be an integer in [1, {MAX_REQUESTS}]", field="--num-prompts",
                         value=n)
    rate = sum(client_rates_rps(scenario, load_factor=load_factor, capacity_rps=capacity_rps))
    horizon = 1.25 * (n + 1) / rate
    for _ in range(30):  # each round doubles the horizon; deterministic in (seed, n)
        scen = _with_horizon(scenario, horizon)
        workload = draw_workload(scen, seed, cost, load_factor=load_factor,
                                 capacity_rps=capacity_rps, max_model_len=max_model_len)
        if len(workload.requests) > n:
            end = workload.requests[n].arrival_s
            scen = _with_horizon(scenario, end)
            # Ids follow arrival order, so the first n requests keep ids 0 … n − 1.
            return scen, replace(workload, requests=workload.requests[:n], duration_s=end)
        horizon *= 2.0
    raise InputError("the scenario's clients send too few requests for this many prompts",
                     field="--num-prompts", value=n)


def _with_tokenizer(scenario: Scenario, tokenizer: str) -> Scenario:
    from exfairs.dataset_spec import with_tokenizer
    from exfairs.scenario import with_clients

    if scenario.dataset is None:
        raise InputError(f"scenario {scenario.name!r} has no [dataset]: a tokenizer measures "
                         "dataset prompts only", field="--tokenizer", value=tokenizer)
    scen = replace(scenario, dataset=with_tokenizer(scenario.dataset, tokenizer))
    return with_clients(scen, scen.clients)


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
