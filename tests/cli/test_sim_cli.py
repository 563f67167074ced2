"""End-to-end tests of `exfairs-sim` through its `main()` (same code path as the console script)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from exfairs.results import read_result
from exfairs.sim.cli import main

WALL_CLOCK_FIELDS = ("created_utc", "wall_time_s", "git_revision")


def _comparable(path: Path) -> dict[str, object]:
    doc = json.loads(path.read_text())
    for key in WALL_CLOCK_FIELDS:
        doc["run"]["info"].pop(key, None)
    # The records (Parquet, named by checksum in the JSON) must be byte-identical too.
    doc["records_bytes"] = path.with_suffix(".parquet").read_bytes()
    return doc


def test_run_writes_results_plots_and_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "default", "-e", "FCFS", "-e", "QUEUE_VTC", "--seed", "3", "--load", "0.5",
                 "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "QUEUE_VTC" in out and "FCFS" in out
    results = sorted(tmp_path.glob("*.json"))
    assert len(results) == 2
    for path in results:
        result = read_result(path)
        assert result.info.seed == 3 and result.info.backend == "sim"
        assert len(result.records) == len({r.request_id for r in result.records}) > 0
    assert (tmp_path / "summary.csv").is_file()
    assert list((tmp_path / "plots").rglob("*.png"))


@pytest.mark.slow
def test_default_sweep_end_to_end(tmp_path: Path) -> None:
    """The README's main command, as a user runs it (console script, defaults, fresh directory)."""
    exe = Path(sys.executable).with_name("exfairs-sim")
    proc = subprocess.run([str(exe), "sweep"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    out_dir = tmp_path / "results" / "default"
    from exfairs.sim.sweep import load_sweep

    n_cells = len(load_sweep("default").cells())
    assert len(list(out_dir.glob("*.json"))) == n_cells
    assert (out_dir / "summary.csv").read_text().count("\n") > 1
    assert list((out_dir / "plots").glob("aggregated*.png"))
    # Rerunning reuses every finished cell.
    again = subprocess.run([str(exe), "sweep", "--no-plots"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=600, check=False)
    assert again.returncode == 0
    assert f"{n_cells} cell(s) already done" in again.stderr


@pytest.mark.slow
def test_same_seed_same_results_whatever_the_number_of_jobs(tmp_path: Path) -> None:
    args = ["sweep", "--seeds", "0", "1", "--loads", "1.1", "-e", "ExFairS", "-e", "QUEUE_VTC",
            "--no-plots"]
    assert main([*args, "--jobs", "1", "--out", str(tmp_path / "j1")]) == 0
    assert main([*args, "--jobs", "2", "--out", str(tmp_path / "j2")]) == 0
    files1 = sorted(p.name for p in (tmp_path / "j1").glob("*.json"))
    files2 = sorted(p.name for p in (tmp_path / "j2").glob("*.json"))
    assert files1 == files2 and len(files1) == 4
    for name in files1:
        assert _comparable(tmp_path / "j1" / name) == _comparable(tmp_path / "j2" / name)


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "no-such-scenario"],
        ["run", "default", "-e", "NOT_A_POLICY"],
        ["run", "default", "--load", "-1"],
        ["run", "default", "--profile", "nope"],
        ["run", "default", "--max-num-seqs", "0"],
        ["run", "default", "--policy-param", "alpha"],
        ["sweep", "missing.toml"],
        ["sweep", "--seeds", "-3"],
        ["sweep", "--scheduler", "tcp://127.0.0.1:1"],
    ],
)
def test_bad_input_exits_2_with_a_message(tmp_path: Path, argv: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*argv, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "error" in err and "Traceback" not in err
    assert not list((tmp_path / "out").glob("*.json")) if (tmp_path / "out").exists() else True


def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run"])
    assert info.value.code == 2


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "QUEUE_ExFairS" in out and "a100-llama2-7b" in out and "default" in out
