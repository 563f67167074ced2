"""Trace import: Azure / BurstGPT / generic CSV and JSON lines, client mappings, replay."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _workload_factories import LinearLatency
from hypothesis import given
from hypothesis import strategies as st

from exfairs.errors import InputError
from exfairs.records import ClientInfo
from exfairs.rng import stream
from exfairs.scenario import SloSpec, SloTarget, TraceArrivals
from exfairs.traces import (
    PromptLengthThresholds,
    RandomAssignment,
    RoundRobin,
    TraceColumns,
    assign_clients,
    bundled_traces,
    read_trace,
    workload_from_trace,
)

GENERIC = TraceColumns(timestamp="ts", input="in", output="out", time_unit="ms")


def _csv(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_bundled_azure_traces() -> None:
    assert bundled_traces() == ["azure-code", "azure-conv"]
    conv = read_trace("azure-conv")
    assert len(conv) == 19366
    assert conv.arrival_s[0] == 0 and np.all(np.diff(conv.arrival_s) >= 0)
    assert conv.span_s == pytest.approx(3501.72, abs=0.01)
    # First rows of the file: 2023-11-16 18:15:46.6805900,374,44 then 18:15:50.9951690,396,109.
    assert list(conv.input_tokens[:2]) == [374, 396] and list(conv.output_tokens[:2]) == [44, 109]
    assert conv.arrival_s[1] == pytest.approx(4.314579, abs=1e-6)
    assert len(read_trace("azure-code")) == 8819
    assert len(read_trace("azure-conv", limit=100)) == 100


def test_source_and_license_are_bundled() -> None:
    from importlib import resources

    text = resources.files("exfairs").joinpath("data", "traces", "SOURCE.md").read_text()
    assert "CC-BY-4.0" in text and "AzurePublicDataset" in text


def test_generic_csv_units_and_sorting(tmp_path: Path) -> None:
    p = _csv(tmp_path, "in,ts,out,extra\n5,2000,3,x\n7,500,4,y\n9,500,1,z\n")
    tr = read_trace(p, columns=GENERIC)
    assert list(tr.arrival_s) == [0.0, 0.0, 1.5]
    assert list(tr.input_tokens) == [7, 9, 5]  # stable sort keeps file order on ties
    assert list(tr.rows) == [2, 3, 1]
    secs = read_trace(p, columns=TraceColumns(timestamp="ts", input="in", output="out"))
    assert secs.span_s == 1500.0


def test_datetime_timestamps_with_offsets(tmp_path: Path) -> None:
    p = _csv(tmp_path, "ts,in,out\n2024-01-01T00:00:01+01:00,1,1\n2024-01-01T00:00:00Z,2,2\n")
    tr = read_trace(p, columns=TraceColumns(timestamp="ts", input="in", output="out"))
    # 00:00:01+01:00 is 23:00:01 UTC the day before: it comes first, an hour earlier.
    assert list(tr.input_tokens) == [1, 2]
    assert tr.span_s == pytest.approx(3599.0)


def test_jsonl_trace(tmp_path: Path) -> None:
    rows = [{"t": 0.5, "p": 10, "o": 2}, {"t": 0.25, "p": 20, "o": 3}]
    p = tmp_path / "t.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    tr = read_trace(p, columns=TraceColumns(timestamp="t", input="p", output="o"))
    assert list(tr.input_tokens) == [20, 10] and tr.span_s == 0.25


def test_burstgpt_layout_is_detected_and_failed_rows_dropped(tmp_path: Path) -> None:
    p = _csv(tmp_path, "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                       "5,ChatGPT,100,20,120,Conversation log\n"
                       "6,ChatGPT,50,0,50,Conversation log\n"
                       "8,GPT-4,70,30,100,API log\n")
    tr = read_trace(p)
    assert list(tr.input_tokens) == [100, 70] and list(tr.arrival_s) == [0.0, 3.0]


BAD = [
    ("missing column", "TIMESTAMP,ContextTokens\n0,1\n", "GeneratedTokens", None),
    ("unknown layout", "a,b,c\n1,2,3\n", "(header)", ["a", "b", "c"]),
    ("bad number", "TIMESTAMP,ContextTokens,GeneratedTokens\n0,12,3\n1,x,3\n",
     "row 2.ContextTokens", "x"),
    ("negative", "TIMESTAMP,ContextTokens,GeneratedTokens\n0,-5,3\n", "row 1.ContextTokens",
     "-5"),
    ("fraction", "TIMESTAMP,ContextTokens,GeneratedTokens\n0,1.5,3\n", "row 1.ContextTokens",
     "1.5"),
    ("zero output", "TIMESTAMP,ContextTokens,GeneratedTokens\n0,5,0\n",
     "row 1.GeneratedTokens", 0),
    ("zero prompt", "TIMESTAMP,ContextTokens,GeneratedTokens\n0,0,3\n", "row 1.ContextTokens",
     0),
    ("bad time", "TIMESTAMP,ContextTokens,GeneratedTokens\nsoon,5,3\n", "row 1.TIMESTAMP",
     "soon"),
    ("nan time", "TIMESTAMP,ContextTokens,GeneratedTokens\nnan,5,3\n", "row 1.TIMESTAMP",
     "nan"),
    ("ragged row", "TIMESTAMP,ContextTokens,GeneratedTokens\n0,5\n", "row 1", "0,5"),
    ("header only", "TIMESTAMP,ContextTokens,GeneratedTokens\n", "(file)", None),
    ("empty", "", "(file)", None),
]


@pytest.mark.parametrize(("label", "text", "field", "value"), BAD, ids=[b[0] for b in BAD])
def test_malformed_traces_name_file_field_and_value(tmp_path: Path, label: str, text: str,
                                                    field: str, value: object) -> None:
    p = _csv(tmp_path, text)
    with pytest.raises(InputError) as info:
        read_trace(p)
    err = info.value
    assert err.source == str(p) and err.field == field, str(err)
    if value is not None:
        assert err.value == value


def test_more_trace_errors(tmp_path: Path) -> None:
    p = tmp_path / "bin.csv"
    p.write_bytes(b"TIMESTAMP,ContextTokens,GeneratedTokens\n0,\xff\xfe,1\n")
    with pytest.raises(InputError, match="UTF-8"):
        read_trace(p)
    with pytest.raises(InputError) as info:
        read_trace(tmp_path / "absent.csv")
    assert info.value.field == "trace"
    j = tmp_path / "bad.jsonl"
    j.write_text('{"t": 1, "p": 2, "o": 3}\n{oops\n', encoding="utf-8")
    with pytest.raises(InputError) as info:
        read_trace(j, columns=TraceColumns(timestamp="t", input="p", output="o"))
    assert info.value.field == "line 2"
    j.write_text('{"t": 1, "p": 2}\n', encoding="utf-8")
    with pytest.raises(InputError) as info:
        read_trace(j, columns=TraceColumns(timestamp="t", input="p", output="o"))
    assert info.value.field == "line 1.o"
    with pytest.raises(InputError):
        read_trace("azure-conv", limit=0)


def test_zero_output_policies(tmp_path: Path) -> None:
    p = _csv(tmp_path, "TIMESTAMP,ContextTokens,GeneratedTokens\n0,5,0\n1,6,2\n")
    drop = read_trace(p, columns=TraceColumns(on_zero_output="drop"))
    one = read_trace(p, columns=TraceColumns(on_zero_output="one"))
    assert list(drop.output_tokens) == [2] and list(one.output_tokens) == [1, 2]


# -- mappings ---------------------------------------------------------------------------------


def test_round_robin_and_thresholds() -> None:
    tr = read_trace("azure-conv", limit=1000)
    rr = assign_clients(tr, 3, RoundRobin())
    assert list(rr[:7]) == [0, 1, 2, 0, 1, 2, 0]
    th = assign_clients(tr, 3, PromptLengthThresholds((512, 2048)))
    p = tr.input_tokens
    assert np.all((th == 0) == (p < 512)) and np.all((th == 2) == (p >= 2048))
    with pytest.raises(InputError):
        assign_clients(tr, 2, PromptLengthThresholds((512, 2048)))


def test_random_assignment_follows_weights_and_seed() -> None:
    tr = read_trace("azure-conv")
    a = assign_clients(tr, 3, RandomAssignment(weights=(1, 2, 7), seed=4))
    frac = np.bincount(a, minlength=3) / len(tr)
    assert frac == pytest.approx([0.1, 0.2, 0.7], abs=0.015)
    assert np.array_equal(a, assign_clients(tr, 3, RandomAssignment(weights=(1, 2, 7), seed=4)))
    assert not np.array_equal(a, assign_clients(tr, 3, RandomAssignment((1, 2, 7), seed=5)))
    with pytest.raises(InputError):
        assign_clients(tr, 2, RandomAssignment(weights=(1, 2, 7)))


# -- workloads from traces --------------------------------------------------------------------


def test_workload_from_the_azure_conversation_trace() -> None:
    # The simulator benchmark's workload: the first 10,000 requests of the conversation trace.
    w = workload_from_trace("azure-conv", clients=["a", "b", "c", "d"], mapping=RoundRobin(),
                            limit=10_000,
                            slo=SloSpec(e2e=SloTarget(scale=5.0)), latency=LinearLatency())
    assert len(w.requests) == 10_000
    assert [r.request_id for r in w.requests] == list(range(10_000))
    assert all(a.arrival_s <= b.arrival_s for a, b in zip(w.requests, w.requests[1:],
                                                           strict=False))
    tr = read_trace("azure-conv", limit=10_000)
    assert sorted(r.prompt_tokens for r in w.requests) == sorted(tr.input_tokens.tolist())
    assert w.clients == tuple(ClientInfo(n) for n in "abcd")
    assert {r.client for r in w.requests} == set("abcd")
    assert w.duration_s > w.requests[-1].arrival_s
    r = w.requests[17]
    assert r.slo.e2e_s == pytest.approx(5 * LinearLatency().unloaded_e2e_s(r.prompt_tokens,
                                                                           r.output_tokens))


def test_workload_from_trace_per_client_slos_speedup_and_clamp(tmp_path: Path) -> None:
    p = _csv(tmp_path, "TIMESTAMP,ContextTokens,GeneratedTokens\n0,9000,10\n10,100,10\n"
                       "20,50,5\n")
    w = workload_from_trace(p, clients=[ClientInfo("x", weight=2.0), "y"], mapping=RoundRobin(),
                            slo={"x": SloSpec(ttft=SloTarget(seconds=1.0))}, speedup=10.0,
                            max_model_len=4096)
    assert [r.arrival_s for r in w.requests] == [0.0, 1.0, 2.0]
    assert w.requests[0].prompt_tokens == 4086
    assert w.requests[0].slo.ttft_s == 1.0 and w.requests[1].slo.ttft_s is None
    assert w.clients[0].weight == 2.0
    with pytest.raises(InputError):
        workload_from_trace(p, clients=["x"], mapping=RoundRobin(),
                            slo={"zz": SloSpec(ttft=SloTarget(seconds=1.0))})
    with pytest.raises(InputError):
        workload_from_trace(p, clients=["x", "x"], mapping=RoundRobin())
    with pytest.raises(InputError, match="latency"):
        workload_from_trace(p, clients=["x"], mapping=RoundRobin(),
                            slo=SloSpec(e2e=SloTarget(scale=2.0)))


# -- trace replay as an arrival process -------------------------------------------------------


def _replay(offsets: list[float]) -> TraceArrivals:
    return TraceArrivals(trace="t", offsets_s=tuple(offsets))


@pytest.fixture(scope="module")
def code_replay() -> TraceArrivals:
    tr = read_trace("azure-code", limit=300)
    return TraceArrivals("azure-code", tuple(tr.arrival_s.tolist()))


@given(rate=st.floats(0.05, 20.0), duration=st.floats(1.0, 500.0))
def test_replay_has_exactly_rate_times_duration_arrivals(code_replay: TraceArrivals, rate: float,
                                                         duration: float) -> None:
    t = code_replay.times(stream(0, "x"), rate, duration)
    assert t.shape[0] == round(rate * duration)
    assert np.all(np.diff(t) >= 0) and (t.size == 0 or (t[0] == 0 and t[-1] < duration))


def test_replay_keeps_the_pattern_and_wraps() -> None:
    arr = _replay([0.0, 1.0, 1.5, 4.0])
    t = arr.times(stream(0, "x"), 1.0, 8.0)
    # Native sequence repeated with period 4 + 4/3: 0, 1, 1.5, 4, 5.33, 6.33, 6.83, 9.33, ...
    # 8 arrivals fit, the 9th (native 10.67) is placed at 8 s.
    native = np.array([0, 1, 1.5, 4, 16 / 3, 19 / 3, 20.5 / 3, 28 / 3])
    assert t == pytest.approx(native * 8 / (32 / 3))


# -- tenant column (issue #14) ----------------------------------------------------------------


def test_tenant_column_maps_rows_to_clients(tmp_path: Path) -> None:
    from exfairs.traces import ByTenant, TraceColumns, workload_from_trace

    p = tmp_path / "t.csv"
    p.write_text("ts,in,out,user\n0,10,2,zed\n1,11,3,bob\n2,12,0,zed\n3,13,4,amy\n4,14,5,bob\n",
                 encoding="utf-8")
    cols = TraceColumns(timestamp="ts", input="in", output="out", tenant="user",
                        on_zero_output="drop")
    w = workload_from_trace(p, clients=["bob", "x"], mapping=ByTenant(), columns=cols)
    # bob by name; zed then amy (first appearances) dealt to clients 0 and 1.
    assert [(r.client, r.prompt_tokens) for r in w.requests] == [
        ("bob", 10), ("bob", 11), ("x", 13), ("bob", 14)]
    jl = tmp_path / "t.jsonl"
    jl.write_text('{"ts": 0, "in": 5, "out": 1, "user": 7}\n{"ts": 1, "in": 6, "out": 1}\n',
                  encoding="utf-8")
    with pytest.raises(InputError) as exc:
        workload_from_trace(jl, clients=["a"], mapping=ByTenant(), columns=cols)
    assert exc.value.field == "line 2.user"


def test_by_tenant_without_a_tenant_column_is_refused() -> None:
    from exfairs.traces import ByTenant, workload_from_trace

    with pytest.raises(InputError, match="tenant column"):
        workload_from_trace("azure-code", clients=["a"], mapping=ByTenant(), limit=5)
