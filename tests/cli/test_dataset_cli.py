"""CLI conventions of issue #14: --duration / --num-prompts, BooleanOptionalAction flags, `list`
naming sweeps and datasets, a dataset scenario end to end, --tokenizer errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from exfairs.live.cli import main as live_main
from exfairs.results import read_result
from exfairs.sim.cli import main as sim_main
from exfairs.sim.sweep import Cell, SweepConfig

DEAD_URL = ["--vllm-url", "http://127.0.0.1:9", "--no-warmup"]


def _results(out: Path) -> list:  # type: ignore[type-arg]
    return [read_result(p) for p in sorted(out.glob("*.json"))]


def test_list_names_sweeps_and_datasets(capsys: pytest.CaptureFixture[str]) -> None:
    assert sim_main(["list"]) == 0
    out = capsys.readouterr().out
    assert "sweeps:      default load-sweep" in out
    assert "sharegpt-mini.json" in out and "sharegpt-mini" in out.split("\n")[0]


def test_dataset_scenario_runs_with_num_prompts(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert sim_main(["run", "sharegpt-mini", "-e", "FCFS", "--num-prompts", "30", "--no-plots",
                     "--out", str(out)]) == 0
    (r,) = _results(out)
    assert len(r.records) == 30
    knobs = dict(r.info.engine_knobs)
    assert knobs["prompt_lengths"] == "estimate: ceil(characters / 4)"
    assert knobs["dataset"] == "sharegpt-mini.json"


def test_duration_sets_the_horizon(tmp_path: Path) -> None:
    args = ["run", "default", "-e", "FCFS", "--load", "0.5", "--no-plots"]
    assert sim_main([*args, "--duration", "40", "--out", str(tmp_path / "a")]) == 0
    (r,) = _results(tmp_path / "a")
    assert max(x.arrival_s for x in r.records) < 40


def test_horizon_options_are_exclusive_and_checked(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        sim_main(["run", "default", "--duration", "5", "--num-prompts", "4"])
    assert exc.value.code == 2
    capsys.readouterr()
    assert sim_main(["run", "default", "-e", "FCFS", "--num-prompts", "0", "--no-plots",
                     "--out", str(tmp_path / "o")]) == 2
    assert "--num-prompts" in capsys.readouterr().err


def test_cells_keep_their_keys_without_the_new_options() -> None:
    base = Cell("default", "FCFS", 0, 1.0, "a100-llama2-7b")
    assert SweepConfig(scenarios=("default",)).cells()[0].key() == base.key()
    keys = {c.key() for c in (SweepConfig(duration_s=30.0).cells()[0],
                              SweepConfig(num_prompts=50).cells()[0], base)}
    assert len(keys) == 3


def test_boolean_flags_follow_vllm(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:  # no value after a boolean flag any more
        sim_main(["run", "default", "--enable-chunked-prefill", "true"])
    assert exc.value.code == 2
    out = tmp_path / "o"
    assert sim_main(["run", "default", "-e", "FCFS", "--num-prompts", "20", "--no-plots",
                     "--no-enable-chunked-prefill", "--out", str(out)]) == 0
    (r,) = _results(out)
    assert dict(r.info.engine_knobs)["enable_chunked_prefill"] is False
    assert not (out / "plots").exists()


def test_live_tokenizer_errors_before_any_load(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code = live_main(["run", "sharegpt-mini", "-e", "QUEUE_FCFS", *DEAD_URL, "--tokenizer",
                      str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "tokenizer" in err and "Traceback" not in err
    code = live_main(["run", "default", "-e", "QUEUE_FCFS", *DEAD_URL, "--tokenizer",
                      str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "--tokenizer" in err
    assert not (tmp_path / "o").exists()
