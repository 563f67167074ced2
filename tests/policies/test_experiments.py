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


ONE_FILE_POLICY = '''
"""A policy added as one file."""
import numpy as np
from exfairs.policies.base import Policy
from exfairs.policies.registry import register_policy


@register_policy("ONE_FILE_LIFO")
class Lifo(Policy):
    """Latest arrival first (by client: the client whose last arrival is latest)."""

    def __init__(self):
        super().__init__()
        self.last = np.zeros(0)

    def _grow(self, n_clients):
        self.last = np.concatenate([self.last, np.zeros(n_clients - self.last.shape[0])])

    def on_arrival(self, request, now_s):
        self.last[self.client_index(request.client)] = request.arrival_s

    def client_scores(self, now_s):
        return -self.last
'''


def test_a_policy_added_as_one_file_runs_in_all_three_modes(tmp_path: object,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # The package directory is where discovery looks; a second directory on the package's
    # __path__ stands in for policies/ so the test does not write into the source tree.
    import sys
    from pathlib import Path

    import exfairs.policies as package
    from exfairs.policies import registry
    from exfairs.records import SLO, ClientInfo, Request, Workload
    from exfairs.sim.config import EngineConfig
    from exfairs.sim.runner import simulate

    assert isinstance(tmp_path, Path)
    (tmp_path / "one_file_lifo.py").write_text(ONE_FILE_POLICY, encoding="utf-8")
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "exfairs.policies.one_file_lifo", raising=False)
    registry._load_builtins.cache_clear()
    assert "ONE_FILE_LIFO" in available_policies()
    from exfairs.calibration.costmodel import CostCoefficients
    from exfairs.calibration.profile import EngineDefaults, Profile, ProfileMetadata

    prof = Profile(
        metadata=ProfileMetadata(id="test", hardware="test", model="test"),
        engine=EngineDefaults(num_gpu_blocks=100, block_size=16, max_num_seqs=1,
                              max_num_batched_tokens=64, max_model_len=128),
        coefficients=CostCoefficients(fixed_ms=10.0, decode_fixed_ms=0.0, prefill_token_ms=0.0,
                                      prefill_attn_ms=0.0, decode_seq_ms=0.0,
                                      decode_ctx_ms=0.0))
    reqs = tuple(Request(request_id=i, client="ab"[i % 2], arrival_s=0.001 * i, prompt_tokens=8,
                         output_tokens=4, slo=SLO()) for i in range(8))
    wl = Workload(name="t", seed=0, clients=(ClientInfo("a"), ClientInfo("b")), requests=reqs,
                  duration_s=1.0)
    eng = EngineConfig(max_num_seqs=1, max_num_batched_tokens=64, block_size=16,
                       num_gpu_blocks=100, max_model_len=128)
    orders = []
    for exp in ("ONE_FILE_LIFO", "QUEUE_ONE_FILE_LIFO", "ENGINE_ONE_FILE_LIFO"):
        res = simulate(wl, exp, prof, engine=eng)
        assert all(r.generated_tokens == 4 for r in res.records)
        orders.append([r.request_id for r in sorted(res.records, key=lambda r: r.finish_s or 0)])
    # Gate and engine mode follow the new policy's order (latest client first), not FCFS.
    assert orders[1] != sorted(orders[1]) and orders[2] != sorted(orders[2])
    registry._load_builtins.cache_clear()
