"""The simulator's engine-loop defaults are what vLLM 0.32 and the live driver do (issue 12), and
the front end → engine-core latency comes from the profile where the profile measured it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from sim_factories import engine, profile, workload

from exfairs.calibration.profile import EngineDefaults, load_profile, profile_from_json
from exfairs.errors import ConfigError, InputError
from exfairs.sim.config import EngineConfig
from exfairs.sim.prepare import prepare_run
from exfairs.sim.runner import simulate


def test_defaults_are_vllm_032_and_the_live_driver() -> None:
    cfg = engine()
    assert cfg.prompt_credit == "first_token"  # the live driver credits at the first token
    assert cfg.reserve_full_prompt is True  # vLLM 0.32's scheduler_reserve_full_isl
    assert cfg.hook_order == "stream"  # the live driver's order within a step
    assert cfg.submit_latency_s == 0.0  # no profile: nothing measured


@pytest.mark.parametrize("pid", ["cpu-llama-60m-live", "cpu-llama-60m-runs"])
def test_live_fitted_cpu_profiles_give_their_measured_latency(pid: str) -> None:
    prof = load_profile(pid)
    lat = prof.engine.submit_latency_s
    # Measured on this machine's live runs (benchmarks/submit_latency.py): 1–3 ms, between the
    # inter-step gap and one step, which is what makes a release at a step end miss a step.
    assert lat is not None and 1e-3 <= lat <= 3e-3
    assert EngineConfig.from_profile(prof).submit_latency_s == lat
    assert EngineConfig.from_profile(prof, submit_latency_s=0.0).submit_latency_s == 0.0


@pytest.mark.parametrize("pid", ["a100-llama2-7b", "h100-llama2-70b-tp4", "cpu-llama-60m"])
def test_profiles_without_a_measured_latency_give_zero(pid: str) -> None:
    prof = load_profile(pid)
    assert prof.engine.submit_latency_s is None
    assert EngineConfig.from_profile(prof).submit_latency_s == 0.0
    # Written back without the key, so such a profile keeps its bytes and cache key.
    assert "submit_latency_s" not in prof.to_json()["engine"]


def test_the_profile_latency_reaches_a_prepared_run() -> None:
    prep = prepare_run("default", seed=0, profile="cpu-llama-60m-runs")
    measured = load_profile("cpu-llama-60m-runs").engine.submit_latency_s
    assert prep.engine.submit_latency_s == measured
    old = prepare_run("default", seed=0, profile="cpu-llama-60m-runs",
                      engine_overrides={"submit_latency_s": 0.0, "prompt_credit": "chunk",
                                        "reserve_full_prompt": False, "hook_order": "step"})
    assert (old.engine.submit_latency_s, old.engine.prompt_credit, old.engine.reserve_full_prompt,
            old.engine.hook_order) == (0.0, "chunk", False, "step")


def test_the_latency_round_trips_through_a_profile_file(tmp_path: Path) -> None:
    prof = profile()
    with_lat = replace(prof, engine=replace(prof.engine, submit_latency_s=0.0015))
    doc = with_lat.to_json()
    assert doc["engine"]["submit_latency_s"] == 0.0015
    back = profile_from_json(json.loads(json.dumps(doc)))
    assert back.engine.submit_latency_s == 0.0015
    # A profile's latency changes a simulation: a priority-mode submission reaches the engine
    # that much later (its first 10 ms step starts then).
    wl = workload([("a", 0.0, 8, 2)], clients=["a"])
    res = simulate(wl, "FCFS", back)
    assert res.records[0].first_token_s == pytest.approx(0.0115)


@pytest.mark.parametrize("value", [-0.001, 61.0, "2ms", True, float("nan"), 10**400])
def test_a_bad_profile_latency_names_the_field(value: object) -> None:
    with pytest.raises(ConfigError, match=r"engine\.submit_latency_s"):
        EngineDefaults(num_gpu_blocks=10, submit_latency_s=value)  # type: ignore[arg-type]
    doc = profile().to_json()
    doc["engine"]["submit_latency_s"] = value
    with pytest.raises(InputError, match=r"engine\.submit_latency_s"):
        profile_from_json(doc)
