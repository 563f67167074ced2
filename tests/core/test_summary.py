"""Sweep summaries: grouping, Student-t intervals, CSV and the text table."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from metrics_factory import make_result
from scipy import stats

from exfairs.errors import InputError
from exfairs.summary import (
    SUMMARY_METRICS,
    UNIT,
    experiment_sort_key,
    format_table,
    mean_ci95,
    metric_value,
    summarize,
    wilson_interval,
    write_summary_csv,
)


def test_mean_ci95_matches_student_t() -> None:
    s = mean_ci95([1.0, 2.0, 3.0])
    assert s.mean == pytest.approx(2.0)
    assert s.ci95 == pytest.approx(stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3))
    assert s.ci95 == pytest.approx(2.4841, abs=1e-4)
    assert s.n == 3
    one = mean_ci95([5.0, math.nan])
    assert (one.mean, one.n) == (5.0, 1) and math.isnan(one.ci95)
    assert mean_ci95([]).n == 0


def test_summarize_groups_over_seeds() -> None:
    runs = [make_result(exp, seed, load_factor=load)
            for exp in ("VTC", "QUEUE_FCFS") for seed in (0, 1, 2) for load in (0.8, 1.2)]
    rows = summarize(runs)
    assert len(rows) == 4
    assert [(r.experiment, r.load_factor) for r in rows] == [
        ("QUEUE_FCFS", 0.8), ("VTC", 0.8), ("QUEUE_FCFS", 1.2), ("VTC", 1.2)]
    row = rows[1]
    assert row.seeds == (0, 1, 2)
    group = [r for r in runs if r.info.experiment == "VTC" and r.info.load_factor == 0.8]
    for spec in SUMMARY_METRICS:
        vals = [metric_value(r, spec.key) for r in group]
        assert row.stat(spec.key).mean == pytest.approx(float(np.nanmean(vals)), nan_ok=True)
    v = [r.metrics.overall.violation_rate for r in group]
    assert row.stat("violation_rate").ci95 == pytest.approx(
        stats.t.ppf(0.975, 2) * np.std(v, ddof=1) / math.sqrt(3))
    assert row.stat("jain_attainment").mean == pytest.approx(
        np.mean([r.metrics.fairness.jain_attainment for r in group]))


def test_duplicate_seed_is_an_error() -> None:
    with pytest.raises(InputError, match="same seed"):
        summarize([make_result("VTC", 1), make_result("VTC", 1)])


def test_csv_and_table(tmp_path: Path) -> None:
    rows = summarize([make_result(e, s) for e in ("VTC", "ExFairS") for s in (0, 1)])
    path = tmp_path / "summary.csv"
    write_summary_csv(rows, path)
    with path.open() as f:
        lines = list(csv.DictReader(f))
    assert [ln["experiment"] for ln in lines] == [r.experiment for r in rows]
    assert float(lines[0]["violation_rate_mean"]) == pytest.approx(
        rows[0].stat("violation_rate").mean)
    assert lines[0]["n_seeds"] == "2" and lines[0]["seeds"] == "0 1"
    table = format_table(rows)
    head, rule, *body = table.splitlines()
    assert "experiment" in head and "J(att)" in head
    # Experiments in the one order of every table and figure: VTC before ExFairS.
    assert len(body) == 2 and "VTC" in body[0] and "ExFairS" in body[1]
    # The violation rate's t-interval would go below 0 here: the table shows clipped ends.
    vr = rows[0].stat("violation_rate")
    assert vr.clipped and vr.lo == 0.0 and f"[0.000,{vr.hi:.3f}]" in body[0]
    assert float(lines[0]["violation_rate_lo"]) == 0.0
    assert len({len(rule), len(head)}) <= 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12))
def test_intervals_of_a_proportion_stay_in_unit_range(values: list[float]) -> None:
    s = mean_ci95(values, UNIT)
    if s.n > 1:
        assert 0.0 <= s.lo <= s.mean <= s.hi <= 1.0
        assert s.clipped == (s.mean - s.ci95 < 0.0 or s.mean + s.ci95 > 1.0)
    assert 0.0 <= s.mean <= 1.0


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 500), st.integers(1, 500))
def test_wilson_interval_contains_the_proportion_and_stays_in_range(k: int, n: int) -> None:
    k = min(k, n)
    lo, hi = wilson_interval(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_wilson_matches_the_textbook_value_and_summary_rows_clip() -> None:
    lo, hi = wilson_interval(8, 10)  # Newcombe (1998) table I: 0.4902, 0.9433
    assert (lo, hi) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    rows = summarize([make_result("VTC", s) for s in (0, 1)])
    for spec in SUMMARY_METRICS:
        stat = rows[0].stat(spec.key)
        if stat.n > 1 and not math.isnan(stat.lo):
            assert spec.bounds[0] <= stat.lo <= stat.hi <= spec.bounds[1], spec.key


def test_experiment_order_is_by_policy_then_mode() -> None:
    names = ["ExFairS", "QUEUE_VTC", "ENGINE_FCFS", "FCFS", "QUEUE_FCFS", "MyPolicy", "VTC",
             "QUEUE_ExFairS"]
    assert sorted(names, key=experiment_sort_key) == [
        "QUEUE_FCFS", "FCFS", "ENGINE_FCFS", "QUEUE_VTC", "VTC", "QUEUE_ExFairS", "ExFairS",
        "MyPolicy"]
