"""Sweep files: parsing, validation and cell identity."""

from __future__ import annotations

import pytest

from exfairs.errors import InputError
from exfairs.sim.sweep import Cell, SweepConfig, load_sweep, sweep_from_toml


def test_bundled_default_sweep_loads() -> None:
    config = load_sweep("default")
    assert config.name == "default"
    cells = config.cells()
    assert len(cells) == (len(config.scenarios) * len(config.experiments) * len(config.seeds)
                          * len(config.load_factors))
    assert len({c.file_name() for c in cells}) == len(cells)


def test_experiment_names_are_canonicalised() -> None:
    config = SweepConfig(experiments=("queue_fcfs", "fcfs"))
    assert [c.experiment for c in config.cells()] == ["QUEUE_FCFS", "FCFS"]


def test_cell_key_changes_with_every_field() -> None:
    base = Cell("default", "FCFS", 0, 1.0, "a100-llama2-7b")
    variants = [
        Cell("other", "FCFS", 0, 1.0, "a100-llama2-7b"),
        Cell("default", "VTC", 0, 1.0, "a100-llama2-7b"),
        Cell("default", "FCFS", 1, 1.0, "a100-llama2-7b"),
        Cell("default", "FCFS", 0, 1.2, "a100-llama2-7b"),
        Cell("default", "FCFS", 0, 1.0, "cpu-tiny-llama"),
        Cell("default", "FCFS", 0, 1.0, "a100-llama2-7b", engine=(("max_num_seqs", 8),)),
        Cell("default", "FCFS", 0, 1.0, "a100-llama2-7b", policy_params=(("alpha", 0.5),)),
    ]
    keys = {v.key() for v in variants}
    assert base.key() not in keys and len(keys) == len(variants)
    assert base.key() == Cell("default", "FCFS", 0, 1.0, "a100-llama2-7b").key()


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("seeds = [-1]", "seeds"),
        ("seeds = [1.5]", "seeds"),
        ("load_factors = [0]", "load_factors"),
        ("load_factors = [nan]", "load_factors"),
        ("experiments = []", "experiments"),
        ("experiments = [3]", "experiments"),
        ("bogus = 1", "bogus"),
        ("engine = 3", "engine"),
        ("engine = {max_num_seqs = [1]}", "engine.max_num_seqs"),
        ("profile = 7", "profile"),
        ("seeds = [", "(file)"),
    ],
)
def test_malformed_sweep_files_name_the_field(text: str, field: str) -> None:
    with pytest.raises(InputError) as info:
        sweep_from_toml(text, "bad.toml")
    assert info.value.field == field
    assert "bad.toml" in str(info.value)


def test_unknown_experiment_lists_valid_names() -> None:
    with pytest.raises(InputError, match="QUEUE_FCFS"):
        SweepConfig(experiments=("NOPE",)).cells()


def test_missing_sweep_file(tmp_path: object) -> None:
    with pytest.raises(InputError, match="no such sweep"):
        load_sweep("does-not-exist.toml")
