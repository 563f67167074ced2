"""Schema 3: the metrics stored once (the flat summary), rebuilt exactly on read; schema 2 (both
copies) still read; the full copy kept where the summary would lose a value."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from metrics_factory import make_result

from exfairs import results as results_mod
from exfairs.errors import InputError
from exfairs.export import flat_summary
from exfairs.results import SCHEMA_VERSION, RunResult, read_result, write_result


def _result() -> RunResult:
    return make_result("QUEUE_ExFairS", 5, window=(2.0, 15.0), clients=("a", "b", "idle"))


def test_metrics_are_stored_once_and_come_back_identical(tmp_path: Path) -> None:
    res = _result()
    path = tmp_path / "r.json"
    write_result(res, path)
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == SCHEMA_VERSION == 3
    assert "metrics" not in doc["run"] and "metrics_rest" in doc["run"]
    # What the summary does not hold, and nothing more.
    assert set(doc["run"]["metrics_rest"]) == {"fairness", "qoe_params", "service_weights"}
    assert set(doc["run"]["metrics_rest"]["fairness"]) == {"service_gap_clients"}
    back = read_result(path)
    assert back == res
    assert back.metrics.per_client == res.metrics.per_client
    assert back.metrics.overall == res.metrics.overall


def test_schema_2_files_are_still_read(tmp_path: Path) -> None:
    res = _result()
    write_result(res, tmp_path / "r.json")
    doc = json.loads((tmp_path / "r.json").read_text())
    # Schema 2 as it was written: the metrics under run as well as in the summary.
    run = results_mod.encode_run(res)
    doc["run"] = {k: v for k, v in doc["run"].items() if k != "metrics_rest"} | {
        "metrics": run["metrics"]}
    doc["schema_version"] = 2
    (tmp_path / "r.json").write_text(json.dumps(doc))
    assert read_result(tmp_path / "r.json") == res


def test_an_infinite_metric_keeps_the_full_copy(tmp_path: Path) -> None:
    res = _result()
    fair = replace(res.metrics.fairness, max_service_gap=math.inf)
    res = replace(res, metrics=replace(res.metrics, fairness=fair))
    write_result(res, tmp_path / "r.json")
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["max_service_gap"] is None  # the summary's null ...
    assert doc["run"]["metrics"]["fairness"]["max_service_gap"] == "inf"  # ... is not lost
    assert read_result(tmp_path / "r.json") == res


def test_errors_name_the_summary_key(tmp_path: Path) -> None:
    res = _result()
    write_result(res, tmp_path / "r.json")
    good = json.loads((tmp_path / "r.json").read_text())

    def fails(doc: dict[str, object]) -> InputError:
        (tmp_path / "r.json").write_text(json.dumps(doc))
        with pytest.raises(InputError) as e:
            read_result(tmp_path / "r.json")
        return e.value

    bad = json.loads(json.dumps(good))
    bad["per_client"]["b"]["mean_ttft_ms"] = "slow"
    assert fails(bad).field == "per_client.b.mean_ttft_ms"
    bad = json.loads(json.dumps(good))
    del bad["per_client"]["a"]["weight"]
    err = fails(bad)
    assert err.field == "per_client.a.weight" and "missing" in str(err)
    bad = json.loads(json.dumps(good))
    del bad["duration"]
    assert fails(bad).field == "duration"
    bad = json.loads(json.dumps(good))
    del bad["run"]["metrics_rest"]
    assert fails(bad).field == "run.metrics_rest"
    bad = json.loads(json.dumps(good))
    bad["run"]["metrics_rest"]["qoe_params"] = 3
    assert fails(bad).field == "run.metrics_rest.qoe_params"


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 50), experiment=st.sampled_from(["VTC", "QUEUE_FCFS", "ExFairS"]),
       windowed=st.booleans())
def test_split_then_join_is_the_identity(seed: int, experiment: str, windowed: bool) -> None:
    from exfairs.results_flat import join_metrics, split_metrics

    res = make_result(experiment, seed, window=(1.0, 12.0) if windowed else None)
    enc = results_mod.encode_run(res)["metrics"]
    flat = json.loads(json.dumps(flat_summary(res.info, res.clients, res.metrics)))
    rest = split_metrics(enc, flat)
    assert rest is not None
    assert join_metrics(flat, json.loads(json.dumps(rest))) == enc


def test_schema_2_records_with_derived_columns_are_still_read(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from exfairs.export import read_records_parquet, records_table

    res = _result()
    table = records_table(res.records, (2.0, 15.0))
    assert "ttft_ms" not in table.column_names and "queue_ms" not in table.column_names
    # Records schema 2 as it was written: the derived latencies too, statistics and Arrow schema.
    for name, values in (("ttft_ms", [r.ttft_s for r in res.records]),
                         ("queue_ms", [r.queue_s for r in res.records])):
        table = table.append_column(name, pa.array(
            [None if v is None else v * 1e3 for v in values], type=pa.float64()))
    meta = {"exfairs.schema": "exfairs.records", "exfairs.schema_version": "2"}
    pq.write_table(table.replace_schema_metadata(meta), tmp_path / "v2.parquet")
    assert read_records_parquet(tmp_path / "v2.parquet") == res.records


def test_records_file_has_no_statistics_and_keeps_its_schema_tag(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    write_result(_result(), tmp_path / "r.json")
    md = pq.read_metadata(tmp_path / "r.parquet")
    assert md.metadata[b"exfairs.schema"] == b"exfairs.records"
    assert md.metadata[b"exfairs.schema_version"] == b"3"
    assert b"ARROW:schema" not in md.metadata
    assert all(md.row_group(0).column(c).statistics is None for c in range(md.num_columns))
