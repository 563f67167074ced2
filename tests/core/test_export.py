"""Results for readers outside ExFairS: Parquet records that pandas reads without importing
ExFairS, and the flat `vllm bench serve`-style summary."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from metrics_factory import make_record, make_result, make_workload_records

from exfairs.export import (
    aggregate_dict,
    flat_summary,
    micro,
    read_records_parquet,
    write_records_parquet,
)
from exfairs.records import SLO, Outcome
from exfairs.results import RunResult, write_result

pytest.importorskip("pandas")

_PANDAS = r"""
import json, sys
import pandas as pd
df = pd.read_parquet(sys.argv[1])
# The derived latencies, one line each as the README gives them.
done_mask = df["outcome"].isin(["finished", "violated"])
df["ttft_ms"] = (df["first_token_s"] - df["arrival_s"]) * 1e3
df["e2el_ms"] = ((df["finish_s"] - df["arrival_s"]) * 1e3).where(done_mask)
df["tpot_ms"] = ((df["e2el_ms"] - df["ttft_ms"]) / (df["generated_tokens"] - 1)).where(
    df["generated_tokens"] >= 2)
df["queue_ms"] = (df["dispatch_s"] - df["arrival_s"]) * 1e3
counted = df[df["counted"]]
out = {}
def done(g):
    return g[g["outcome"].isin(["finished", "violated"])]
for client, g in counted.groupby("client", observed=True):
    out[client] = {"mean_ttft_ms": g["ttft_ms"].mean(), "mean_e2el_ms": g["e2el_ms"].mean(),
                   "mean_tpot_ms": g["tpot_ms"].mean(), "mean_queue_ms": g["queue_ms"].mean(),
                   "num_prompts": int(len(g)),
                   "completed": int(g["outcome"].isin(["finished", "violated"]).sum()),
                   # The summary's ITLs are over completed requests.
                   "itl_count": int(sum(len(t) for t in done(g)["itl_us"])),
                   "itl_sum_ms": float(sum(float(sum(t)) for t in done(g)["itl_us"])) / 1e3}
