"""Malformed profile and measurement files give InputErrors that name the field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from exfairs.calibration.measurements import load_measurements
from exfairs.calibration.profile import load_profile
from exfairs.errors import InputError


def _good(tmp_path: Path) -> dict[str, Any]:
    src = load_profile("a100-llama2-7b").to_json()
    return copy.deepcopy(src)


def _write(tmp_path: Path, doc: Any, name: str = "p.json") -> Path:
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


def _mutate(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    d = copy.deepcopy(doc)
    cur = d
    for k in path[:-1]:
        cur = cur[k]
    if value is KeyError:
        del cur[path[-1]]
    else:
        cur[path[-1]] = value
    return d


@pytest.mark.parametrize(("path", "value", "field"), [
    (("schema",), "something", "schema"),
    (("schema_version",), 99, "schema_version"),
    (("coefficients", "fixed_ms"), -1.0, "coefficients.fixed_ms"),
    (("coefficients", "decode_ctx_ms"), "fast", "coefficients.decode_ctx_ms"),
    (("coefficients", "prefill_token_ms"), KeyError, "coefficients"),
    (("coefficients", "warp_ms"), 1.0, "coefficients"),
    (("engine", "num_gpu_blocks"), 0, "engine.num_gpu_blocks"),
    (("engine", "block_size"), 16.5, "engine.block_size"),
    (("engine", "max_num_seqs"), True, "engine.max_num_seqs"),
    (("metadata", "id"), 7, "metadata.id"),
    (("metadata",), [], "metadata"),
    (("fit", "median_ape"), None, "fit.median_ape"),
    (("measurements",), {}, "measurements"),
    (("measurements", 0, "duration_ms"), "x", "measurements[0].duration_ms"),
])
def test_bad_field_is_named(tmp_path: Path, path: tuple[Any, ...], value: Any,
                            field: str) -> None:
    doc = _mutate(_good(tmp_path), path, value)
    with pytest.raises(InputError) as ei:
        load_profile(_write(tmp_path, doc))
    assert ei.value.field == field
    assert str(tmp_path) in str(ei.value)  # names the file


def test_not_json_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not valid JSON"):
        load_profile(_write(tmp_path, "{oops"))
    with pytest.raises(InputError, match="no such profile"):
        load_profile(tmp_path / "absent.json")
    with pytest.raises(InputError, match="bundled"):
        load_profile("no-such-profile-id")


def test_good_profile_round_trips(tmp_path: Path) -> None:
    doc = _good(tmp_path)
    assert load_profile(_write(tmp_path, doc)).to_json() == doc


def _steps_doc() -> dict[str, Any]:
    prof = load_profile("a100-llama2-7b").to_json()
    return {"schema": "exfairs.measurements", "schema_version": 1,
            "metadata": prof["metadata"], "engine": prof["engine"], "wall_time_s": 1.0,
            "steps": [dict(m, label="prefill", repeat=0) for m in prof["measurements"][:10]]}


@pytest.mark.parametrize(("path", "value", "field"), [
    (("schema",), "exfairs.profile", "schema"),
    (("steps",), None, "steps"),
    (("steps", 3, "duration_ms"), -2.0, "steps[3]"),
    (("steps", 1, "decode_seqs"), 1.5, "steps[1].decode_seqs"),
    (("steps", 2, "colour"), "red", "steps[2]"),
    (("wall_time_s",), "long", "wall_time_s"),
    (("engine", "max_model_len"), -5, "engine.max_model_len"),
])
def test_bad_measurements_field_is_named(tmp_path: Path, path: tuple[Any, ...], value: Any,
                                         field: str) -> None:
    doc = _mutate(_steps_doc(), path, value)
    with pytest.raises(InputError) as ei:
        load_measurements(_write(tmp_path, doc, "m.json"))
    assert ei.value.field == field


def test_good_measurements_load(tmp_path: Path) -> None:
    ms = load_measurements(_write(tmp_path, _steps_doc(), "m.json"))
    assert len(ms.steps) == 10 and ms.steps[0].label == "prefill"
