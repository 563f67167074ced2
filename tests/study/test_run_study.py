"""The study generator (`exfairs.sim.study`, run by studies/run_study.py) on a tiny sweep: it
runs, its document's numbers are the summary's, the target table follows from them, and the same
seeds give the same document."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from exfairs.results import read_result
from exfairs.sim.study import cli
from exfairs.sim.study.document import Prose
from exfairs.sim.study.stats import COLUMNS
from exfairs.summary import summarize

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _tiny_scenario(tmp: Path) -> Path:
    text = (ROOT / "core" / "data" / "scenarios" / "exfairs-1.toml").read_text()
    text = re.sub(r"(?m)^name = .*$", 'name = "tiny-1"', text, count=1)
    text = re.sub(r"(?m)^duration_s = .*$", "duration_s = 40", text)
    text = re.sub(r"(?m)^warmup_s = .*$", "warmup_s = 5", text)
    text = re.sub(r"(?m)^cooldown_s = .*$", "cooldown_s = 5", text)
    path = tmp / "tiny-1.toml"
    path.write_text(text)
    return path


def _sweeps(tmp: Path) -> tuple[Path, Path]:
    scen = _tiny_scenario(tmp)
    study = tmp / "study.toml"
    study.write_text(f'''name = "tiny-study"
scenarios = ["{scen}"]
experiments = ["ExFairS", "VTC", "FCFS", "QUEUE_ExFairS", "QUEUE_FCFS"]
seeds = [0, 1]
load_factors = [1.0]
profile = "a100-llama2-7b"
[engine]
max_num_seqs = 48
''')
    before = tmp / "before.toml"
    before.write_text(f'''name = "tiny-before"
scenarios = ["{scen}"]
experiments = ["ExFairS", "QUEUE_ExFairS"]
seeds = [0, 1]
load_factors = [1.0]
profile = "a100-llama2-7b"
[engine]
max_num_seqs = 48
[policy_params.ExFairS]
early_violations = false
order = "score"
''')
    return study, before


def _prose() -> Prose:
    return Prose(setup="setup words", explanation="why words", changes="change words",
                           target="target words")


def _run(tmp: Path, out: str, doc: str, *extra: str) -> str:
    study, before = _sweeps(tmp)
    live = tmp / "live"
    live.mkdir(exist_ok=True)
    rc = cli.main(["--sweep", str(study), "--before", str(before), "--out", str(tmp / out),
                   "--doc", str(tmp / doc), "--figures", str(tmp / "figs"),
                   "--live-dir", str(live), "--ablation", "none", "--jobs", "1", *extra],
                  root=tmp, prose_loader=_prose)
    assert rc == 0
    return (tmp / doc).read_text()


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _mean(cell: str) -> float:
    return math.nan if cell == "–" else float(cell.split("±")[0].replace("−", "-"))


def test_document_numbers_equal_the_summary(tmp_path: Path) -> None:
    doc = _run(tmp_path, "out", "results.md", "--no-figures")
    results = [read_result(p) for p in sorted((tmp_path / "out").glob("*.json"))]
    rows = {r.experiment: r for r in summarize(results)}
    assert set(rows) == {"ExFairS", "VTC", "FCFS", "QUEUE_ExFairS", "QUEUE_FCFS"}
    section = doc.split("## Results per scenario and load")[1]
    seen = set()
    for line in section.splitlines():
        cells = _cells(line)
        if not cells or not cells[0].startswith("`"):
            continue
        exp = cells[0].strip("`")
        seen.add(exp)
        for (key, _, digits, scale), cell in zip(COLUMNS, cells[1:], strict=True):
            expected = rows[exp].stat(key)
            got = _mean(cell)
            if math.isnan(expected.mean):
                assert math.isnan(got)
            else:
                assert got == pytest.approx(expected.mean * scale, abs=0.51 * 10**-digits)
            if "±" in cell:
                half = float(cell.split("±")[1].strip())
                assert half == pytest.approx(expected.ci95 * scale, abs=0.51 * 10**-digits)
    assert seen == set(rows)
    # The target table follows from the same numbers.
    target = doc.split("## Target check")[1].split("##")[0]
    line = next(x for x in target.splitlines() if x.startswith("| tiny-1 | `ExFairS`"))
    cells = _cells(line)
    worst = rows["ExFairS"].stat("worst_client_attainment").mean
    best = max(r.stat("worst_client_attainment").mean for e, r in rows.items()
               if not e.endswith("ExFairS"))
    assert float(cells[2]) == pytest.approx(worst, abs=5e-4)
    assert (cells[4] == "pass") == (worst >= best)
    jain = rows["ExFairS"].stat("jain_attainment").mean
    assert (cells[6] == "pass") == (jain >= 0.95)
    thr, ref = (rows[e].stat("request_throughput").mean for e in ("ExFairS", "FCFS"))
    assert (cells[8] == "pass") == (thr >= 0.99 * ref)
    assert "Not yet run" in doc
    assert "## Changes to ExFairS, before and after" in doc
    for words in ("setup words", "why words", "change words", "target words"):
        assert words in doc


def test_same_seeds_same_document_and_figures(tmp_path: Path) -> None:
    first = _run(tmp_path, "a", "a.md")
    figs = sorted((tmp_path / "figs").glob("*"))
    assert figs and all(p.suffix == ".png" for p in figs)
    assert any(p.name.startswith("policy-state_") for p in figs)
    assert "](figs/" in first
    (tmp_path / "live" / "validation-x.md").write_text("# Validation\n\n| a | b |\n")
    second = _run(tmp_path, "b", "a.md", "--force")
    assert "From `benchmarks/results/validation-x.md`" in second
    assert first.split("## Live validation")[0] == second.split("## Live validation")[0]


def test_figures_drawn_in_worker_processes_are_the_same_files(tmp_path: Path) -> None:
    """--jobs 2 draws the figures in two processes: the same PNGs, byte for byte, and the same
    document as one process (the second run reuses the first's cells)."""
    first = _run(tmp_path, "a", "a.md")
    serial = {p.name: p.read_bytes() for p in (tmp_path / "figs").glob("*.png")}
    study, before = _sweeps(tmp_path)
    rc = cli.main(["--sweep", str(study), "--before", str(before), "--out", str(tmp_path / "a"),
                   "--doc", str(tmp_path / "b.md"), "--figures", str(tmp_path / "figs2"),
                   "--live-dir", str(tmp_path / "live"), "--ablation", "none", "--jobs", "2"],
                  root=tmp_path, prose_loader=_prose)
    assert rc == 0
    parallel = {p.name: p.read_bytes() for p in (tmp_path / "figs2").glob("*.png")}
    assert serial and parallel == serial
    second = (tmp_path / "b.md").read_text()
    assert second.replace("figs2/", "figs/").replace("--jobs 2", "--jobs 1") == first
    assert not (tmp_path / "a" / "light").exists()  # no per-cell copy beside the results