out["_exfairs_imported"] = any(m == "exfairs" or m.startswith("exfairs.") for m in sys.modules)
out["_n_rows"] = int(len(df))
print(json.dumps(out))
"""


def _result() -> RunResult:
    recs = make_workload_records(1, ("a", "b"))
    recs[10] = replace(recs[10], outcome=Outcome.FAILED, finish_s=None, error="HTTP 500: boom")
    return make_result("QUEUE_VTC", 1, window=(2.0, 15.0), clients=("a", "b", "idle"),
                       records=recs)


def test_pandas_reads_records_without_exfairs_and_agrees_with_the_summary(tmp_path: Path
                                                                         ) -> None:
    res = _result()
    path = tmp_path / "run.json"
    write_result(res, path)
    r = subprocess.run([sys.executable, "-c", _PANDAS, str(path.with_suffix(".parquet"))],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got.pop("_exfairs_imported") is False
    assert got.pop("_n_rows") == len(res.records)
    summary = json.loads(path.read_text())
    assert set(got) == {"a", "b"}  # the idle client has no rows
    for client, mine in got.items():
        theirs = summary["per_client"][client]
        for key in ("mean_ttft_ms", "mean_e2el_ms", "mean_tpot_ms", "mean_queue_ms"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-12), (client, key)
        assert mine["num_prompts"] == theirs["num_prompts"]
        assert mine["completed"] == theirs["completed"]
    assert summary["failed"] == 1 and summary["completed"] == sum(
        v["completed"] for v in got.values())


def test_summary_is_flat_with_vllm_names_and_nulls(tmp_path: Path) -> None:
    res = _result()
    path = tmp_path / "run.json"
    write_result(res, path)
    doc = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(c))
    for key in ("duration", "completed", "failed", "num_prompts", "total_input_tokens",
                "total_output_tokens", "request_throughput", "output_throughput",
                "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "p99_itl_ms",
                "mean_e2el_ms", "jain_attainment", "experiment", "seed"):
        assert key in doc, key
        assert not isinstance(doc[key], (dict, list)), key
    idle = doc["per_client"]["idle"]
    assert idle["num_prompts"] == 0 and idle["mean_ttft_ms"] is None
    assert "nan" not in path.read_text()
    m = res.metrics
    assert doc["mean_ttft_ms"] == m.overall.mean_ttft_ms
    assert doc["duration"] == m.overall.duration_s
    a = m.client("a")

    def null(x: float) -> float | None:
        return None if math.isnan(x) else x

    flat_a = flat_summary(res.info, res.clients, m)["per_client"]["a"]
    assert {k: flat_a[k] for k in ("weighted_service", "weighted_demand", "fair_share",
                                   "normalized_service")} == {
        "weighted_service": null(a.weighted_service), "weighted_demand": null(a.weighted_demand),
        "fair_share": null(a.fair_share), "normalized_service": null(a.normalized_service)}
    assert flat_a["weight"] == 1.0 and aggregate_dict(a.metrics).items() <= flat_a.items()
    assert doc["worst_client"] == m.fairness.worst_client


def test_records_keep_every_field_and_nulls(tmp_path: Path) -> None:
    recs = (make_record(0, "a", slo=SLO(e2e_s=5.0, ttft_s=None, tpot_s=0.2)),
            make_record(1, "b", ttft_s=None, outcome=Outcome.TIMED_OUT, queue_s=None))
    res = make_result("FCFS", 0, records=recs)
    write_result(res, tmp_path / "r.json")
    back = read_records_parquet(tmp_path / "r.parquet")
    assert back == recs
    assert back[1].dispatch_s is None and back[0].slo.ttft_s is None


def test_itl_us_gives_the_summary_mean_itl(tmp_path: Path) -> None:
    """The inter-token gaps a reader gets from itl_us (microseconds) average to the summary's
    mean ITL, to the microsecond rounding."""
    res = _result()
    path = tmp_path / "run.json"
    write_result(res, path)
    r = subprocess.run([sys.executable, "-c", _PANDAS, str(path.with_suffix(".parquet"))],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    summary = json.loads(path.read_text())
    for client in ("a", "b"):
        mine = got[client]["itl_sum_ms"] / got[client]["itl_count"]
        assert mine == pytest.approx(summary["per_client"][client]["mean_itl_ms"], abs=1e-3)


_times = st.lists(st.floats(0.0, 1e5, allow_nan=False), min_size=0, max_size=12).map(sorted)


@settings(max_examples=60, deadline=None)
@given(runs=st.lists(st.tuples(_times, st.booleans()), min_size=1, max_size=6))
def test_token_times_round_trip_bit_for_bit(tmp_path_factory: pytest.TempPathFactory,
                                           runs: list[tuple[list[float], bool]]) -> None:
    """Any token times come back exactly, over several records of any lengths (none too);
    times on the microsecond grid (the live clock's) are stored as gaps only."""
    import pyarrow.parquet as pq

    recs = []
    for i, (times, on_grid) in enumerate(runs):
        tt = tuple(micro(t) / 1e6 for t in times) if on_grid else tuple(times)
        rec = make_record(i, "a", output_tokens=max(1, len(tt)))
        recs.append(replace(rec, token_times_s=tt, generated_tokens=len(tt),
                            first_token_s=tt[0] if tt else None,
                            finish_s=tt[-1] if tt else None,
                            outcome=Outcome.FINISHED if tt else Outcome.ABORTED))
    path = tmp_path_factory.mktemp("tt") / "r.parquet"
    write_records_parquet(recs, path, None)
    assert read_records_parquet(path) == tuple(recs)
    table = pq.read_table(path)
    for rec, (_, on_grid), gaps, exact in zip(recs, runs, table.column("itl_us").to_pylist(),
                                             table.column("token_times_s").to_pylist(),
                                             strict=True):
        n = len(rec.token_times_s)
        assert len(gaps) == max(n - 1, 0)
        assert sum(gaps) == (micro(rec.token_times_s[-1]) - micro(rec.token_times_s[0])
                             if n else 0)
        if on_grid or n == 0:
            assert exact is None


def test_live_clock_records_are_stored_as_gaps_only(tmp_path: Path) -> None:
    recs = [replace(r, dispatch_s=None, token_times_s=tuple(micro(t) / 1e6
                                                              for t in r.token_times_s))
            for r in make_workload_records(2, ("a", "b"))]
    recs = [replace(r, first_token_s=r.token_times_s[0] if r.token_times_s else None,
                    finish_s=r.token_times_s[-1] if r.finish_s is not None else None)
            for r in recs]
    import pyarrow.parquet as pq

    path = tmp_path / "r.parquet"
    write_records_parquet(recs, path, None)
    assert read_records_parquet(path) == tuple(recs)
    assert set(pq.read_table(path).column("token_times_s").to_pylist()) == {None}
