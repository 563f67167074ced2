"""One engine-knobs type (issue 13 item 4): the simulator's engine, a profile's engine section and
the live engine's arguments all carry `exfairs.engine_knobs.EngineKnobs`, validated once."""

from __future__ import annotations

import json
from dataclasses import fields
from importlib import resources

import pytest

from exfairs.calibration.profile import (
    EngineDefaults,
    bundled_profile_ids,
    load_profile,
    profile_from_json,
)
from exfairs.engine_knobs import VLLM_ARG_OF_KNOB, EngineKnobs
from exfairs.errors import ConfigError, InputError
from exfairs.live.config import KNOB_OF_VLLM_ARG, VllmEngineConfig
from exfairs.sim.config import EngineConfig

_KNOBS = [f.name for f in fields(EngineKnobs)]


def test_the_simulator_and_the_profile_hold_the_shared_knobs_first() -> None:
    # Field order is what the CLI flags and results follow: the shared knobs first, unchanged.
    assert [f.name for f in fields(EngineConfig)][:len(_KNOBS)] == _KNOBS
    assert issubclass(EngineConfig, EngineKnobs) and issubclass(EngineDefaults, EngineKnobs)
    assert [k for k, _ in VLLM_ARG_OF_KNOB] == _KNOBS


@pytest.mark.parametrize("cls", [EngineKnobs, EngineConfig])
def test_the_shared_rules_are_checked_once_for_every_type(cls: type[EngineKnobs]) -> None:
    base = dict(max_num_seqs=8, max_num_batched_tokens=64, block_size=16, num_gpu_blocks=10,
                max_model_len=128)
    with pytest.raises(ConfigError, match="max_num_batched_tokens"):
        cls(**{**base, "max_num_batched_tokens": 4})  # below max_num_seqs: vLLM refuses it
    with pytest.raises(ConfigError, match="without chunked prefill"):
        cls(**base, enable_chunked_prefill=False)
    with pytest.raises(ConfigError, match="scheduling_policy"):
        cls(**base, scheduling_policy="lifo")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"engine\.max_num_batched_tokens"):
        EngineDefaults(**{**base, "max_num_batched_tokens": 4})


@pytest.mark.parametrize("pid", bundled_profile_ids())
def test_bundled_profiles_keep_their_engine_section_bytes(pid: str) -> None:
    text = resources.files("exfairs.calibration").joinpath("profiles", f"{pid}.json").read_text(
        encoding="utf-8")
    doc = json.loads(text)
    assert load_profile(pid).engine.to_json() == doc["engine"]
    assert list(load_profile(pid).engine.to_json()) == list(doc["engine"])


def test_a_profile_engine_section_may_set_every_shared_knob() -> None:
    doc = load_profile("cpu-llama-60m").to_json()
    doc["engine"].update(max_num_batched_tokens=2048, enable_chunked_prefill=False,
                         long_prefill_token_threshold=256)
    prof = profile_from_json(doc)
    cfg = EngineConfig.from_profile(prof)
    assert (cfg.enable_chunked_prefill, cfg.long_prefill_token_threshold) == (False, 256)
    assert prof.engine.to_json() == doc["engine"]  # written back as read
    doc["engine"]["max_num_batched_tokens"] = 1024  # < max_model_len 2048 without chunking
    with pytest.raises(InputError, match=r"engine\.max_num_batched_tokens"):
        profile_from_json(doc)


def test_live_arguments_come_from_and_go_back_to_the_shared_knobs() -> None:
    sim = EngineConfig(max_num_seqs=4, max_num_batched_tokens=512, block_size=32,
                       num_gpu_blocks=99, max_model_len=512, enable_chunked_prefill=False,
                       scheduling_policy="priority")
    live = VllmEngineConfig.from_knobs("m", sim, dtype="float32", max_num_seqs=2)
    assert (live.num_gpu_blocks_override, live.block_size, live.max_model_len) == (99, 32, 512)
    assert (live.max_num_batched_tokens, live.enable_chunked_prefill) == (512, False)
    assert (live.max_num_seqs, live.dtype, live.scheduling_policy) == (2, "float32", "priority")
    # The live CLI hands these arguments to the simulator's engine under the knobs' names.
    back = {KNOB_OF_VLLM_ARG[arg]: getattr(live, arg) for arg in KNOB_OF_VLLM_ARG}
    assert back == {"max_num_seqs": 2, "max_num_batched_tokens": 512, "block_size": 32,
                    "num_gpu_blocks": 99, "max_model_len": 512, "enable_chunked_prefill": False}
