"""A sweep killed with SIGKILL mid-write resumes without losing a finished cell, and two sweeps
never write into one directory at once (real processes, real signals: no mocks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sweep_helpers import comparable_bytes, leftovers, result_files

from exfairs.atomic import is_temp_name
from exfairs.dirlock import LOCK_NAME, locked_dir
from exfairs.errors import InputError
from exfairs.results import read_result
from exfairs.sim.cli import main

EXE = Path(sys.executable).with_name("exfairs-sim")
# The bundled default scenario: a cell's results file is large enough (hundreds of requests with
# every token time) that its write takes long enough to be caught mid-way.
ARGS = ["sweep", "--scenario", "default", "-e", "FCFS", "--loads", "0.6", "--jobs", "1",
        "--no-plots"]


def _temps(out: Path) -> list[Path]:
    return [p for p in out.glob(".*") if is_temp_name(p.name)] if out.exists() else []


def _loads(path: Path) -> bool:
    try:
        read_result(path)
    except InputError:
        return False
    return True


def _start(out: Path, seeds: list[int]) -> subprocess.Popen[str]:
    return subprocess.Popen([str(EXE), *ARGS, "--seeds", *map(str, seeds), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_for(proc: subprocess.Popen[str], what: str, ready: object, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():  # type: ignore[operator]
        assert proc.poll() is None, f"exited before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {what} in {timeout} s"
        time.sleep(0.0005)


@pytest.mark.slow
def test_sigkill_mid_write_then_resume_loses_no_finished_cell(tmp_path: Path) -> None:
    seeds = [0, 1, 2, 3]
    ref = tmp_path / "ref"
    assert main([*ARGS, "--seeds", *map(str, seeds), "--out", str(ref)]) == 0
    reference = {p.name: comparable_bytes(p) for p in result_files(ref)}
    assert len(reference) == len(seeds)

    out = tmp_path / "out"
    mid_write_kills = 0
    finished_before: set[str] = set()
    # Kill while a results file is being written, twice (the first cell, then a later one). A
    # kill that lands just after a rename is retried: the temporary file left after the kill is
    # the proof that it landed mid-write.
    for _attempt in range(10):
        if mid_write_kills == 2:
            break
        stale = set(_temps(out))  # the previous kill's leftovers: not this run's writes
        need = len(finished_before) + (1 if mid_write_kills else 0)
        proc = _start(out, seeds)

        def writing(stale: set[Path] = stale, need: int = need) -> bool:
            return bool(set(_temps(out)) - stale) and len(result_files(out)) >= need

        try:
            _wait_for(proc, "temporary results file", writing)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        assert proc.returncode == -signal.SIGKILL
        mid_write_kills += bool(set(_temps(out)) - stale)
        # A cell is finished when its JSON and its records file load and match (a kill between
        # the two renames leaves a JSON whose records are missing: that cell is not finished).
        finished = {p.name for p in result_files(out) if _loads(p)}
        assert finished_before <= finished  # a kill never loses a finished cell
        for p in result_files(out):  # nor leaves a half-written file under a cell's name
            assert comparable_bytes(p) == reference[p.name]
        finished_before = finished
        if len(finished) == len(seeds):
            break
    assert mid_write_kills == 2, "the kills did not land mid-write: test inconclusive"
    assert finished_before, "no cell finished before the last kill: reuse untested"
    assert (out / LOCK_NAME).exists()  # what a killed holder leaves behind

    again = subprocess.run([str(EXE), *ARGS, "--seeds", *map(str, seeds), "--out", str(out)],
                           capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    assert f"{len(finished_before)} cell(s) already done were reused" in again.stderr
    assert {p.name: comparable_bytes(p) for p in result_files(out)} == reference
    assert all(_loads(p) for p in result_files(out))
    assert leftovers(out) == []  # temporary files of the killed runs and the lock file removed


def test_a_locked_directory_is_refused_naming_the_holder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    with locked_dir(out):
        code = main(["run", "default", "-e", "FCFS", "--load", "0.3", "--no-plots",
                     "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2, err
        assert f"another exfairs process (pid {os.getpid()})" in err
        assert "field '--out'" in err and err.count("\n") == 1
        assert result_files(out) == []
    assert not (out / LOCK_NAME).exists()
    assert main(["run", "default", "-e", "FCFS", "--load", "0.3", "--no-plots",
                 "--out", str(out)]) == 0  # released: the next run gets it


@pytest.mark.slow
def test_two_sweeps_into_one_directory(tmp_path: Path) -> None:
    """A second sweep started while the first runs is refused, naming the first one's pid; the
    first completes untouched. Then two started at the same instant: exactly one runs."""
    out = tmp_path / "out"
    seeds = list(range(10))  # several seconds of work: the second one starts well before the end
    first = _start(out, seeds)
    try:
        _wait_for(first, "lock file", lambda: (out / LOCK_NAME).exists())
        second = subprocess.run([str(EXE), *ARGS, "--seeds", *map(str, seeds), "--out",
                                 str(out)], capture_output=True, text=True, timeout=120,
                                check=False)
        assert second.returncode == 2, second.stderr
        assert f"(pid {first.pid})" in second.stderr and "Traceback" not in second.stderr
        _, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    assert first.returncode == 0, err
    files = result_files(out)
    assert len(files) == len(seeds) and leftovers(out) == []
    for p in files:
        read_result(p)

    race = tmp_path / "race"
    procs = [_start(race, seeds) for _ in range(2)]
    codes = sorted(p.wait(timeout=300) for p in procs)
    for p in procs:
        p.communicate()
    assert codes == [0, 2], codes
    assert len(result_files(race)) == len(seeds) and leftovers(race) == []
