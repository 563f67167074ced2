"""Experiment names, the registry, and parameter validation."""

from __future__ import annotations

import pytest

from exfairs.errors import ConfigError, InputError
from exfairs.policies import Mode, available_policies, make_policy, parse_experiment
from exfairs.policies.experiments import experiment_names


def test_builtins_registered() -> None:
    assert {"FCFS", "ROUND_ROBIN", "VTC", "ExFairS"} <= set(available_policies())


@pytest.mark.parametrize(
    ("name", "policy", "mode"),
    [
        ("ExFairS", "ExFairS", Mode.PRIORITY),
        ("exfairs", "ExFairS", Mode.PRIORITY),
        ("VTC", "VTC", Mode.PRIORITY),
        ("FCFS", "FCFS", Mode.PRIORITY),
        ("QUEUE_ExFairS", "ExFairS", Mode.GATE),
        ("queue_vtc", "VTC", Mode.GATE),
        ("QUEUE_FCFS", "FCFS", Mode.GATE),
        ("Queue_Round_Robin", "ROUND_ROBIN", Mode.GATE),
        ("ENGINE_VTC", "VTC", Mode.ENGINE),
        (" engine_exfairs ", "ExFairS", Mode.ENGINE),
    ],
)
def test_parse_experiment(name: str, policy: str, mode: Mode) -> None:
    exp = parse_experiment(name)
    assert (exp.policy, exp.mode) == (policy, mode)
    assert parse_experiment(exp.name) == exp  # canonical names round-trip


@pytest.mark.parametrize("name", ["SJF", "QUEUE_", "QUEUE_QUEUE_VTC", "ENGINE_QUEUE_VTC", ""])
def test_unknown_experiment_lists_valid_names(name: str) -> None:
    with pytest.raises(InputError) as info:
        parse_experiment(name)
    assert info.value.field == "experiment"
    for valid in ("QUEUE_ExFairS", "VTC", "ENGINE_ROUND_ROBIN"):
        assert valid in str(info.value)


def test_experiment_names_are_all_parseable() -> None:
    names = experiment_names()
    assert len(names) == 3 * len(available_policies())
    assert all(parse_experiment(n).name == n for n in names)


def test_make_policy_unknown_and_bad_keyword() -> None:
    with pytest.raises(InputError, match="valid policies"):
        make_policy("nope")
    with pytest.raises(InputError) as info:
        make_policy("VTC", {"w_x": 1})
    assert info.value.field == "policy_params"


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [
        ("VTC", "w_p", -1.0),
        ("VTC", "w_q", float("nan")),
        ("VTC", "w_p", float("inf")),
        ("VTC", "w_q", "2"),
        ("VTC", "w_p", True),
        ("ExFairS", "alpha", 1.5),
        ("ExFairS", "alpha", -0.1),
        ("ExFairS", "alpha", float("nan")),
        ("ExFairS", "window_s", 0.0),
        ("ExFairS", "window_s", float("inf")),
        ("ExFairS", "w_p", -0.5),
        ("ExFairS", "w_q", float("-inf")),
    ],
)
def test_bad_parameters_name_the_field(name: str, field: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        make_policy(name, {field: value})
    assert info.value.field == field


@pytest.mark.parametrize("weight", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_client_weight(weight: float) -> None:
    p = make_policy("VTC")
    with pytest.raises(ConfigError) as info:
        p.add_client("a", weight)
    assert info.value.field == "weight"


def test_good_parameters_accepted() -> None:
    p = make_policy("ExFairS", {"alpha": 0, "window_s": 5, "w_p": 0, "w_q": 1})
    assert p.name == "ExFairS"
    assert make_policy("vtc", {"w_p": 0.5}).name == "VTC"
