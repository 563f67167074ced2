"""Sweep summaries: grouping, Student-t intervals, CSV and the text table."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from metrics_factory import make_result
from scipy import stats

from exfairs.errors import InputError
from exfairs.summary import (
    SUMMARY_METRICS,
    format_table,
    mean_ci95,
    metric_value,
    summarize,
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
    assert len(body) == 2 and "ExFairS" in body[0] and "±" in body[0]
    assert len({len(rule), len(head)}) <= 2
