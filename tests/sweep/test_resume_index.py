"""The resume index: a rerun of a finished sweep opens no results file; an index entry that no
longer matches its files (edited, replaced) is not trusted."""

from __future__ import annotations

from pathlib import Path

import pytest
from sweep_helpers import result_files, write_tiny_scenario

from exfairs import results as results_mod
from exfairs.resume_index import INDEX_NAME, ResumeIndex
from exfairs.sim.cli import main
from exfairs.summary import summarize


def _args(scenario: Path, out: Path) -> list[str]:
    return ["sweep", "--scenario", str(scenario), "-e", "FCFS", "-e", "QUEUE_VTC",
            "--seeds", "0", "1", "--loads", "1.0", "--jobs", "1", "--no-plots",
            "--out", str(out)]


def test_finished_sweep_resumes_without_parsing_a_result_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    scen = write_tiny_scenario(tmp_path)
    out = tmp_path / "out"
    assert main(_args(scen, out)) == 0
    first = capsys.readouterr().out
    assert len((out / INDEX_NAME).read_text().splitlines()) == 4

    opened: list[str] = []

    def no_reading(path: object, **kw: object) -> object:
        opened.append(str(path))
        raise AssertionError(f"a results file was parsed: {path}")

    monkeypatch.setattr(results_mod, "read_result", no_reading)
    monkeypatch.setattr("exfairs.export.read_records_parquet", no_reading)
    assert main(_args(scen, out)) == 0
    captured = capsys.readouterr()
    assert opened == []
    assert "4 cell(s) already done were reused" in captured.err
    # The same summary table from the index as from the files.
    assert captured.out.split("\n\n")[0] == first.split("\n\n")[0]


def test_stale_entries_are_not_trusted(tmp_path: Path) -> None:
    scen = write_tiny_scenario(tmp_path)
    out = tmp_path / "out"
    assert main(_args(scen, out)) == 0
    index = ResumeIndex.load(out)
    files = result_files(out)
    lights = [index.lookup(p) for p in files]
    assert all(x is not None for x in lights)
    assert len(summarize([x for x in lights if x])) == 2  # the summary needs nothing more
    # A replaced records file (same name, other content) or an edited JSON: no longer vouched.
    a, b = files[0], files[1]
    b.with_suffix(".parquet").replace(a.with_suffix(".parquet"))
    assert index.lookup(a) is None
    text = b.read_text()
    b.write_text(text.replace('"schema_version":2', '"schema_version": 2', 1))
    assert index.lookup(b) is None
    assert index.lookup(files[2]) is not None
    # A torn last line (crash while appending) is skipped, the rest still loads.
    with (out / INDEX_NAME).open("a") as f:
        f.write('{"file": "x.json", "json": [1,')
    assert ResumeIndex.load(out).lookup(files[2]) is not None
