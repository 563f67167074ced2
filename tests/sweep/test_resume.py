"""Resumable sweeps: finished cells are reused, missing or corrupt ones recomputed, --force
recomputes everything, and a Ctrl-C keeps every finished cell."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sweep_helpers import comparable_bytes, leftovers, result_files, write_tiny_scenario

from exfairs.results import read_result
from exfairs.sim.cli import main
from exfairs.sim.sweep import Cell, SweepConfig, run_sweep


def _args(scenario: Path, out: Path, *extra: str) -> list[str]:
    return ["sweep", "--scenario", str(scenario), "-e", "FCFS", "-e", "QUEUE_VTC",
            "--seeds", "0", "1", "--loads", "1.0", "--jobs", "1", "--no-plots",
            "--out", str(out), *extra]


@pytest.fixture()
def done_sweep(tmp_path: Path) -> tuple[Path, Path]:
    """A finished 4-cell sweep of the tiny scenario: (scenario file, output directory)."""
    scen = write_tiny_scenario(tmp_path)
    out = tmp_path / "out"
    assert main(_args(scen, out)) == 0
    assert len(result_files(out)) == 4
    return scen, out


def _stamps(out: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in result_files(out)}


def test_rerun_skips_every_finished_cell(done_sweep: tuple[Path, Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    scen, out = done_sweep
    before = _stamps(out)
    capsys.readouterr()
    assert main(_args(scen, out)) == 0
    assert "4 cell(s) already done were reused" in capsys.readouterr().err
    assert _stamps(out) == before  # not one file rewritten


def test_truncated_corrupt_and_missing_cells_are_recomputed(
        done_sweep: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    scen, out = done_sweep
    files = result_files(out)
    reference = {p.name: comparable_bytes(p) for p in files}
    truncated, garbage, wrong_schema, missing = files
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    garbage.write_bytes(b"\xff\xfe not json at all")
    wrong_schema.write_text('{"schema": "something.else", "schema_version": 1}\n')
    missing.unlink()
    capsys.readouterr()
    assert main(_args(scen, out)) == 0
    err = capsys.readouterr().err
    assert "cell(s) already done" not in err  # all four were broken or gone
    assert {p.name: comparable_bytes(p) for p in result_files(out)} == reference
    for p in result_files(out):
        read_result(p)


def test_run_sweep_reports_which_cells_were_reused(tmp_path: Path) -> None:
    scen = write_tiny_scenario(tmp_path)
    config = SweepConfig(scenarios=(str(scen),), experiments=("FCFS", "VTC"), seeds=(3,))
    first = run_sweep(config, tmp_path / "o")
    assert [o.skipped for o in first.outcomes] == [False, False]
    first.outcomes[1].path.write_text("{")
    again = run_sweep(config, tmp_path / "o")
    assert [o.skipped for o in again.outcomes] == [True, False]
    forced = run_sweep(config, tmp_path / "o", force=True)
    assert [o.skipped for o in forced.outcomes] == [False, False]


def test_force_recomputes(done_sweep: tuple[Path, Path],
                          capsys: pytest.CaptureFixture[str]) -> None:
    scen, out = done_sweep
    before = _stamps(out)
    time.sleep(0.01)  # mtime resolution
    capsys.readouterr()
    assert main(_args(scen, out, "--force")) == 0
    assert "already done" not in capsys.readouterr().err
    after = _stamps(out)
    assert after.keys() == before.keys()
    assert all(after[k][0] != before[k][0] for k in after)  # every file rewritten
    assert {p.name: comparable_bytes(p) for p in result_files(out)} == {
        k: comparable_bytes(out / k) for k in before}


def test_cell_key_covers_the_configuration(tmp_path: Path) -> None:
    scen = write_tiny_scenario(tmp_path)
    base = Cell(str(scen), "FCFS", 0, 1.0, "a100-llama2-7b", (("max_num_seqs", 8),))
    variants = [
        Cell(str(scen), "VTC", 0, 1.0, "a100-llama2-7b", (("max_num_seqs", 8),)),
        Cell(str(scen), "FCFS", 1, 1.0, "a100-llama2-7b", (("max_num_seqs", 8),)),
        Cell(str(scen), "FCFS", 0, 1.1, "a100-llama2-7b", (("max_num_seqs", 8),)),
        Cell(str(scen), "FCFS", 0, 1.0, "h100-llama2-70b-tp4", (("max_num_seqs", 8),)),
        Cell(str(scen), "FCFS", 0, 1.0, "a100-llama2-7b", (("max_num_seqs", 9),)),
        Cell(str(scen), "FCFS", 0, 1.0, "a100-llama2-7b", (("max_num_seqs", 8),),
             (("alpha", 0.5),)),
    ]
    keys = {base.key()} | {v.key() for v in variants}
    assert len(keys) == 1 + len(variants)
    # The scenario file's content, not its path, is part of the key.
    before = base.key()
    scen.write_text(scen.read_text().replace("duration_s = 12", "duration_s = 13"))
    assert base.key() != before
    copy = tmp_path / "sub" / "tiny.toml"
    copy.parent.mkdir()
    copy.write_text(scen.read_text())
    assert Cell(str(copy), "FCFS", 0, 1.0, "a100-llama2-7b",
                (("max_num_seqs", 8),)).key() == base.key()


def _sigint_sweep(tmp_path: Path, jobs: int, whole_group: bool, n_seeds: int) -> None:
    """Start `exfairs-sim sweep`, send SIGINT once its first cell file is there, check what is
    left, then rerun to completion."""
    scen = write_tiny_scenario(tmp_path)
    out = tmp_path / "out"
    seeds = [str(s) for s in range(n_seeds)]
    argv = ["sweep", "--scenario", str(scen), "-e", "FCFS", "-e", "QUEUE_VTC", "--seeds", *seeds,
            "--loads", "1.0", "--jobs", str(jobs), "--no-plots", "--out", str(out)]
    total = 2 * n_seeds
    exe = Path(sys.executable).with_name("exfairs-sim")
    proc = subprocess.Popen([str(exe), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not result_files(out) if out.exists() else True:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no cell finished in 120 s"
            time.sleep(0.005)
        if whole_group:  # what a terminal's Ctrl-C does: the sweep and its workers
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err, err
    kept = result_files(out)
    assert 1 <= len(kept) < total, "the sweep finished before the interrupt: test inconclusive"
    for p in kept:
        read_result(p)
    assert leftovers(out) == []
    assert not (out / "summary.csv").exists()
    again = subprocess.run([str(exe), *argv], capture_output=True, text=True, timeout=300,
                           check=False)
    assert again.returncode == 0, again.stderr
    assert f"{len(kept)} cell(s) already done were reused" in again.stderr
    assert len(result_files(out)) == total and leftovers(out) == []


def test_sigint_keeps_finished_cells_and_rerun_completes(tmp_path: Path) -> None:
    _sigint_sweep(tmp_path, jobs=1, whole_group=False, n_seeds=5)


@pytest.mark.slow
def test_ctrl_c_on_process_pool_keeps_finished_cells(tmp_path: Path) -> None:
    _sigint_sweep(tmp_path, jobs=2, whole_group=True, n_seeds=10)


@pytest.mark.slow
def test_sigint_to_the_parent_of_a_process_pool(tmp_path: Path) -> None:
    _sigint_sweep(tmp_path, jobs=2, whole_group=False, n_seeds=10)
