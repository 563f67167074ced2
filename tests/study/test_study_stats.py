"""The study's statistics and number formatting (`exfairs.sim.study`), without running a sweep:
verdicts, pairing by seed, and the document's number formats; plus the script's bad-input exit."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exfairs.sim.study import stats
from exfairs.sim.study.data import StudyData
from exfairs.sim.study.markdown import fmt, fmt_diff, fmt_pct, fmt_stat, md_table
from exfairs.summary import Stat, mean_ci95

ROOT = Path(__file__).resolve().parents[2]

_FLIP = {"win": "loss", "loss": "win", "tie": "tie", "n/a": "n/a"}


def test_verdict_needs_the_interval_to_exclude_zero() -> None:
    assert stats.verdict(Stat(0.1, 0.05, 3), True) == "win"
    assert stats.verdict(Stat(0.1, 0.05, 3), False) == "loss"
    assert stats.verdict(Stat(0.1, 0.2, 3), True) == "tie"
    assert stats.verdict(Stat(-0.1, 0.05, 3), True) == "loss"
    # One seed: no interval, the sign decides.
    assert stats.verdict(Stat(0.1, math.nan, 1), True) == "win"
    assert stats.verdict(Stat(0.0, 0.0, 5), True) == "tie"
    assert stats.verdict(Stat(math.nan, math.nan, 0), True) == "n/a"


@given(mean=st.floats(-10, 10), half=st.floats(0, 10) | st.just(math.nan),
       n=st.integers(1, 10), hib=st.booleans())
def test_verdict_is_symmetric(mean: float, half: float, n: int, hib: bool) -> None:
    v = stats.verdict(Stat(mean, half, n), hib)
    # Negating the difference swaps win and loss; so does flipping which side is better.
    assert stats.verdict(Stat(-mean, half, n), hib) == _FLIP[v]
    assert stats.verdict(Stat(-mean, half, n), not hib) == v
    if v == "win":
        lo = mean - (0.0 if math.isnan(half) else half)
        hi = mean + (0.0 if math.isnan(half) else half)
        assert (lo > 0) if hib else (hi < 0)


def _data(runs: dict[tuple[str, float, str], dict[int, float]]) -> StudyData:
    # Only `runs` is read by paired_difference; the metric lookup is replaced below.
    return StudyData(config=None, out_dir=Path("."), rows=(), runs=runs)  # type: ignore[arg-type]


def test_paired_difference_pairs_by_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats, "metric", lambda res, key: res)
    data = _data({("s", 1.0, "A"): {0: 0.9, 1: 0.8, 2: 0.7, 5: 0.1},
                  ("s", 1.0, "B"): {0: 0.5, 1: 0.6, 2: 0.6, 3: 0.0}})
    d = stats.paired_difference(data, "s", 1.0, "A", "B", "worst_client_attainment")
    # Seeds 0, 1, 2 only: 5 has no B, 3 no A.
    assert d == mean_ci95([0.9 - 0.5, 0.8 - 0.6, 0.7 - 0.6])
    assert d.n == 3
    other = _data({("s", 1.0, "A"): {1: 0.5}})
    d2 = stats.paired_difference(data, "s", 1.0, "A", "A", "jain_qoe", other)
    assert d2.n == 1 and d2.mean == pytest.approx(0.3)
    assert stats.paired_difference(data, "s", 2.0, "A", "B", "jain_qoe").n == 0


def test_number_formats() -> None:
    assert fmt(math.nan, 3) == "–"
    assert fmt(1234.5678, 2, 1e-3) == "1.23"
    assert fmt_stat(Stat(0.5, math.nan, 1), 3) == "0.500"
    assert fmt_stat(Stat(0.5, 0.01234, 3), 3) == "0.500 ± 0.012"
    assert fmt_diff(Stat(-0.25, 0.1, 3), 2) == "−0.25 ± 0.10"
    assert fmt_diff(Stat(0.0, math.nan, 1), 2) == "+0.00"
    assert fmt_pct(-0.0123) == "−1.23%"
    assert fmt_pct(math.nan) == "–"


def test_md_table_aligns_columns() -> None:
    table = md_table(["a", "b", "c"], [["x", "1", "2"]])
    assert table == "| a | b | c |\n| :--- | ---: | ---: |\n| x | 1 | 2 |\n"
    assert md_table(["a", "b"], [], "ll").splitlines()[1] == "| :--- | :--- |"


def test_script_rejects_bad_jobs_before_running_anything(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "studies" / "run_study.py"),
                           "--jobs", "0", "--out", str(out), "--doc", str(tmp_path / "r.md")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "--jobs" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and not (tmp_path / "r.md").exists()
