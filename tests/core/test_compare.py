"""`exfairs-sim compare`: pairing by (scenario, load, seed), paired differences, verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from metrics_factory import make_result, make_workload_records

from exfairs.compare import compare, format_comparison, pair_runs
from exfairs.errors import InputError
from exfairs.results import write_result
from exfairs.sim.cli import main


def _runs(experiment: str, slow: str | None, seeds: range = range(4)) -> list:
    return [make_result(experiment, s, records=make_workload_records(s, slow_client=slow))
            for s in seeds]


def test_pairs_by_seed_and_finds_a_consistent_difference() -> None:
    a, b = _runs("VTC", "b"), _runs("ExFairS", None)
    pairs = pair_runs(a, list(reversed(b)))
    assert [(x.info.seed, y.info.seed) for x, y in pairs] == [(0, 0), (1, 1), (2, 2), (3, 3)]
    (c,) = compare(a, b)
    d = {m.key: m for m in c.metrics}
    v = d["violation_rate"]
    assert v.n == 4 and v.mean_diff < 0 and v.verdict == "B better"
    assert v.mean_diff == pytest.approx(v.mean_b - v.mean_a)
    same = {m.key: m for m in compare(a, a)[0].metrics}
    assert same["violation_rate"].mean_diff == 0 and same["violation_rate"].verdict == "~"
    text = format_comparison([c])
    assert "B better" in text and "A = VTC (sim)" in text and "4 paired seed(s)" in text


def test_single_runs_pair_whatever_their_keys_and_bad_sides_are_named() -> None:
    (c,) = compare(_runs("VTC", "b", range(1)), _runs("ExFairS", None, range(3, 4)))
    assert all(m.n == 1 for m in c.metrics)
    with pytest.raises(InputError, match="two runs of scenario"):
        pair_runs([*_runs("VTC", "b"), *_runs("FCFS", "b")], _runs("ExFairS", None))
    with pytest.raises(InputError, match="no run of A"):
        pair_runs(_runs("VTC", "b", range(2)), _runs("ExFairS", None, range(5, 7)))


def test_cli_compares_directories(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, runs in (("a", _runs("VTC", "b")), ("b", _runs("ExFairS", None))):
        for r in runs:
            write_result(r, tmp_path / name / f"{r.info.experiment}_{r.info.seed}.json")
    out = tmp_path / "cmp.json"
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--json", str(out)]) == 0
    assert "violation_rate" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc[0]["metrics"]["violation_rate"]["verdict"] == "B better"
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "nope")]) == 2
    assert "field 'B'" in capsys.readouterr().err
