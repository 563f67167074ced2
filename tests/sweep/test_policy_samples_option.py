"""The policy-sample layout on the command line and in sweep files (issue 13, item 6):
`exfairs-sim run/sweep --policy-samples sparse|dense|off` and a sweep file's ``policy_samples``
reach `simulate`, enter a cell's cache key only when not the default (sparse), leave records and
metrics alone, and bad values exit 2 / raise naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from sweep_helpers import write_tiny_scenario

from exfairs.errors import InputError
from exfairs.results import _encode, read_result
from exfairs.sim.cli import main
from exfairs.sim.sweep import Cell, SweepConfig, sweep_from_toml


def test_only_a_non_default_layout_enters_the_cache_key() -> None:
    base = Cell("default", "QUEUE_VTC", 0, 1.0, "a100-llama2-7b")
    assert Cell("default", "QUEUE_VTC", 0, 1.0, "a100-llama2-7b",
                policy_samples="sparse").key() == base.key()
    keys = {Cell("default", "QUEUE_VTC", 0, 1.0, "a100-llama2-7b", policy_samples=s).key()
            for s in ("dense", "off")}
    assert base.key() not in keys and len(keys) == 2


def test_sweep_file_key_reaches_every_cell() -> None:
    config = sweep_from_toml('experiments = ["QUEUE_VTC", "FCFS"]\npolicy_samples = "dense"\n',
                             "s.toml")
    assert config.policy_samples == "dense"
    assert {c.policy_samples for c in config.cells()} == {"dense"}
    assert sweep_from_toml('experiments = ["FCFS"]\n', "s.toml").policy_samples == "sparse"


@pytest.mark.parametrize("value", ['"Dense"', '"none"', "1", "true", "[]"])
def test_bad_sweep_file_layout_names_the_field_and_file(value: str) -> None:
    with pytest.raises(InputError) as info:
        sweep_from_toml(f'experiments = ["FCFS"]\npolicy_samples = {value}\n', "bad.toml")
    assert info.value.field == "policy_samples" and "bad.toml" in str(info.value)
    with pytest.raises(InputError):
        SweepConfig(policy_samples="sometimes")


def test_run_layouts_end_to_end(tmp_path: Path) -> None:
    scen = write_tiny_scenario(tmp_path)
    results = {}
    for layout in ("sparse", "dense", "off", None):
        out = tmp_path / f"out-{layout}"
        args = ["run", str(scen), "-e", "QUEUE_VTC", "--no-plots", "--out", str(out)]
        assert main(args + ([] if layout is None else ["--policy-samples", layout])) == 0
        (path,) = out.glob("*.json")
        results[layout] = read_result(path)
    sparse, dense, off = results["sparse"], results["dense"], results["off"]
    assert _encode(results[None].policy_samples) == _encode(sparse.policy_samples)  # default
    assert sparse.policy_samples and all(s.clients is not None for s in sparse.policy_samples)
    assert dense.policy_samples and all(s.clients is None for s in dense.policy_samples)
    assert off.policy_samples == ()
    for other in (dense, off):
        assert other.records == sparse.records
        assert _encode(other.metrics) == _encode(sparse.metrics)
    # The sparse values are the dense ones of the clients present.
    for s, d in zip(sparse.policy_samples, dense.policy_samples, strict=True):
        full = dict(d.values)
        for name, vals in s.values:
            assert vals == tuple(full[name][c] for c in s.clients or ())


def test_bad_layout_option_exits_2(tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        main(["run", "default", "--policy-samples", "some", "--out", str(out), "--no-plots"])
    assert info.value.code == 2
    assert "--policy-samples" in capsys.readouterr().err
