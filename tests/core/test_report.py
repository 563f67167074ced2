"""The HTML report: one self-contained file with the tables and inline SVG figures, written
atomically."""

from __future__ import annotations

from pathlib import Path

import pytest
from metrics_factory import make_result, make_workload_records

from exfairs import atomic as atomic_mod
from exfairs import report as report_mod
from exfairs.errors import InputError
from exfairs.results import write_result
from exfairs.sim.cli import main


def _runs(folder: Path) -> Path:
    folder.mkdir()
    for exp in ("QUEUE_VTC", "FCFS"):
        for seed in (0, 1):
            res = make_result(exp, seed, window=(2.0, 15.0), clients=("a", "b"),
                              records=make_workload_records(seed, ("a", "b")))
            write_result(res, folder / f"{exp}_{seed}.json")
    return folder


def test_report_has_tables_and_inline_figures(tmp_path: Path) -> None:
    runs = _runs(tmp_path / "runs")
    out = tmp_path / "report.html"
    assert main(["report", str(runs), "--html", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert text.count("<svg") >= 2  # the aggregated figure and a fairness figure
    assert "<?xml" not in text and "<img" not in text  # inline, nothing beside the file
    assert "Per client" in text and "SLO attainment" in text
    # One experiment order everywhere: FCFS before VTC in the summary table.
    assert text.index(">FCFS</td>") < text.index(">QUEUE_VTC</td>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "runs"]


def test_report_is_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _runs(tmp_path / "runs")
    out = tmp_path / "report.html"
    out.write_text("old", encoding="utf-8")

    def broken(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    # The whole report is rendered, then the rename into place fails: the old file stays.
    monkeypatch.setattr(atomic_mod.os, "replace", broken)
    with pytest.raises(InputError):
        report_mod.write_html_report([runs], out, figures=False)
    assert out.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "runs"]


def test_report_of_a_missing_directory_is_a_clear_error(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    assert main(["report", str(tmp_path / "nope"), "--html", str(tmp_path / "r.html")]) == 2
    assert "nope" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()
