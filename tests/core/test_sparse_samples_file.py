"""Sparse policy samples (`PolicySample.clients`) survive the results file, in its samples
parquet file and in the JSON; dense samples are stored as before (issue 13, item 6)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

from metrics_factory import make_result

from exfairs.records import PolicySample
from exfairs.results import RunResult, read_result, write_result


def _result(samples: tuple[PolicySample, ...]) -> RunResult:
    return replace(make_result("VTC", 3, window=(2.0, 15.0)), policy_samples=samples)


def test_sparse_samples_survive_the_results_file(tmp_path: Path) -> None:
    samples = (PolicySample(0.0, (("counter", (1.0,)), ("x", (2.0,))), clients=(2,)),
               PolicySample(1.0, (("counter", (1.0, 3.5)), ("x", (2.0, -1.0))), clients=(0, 2)))
    res = _result(samples)
    write_result(res, tmp_path / "r.json")
    assert read_result(tmp_path / "r.json").policy_samples == samples
    # Quantity names that cannot share one table put the samples in the JSON: there too.
    odd = (samples[0], PolicySample(1.0, (("other", (4.0,)),), clients=(1,)))
    write_result(_result(odd), tmp_path / "j.json")
    assert json.loads((tmp_path / "j.json").read_text())["run"]["policy_samples"]
    assert read_result(tmp_path / "j.json").policy_samples == odd
    # Dense samples in the JSON carry no `clients` key (files as before sparse samples).
    dense = (PolicySample(0.0, (("a", (1.0,)),)), PolicySample(1.0, (("b", (2.0,)),)))
    write_result(_result(dense), tmp_path / "d.json")
    stored = json.loads((tmp_path / "d.json").read_text())["run"]["policy_samples"]
    assert stored and all("clients" not in s for s in stored)
    assert read_result(tmp_path / "d.json").policy_samples == dense


def test_policy_state_plot_places_sparse_samples_by_client(tmp_path: Path) -> None:
    from exfairs.plots import plot_fairness
    res = make_result("VTC", 0)
    n = len(res.clients)
    dense = res.policy_samples
    assert dense and n >= 2
    # The same samples, sparse: the last client left out of every sample.
    keep = tuple(range(n - 1))
    sparse = tuple(PolicySample(s.time_s, tuple((k, tuple(v[c] for c in keep))
                                                 for k, v in s.values), clients=keep)
                   for s in dense)
    assert all(math.isnan(dict(s.dense(n))[k][n - 1]) for s in sparse for k, _ in s.values)
    paths = plot_fairness([replace(res, policy_samples=sparse)], tmp_path)
    assert any(p.name.startswith("policy_") for p in paths)
