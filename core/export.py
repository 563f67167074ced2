"""Formats for readers outside ExFairS: per-request records (and a run's policy samples) as
Parquet. A run's summary as flat JSON with `vllm bench serve`'s key names is
`exfairs.bench_summary` (re-exported here).

**Records** (`write_records_parquet`): one row per request, readable by pandas, polars, DuckDB or
Arrow with no ExFairS import. Columns (seconds on the run clock unless the name says ms):

=====================  =====================================================================
request_id, client     int64, string (dictionary-encoded)
arrival_s              arrival time
prompt_tokens          int32; ``output_tokens`` (asked) and ``generated_tokens`` (served) too
slo_e2e_s ...          the request's SLOs: ``slo_e2e_s``, ``slo_ttft_s``, ``slo_tpot_s`` (null =
                       not set)
outcome                finished / violated / failed / timed_out / aborted / rejected
dispatch_s             left the client side for the engine (null: never)
first_token_s          first output token (null: none); ``finish_s`` last token of a completed one
preemptions, error     int32; the failure message (null when none)
counted                bool: arrived inside the metrics window (the run's summary counts these)
itl_us                 list<int64>: inter-token latencies in whole microseconds, one per output
                       token after the first (``generated_tokens - 1`` entries)
token_times_s          list<double>: every output token's exact emission time, or null where
                       the microsecond times below reproduce it exactly
=====================  =====================================================================

Token times cost about 1.4 bytes per token on live runs (from about 6.8 stored as float64) and
about 0.5 on simulated ones (benchmarks/results/results_size.md). Token ``k`` of a request was
emitted at ``(round(first_token_s * 1e6) + sum(itl_us[:k])) / 1e6`` seconds: the gaps are taken
between the times rounded to the microsecond, so the error does not accumulate. A reader who
wants ITLs in ms takes ``itl_us / 1000``. The live backend's clock ticks in microseconds, so a
live run's times are all exact in ``itl_us`` and its ``token_times_s`` is null; simulated times
are not on that grid, so ``token_times_s`` keeps them exactly (reading a file back gives the
records bit for bit either way).

Latencies are not stored (version 2 had ``ttft_ms``/``e2el_ms``/``tpot_ms``/``queue_ms``
columns); pandas derives them from the times, one line each (README, "Results files"):
``ttft_ms = (first_token_s - arrival_s) * 1e3``, ``queue_ms = (dispatch_s - arrival_s) * 1e3``,
``e2el_ms = (finish_s - arrival_s) * 1e3`` where ``outcome`` is finished or violated, and
``tpot_ms = (e2el_ms - ttft_ms) / (generated_tokens - 1)`` where ``generated_tokens >= 2``. The
footer carries no column statistics and no serialized Arrow schema, so pandas reads ``client`` and
``outcome`` as plain strings.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from exfairs.atomic import atomic_temp_path
from exfairs.bench_summary import VLLM_NAMES, aggregate_dict, flat_summary
from exfairs.errors import InputError
from exfairs.metrics import in_window
from exfairs.records import SLO, Outcome, PolicySample, RequestRecord

RECORDS_SCHEMA = "exfairs.records"
RECORDS_SCHEMA_VERSION = 3
_READABLE_RECORDS_VERSIONS = ("1", "2", "3")

# Re-exported: the flat summary moved to `exfairs.bench_summary`; callers import it here.
__all__ = [
    "RECORDS_SCHEMA",
    "RECORDS_SCHEMA_VERSION",
    "SAMPLES_SCHEMA",
    "VLLM_NAMES",
    "aggregate_dict",
    "flat_summary",
    "micro",
    "on_micro_grid",
    "read_records_parquet",
    "read_samples_parquet",
    "records_row_count",
    "records_table",
    "samples_table",
    "write_records_parquet",
    "write_samples_parquet",
]


def _arrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is a dependency
        raise InputError(f"Parquet records need pyarrow ({exc}); pip install pyarrow",
                         field="pyarrow", value=None) from exc
    return pa, pq


def records_table(records: Sequence[RequestRecord], window: tuple[float, float] | None) -> Any:
    """The records as a `pyarrow.Table` (columns in the module docstring). `window` is the
    metrics window ``[start, end)`` of arrivals (None: everything counted)."""
    pa, _ = _arrow()
    counted = {r.request_id for r in (in_window(records, window) if window is not None
                                      else records)}
    f64, i32 = pa.float64(), pa.int32()

    def col(values: list[Any], typ: Any) -> Any:
        return pa.array(values, type=typ)

    rs = list(records)
    columns = {
        "request_id": col([r.request_id for r in rs], pa.int64()),
        "client": col([r.client for r in rs], pa.string()).dictionary_encode(),
        "arrival_s": col([r.arrival_s for r in rs], f64),
        "prompt_tokens": col([r.prompt_tokens for r in rs], i32),
        "output_tokens": col([r.output_tokens for r in rs], i32),
        "slo_e2e_s": col([r.slo.e2e_s for r in rs], f64),
        "slo_ttft_s": col([r.slo.ttft_s for r in rs], f64),
        "slo_tpot_s": col([r.slo.tpot_s for r in rs], f64),
        "outcome": col([r.outcome.value for r in rs], pa.string()).dictionary_encode(),
        "dispatch_s": col([r.dispatch_s for r in rs], f64),
        "first_token_s": col([r.first_token_s for r in rs], f64),
        "finish_s": col([r.finish_s for r in rs], f64),
        "generated_tokens": col([r.generated_tokens for r in rs], i32),
        "preemptions": col([r.preemptions for r in rs], i32),
        "error": col([r.error for r in rs], pa.string()),
        "counted": col([r.request_id in counted for r in rs], pa.bool_()),
    }
    columns["itl_us"], columns["token_times_s"] = _token_columns(rs)

    meta = {"exfairs.schema": RECORDS_SCHEMA, "exfairs.schema_version": str(RECORDS_SCHEMA_VERSION)}
    return pa.table(columns).replace_schema_metadata(meta)


def micro(t: float) -> int:
    """`t` seconds in whole microseconds (rounded to nearest)."""
    return round(t * 1e6)


def on_micro_grid(t: float) -> bool:
    """Whether `t` seconds is exactly what `micro` reads back as seconds."""
    return micro(t) / 1e6 == t


def _token_columns(records: Sequence[RequestRecord]) -> tuple[Any, Any]:
    """Per record: its inter-token gaps in microseconds, and its exact token times unless the
    gaps (from ``micro(first_token_s)``) give every time back exactly; as Arrow list arrays."""
    pa, _ = _arrow()
    counts = np.fromiter((len(r.token_times_s) for r in records), dtype=np.int64,
                         count=len(records))
    flat = np.fromiter(itertools.chain.from_iterable(r.token_times_s for r in records),
                       dtype=np.float64, count=int(counts.sum()))
    # np.rint and round() both round half to even, so these are `micro` of every time.
    us = np.rint(flat * 1e6).astype(np.int64)
    on_grid = us / 1e6 == flat
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    gaps = np.diff(us)
    # Keep the gaps within each record: drop the one that crosses into the next record.
    keep = np.ones(gaps.size, dtype=bool)
    inner = starts[1:-1]
    keep[inner[(inner > 0) & (inner < flat.size)] - 1] = False
    gap_offsets = np.concatenate([[0], np.cumsum(np.maximum(counts - 1, 0))])
    gap_values = gaps[keep] if gaps.size else np.zeros(0, dtype=np.int64)
    exact_mask = np.zeros(len(records), dtype=bool)
    for i, r in enumerate(records):
        a, b = int(starts[i]), int(starts[i + 1])
        if b > a:
            base_ok = r.first_token_s is not None and micro(r.first_token_s) == int(us[a])
            exact_mask[i] = not (base_ok and b - a == r.generated_tokens
                                 and bool(on_grid[a:b].all()))
        else:
            exact_mask[i] = r.generated_tokens != 0
    itl = pa.ListArray.from_arrays(pa.array(gap_offsets.astype(np.int32)),
                                   pa.array(gap_values, type=pa.int64()))
    exact = pa.ListArray.from_arrays(pa.array(starts.astype(np.int32)),
                                     pa.array(flat, type=pa.float64()),
                                     mask=pa.array(~exact_mask))
    return itl, exact


def _token_times(first_token_s: float | None, gaps: list[int] | None,
                 exact: list[float] | None, generated: int) -> tuple[float, ...]:
    """A record's token times from its Parquet columns (the inverse of `_token_columns`)."""
    if exact is not None:
        return tuple(float(t) for t in exact)
    if first_token_s is None or generated == 0:
        if gaps:
            raise ValueError("itl_us without a first token")
        return ()
    us = micro(first_token_s)
    out = [us / 1e6]
    for g in gaps or ():
        us += int(g)
        out.append(us / 1e6)
    if len(out) != generated:
        raise ValueError(f"itl_us has {len(out) - 1} gaps for {generated} tokens")
    return tuple(out)


def write_records_parquet(records: Sequence[RequestRecord], path: str | os.PathLike[str],
                          window: tuple[float, float] | None, *, atomic: bool = True) -> None:
    """Write `records` to `path` as Parquet (see `records_table`), atomically unless `atomic` is
    False (for a caller that already writes to a temporary path)."""
    table = records_table(records, window)

    def write(dest: str | os.PathLike[str]) -> None:
        # zstd level 9 over byte-stream-split values: the smallest of the encodings tried
        # (benchmarks/results/results_size.md); splitting the bytes of the gaps lets zstd see
        # their mostly-constant high bytes as runs.
        _write_parquet(table, dest, use_dictionary=["client", "outcome"],
                       column_encoding={"itl_us.list.element": "BYTE_STREAM_SPLIT",
                                        "token_times_s.list.element": "BYTE_STREAM_SPLIT"})

    if not atomic:
        write(path)
        return
    with atomic_temp_path(path) as tmp:
        write(tmp)


def _write_parquet(table: Any, dest: str | os.PathLike[str], **options: Any) -> None:
    """Write `table` with zstd 9, no column statistics and no serialized Arrow schema (on runs
    of a few hundred requests the footer is a large share of the file, and readers need
    neither; benchmarks/results/results_size.md); the table's metadata go to the file's
    key-value metadata, where the readers here look for them."""
    _, pq = _arrow()
    with pq.ParquetWriter(dest, table.schema, compression="zstd", compression_level=9,
                          write_statistics=False, store_schema=False, **options) as writer:
        writer.add_key_value_metadata(table.schema.metadata or {})
        writer.write_table(table)


def _opt(x: Any) -> float | None:
    return None if x is None else float(x)


def records_row_count(path: str | os.PathLike[str]) -> int:
    """Rows of a records file from its Parquet footer (InputError when it is not a readable
    ExFairS records file)."""
    _, pq = _arrow()
    meta = _read_checked(path, pq.read_metadata)
    return int(meta.num_rows)


def _read_checked(path: str | os.PathLike[str], reader: Any) -> Any:
    """`reader(path)` (a pyarrow Parquet reader), with its ExFairS schema metadata checked."""
    pa, _ = _arrow()
    p = Path(path)
    try:
        got = reader(p)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"cannot read the records file: {exc}", source=str(p)) from None
    raw = got.metadata if hasattr(got, "num_row_groups") else got.schema.metadata
    meta = {k.decode(): v.decode() for k, v in (raw or {}).items()}
    if meta.get("exfairs.schema") != RECORDS_SCHEMA:
        raise InputError("not an ExFairS records file", field="exfairs.schema",
                         value=meta.get("exfairs.schema"), source=str(p))
    if meta.get("exfairs.schema_version") not in _READABLE_RECORDS_VERSIONS:
        raise InputError("unsupported records schema version", field="exfairs.schema_version",
                         value=meta.get("exfairs.schema_version"), source=str(p))
    return got


def read_records_parquet(path: str | os.PathLike[str]) -> tuple[RequestRecord, ...]:
    """The records of a file written by `write_records_parquet` (InputError naming the file when
    it is missing, unreadable or of another schema)."""
    _, pq = _arrow()
    p = Path(path)
    table = _read_checked(p, pq.read_table)
    try:
        cols = {name: table.column(name).to_pylist() for name in (
            "request_id", "client", "arrival_s", "prompt_tokens", "output_tokens", "slo_e2e_s",
            "slo_ttft_s", "slo_tpot_s", "outcome", "dispatch_s", "first_token_s", "finish_s",
            "generated_tokens", "preemptions", "error", "token_times_s")}
        # Version 1 stored every token time exactly in token_times_s and had no itl_us.
        gaps = (table.column("itl_us").to_pylist() if "itl_us" in table.column_names
                else [None] * table.num_rows)
        out = []
        for i in range(table.num_rows):
            first = _opt(cols["first_token_s"][i])
            out.append(RequestRecord(
                request_id=int(cols["request_id"][i]), client=str(cols["client"][i]),
                arrival_s=float(cols["arrival_s"][i]),
                prompt_tokens=int(cols["prompt_tokens"][i]),
                output_tokens=int(cols["output_tokens"][i]),
                slo=SLO(e2e_s=_opt(cols["slo_e2e_s"][i]), ttft_s=_opt(cols["slo_ttft_s"][i]),
                        tpot_s=_opt(cols["slo_tpot_s"][i])),
                outcome=Outcome(cols["outcome"][i]), dispatch_s=_opt(cols["dispatch_s"][i]),
                first_token_s=first,
                finish_s=_opt(cols["finish_s"][i]),
                generated_tokens=int(cols["generated_tokens"][i]),
                token_times_s=_token_times(first, gaps[i], cols["token_times_s"][i],
                                           int(cols["generated_tokens"][i])),
                preemptions=int(cols["preemptions"][i]), error=cols["error"][i]))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"malformed records file: {type(exc).__name__}: {exc}",
                         source=str(p)) from None
    return tuple(out)



# ----------------------------------------------------------------------------------------------
# Policy samples

SAMPLES_SCHEMA = "exfairs.policy_samples"


def samples_table(samples: Sequence[PolicySample]) -> Any | None:
    """The policy samples as a `pyarrow.Table`: ``time_s`` (double) and one list<double> column
    per sampled quantity (values indexed like the run's clients; for sparse samples,
    `PolicySample.clients`, a list<int32> column ``clients`` too, the values aligned with it).
    None when the samples do not share one list of quantity names in one order, or mix sparse
    and dense samples (they then stay in the results JSON)."""
    pa, _ = _arrow()
    if not samples:
        return None
    names = [n for n, _ in samples[0].values]
    sparse = samples[0].clients is not None
    if "time_s" in names or "clients" in names or len(set(names)) != len(names) or any(
            [n for n, _ in s.values] != names or (s.clients is not None) != sparse
            for s in samples):
        return None
    cols = {"time_s": pa.array([s.time_s for s in samples], type=pa.float64())}
    if sparse:
        cols["clients"] = _list_column(pa, [s.clients or () for s in samples], np.int32)
    for k, name in enumerate(names):
        cols[name] = _list_column(pa, [s.values[k][1] for s in samples], np.float64)
    meta = {"exfairs.schema": SAMPLES_SCHEMA,
            "exfairs.schema_version": str(RECORDS_SCHEMA_VERSION)}
    return pa.table(cols).replace_schema_metadata(meta)


def _list_column(pa: Any, rows: Sequence[Sequence[Any]], dtype: Any) -> Any:
    """A list<`dtype`> Arrow array of `rows` (no nulls), built from one flat NumPy array and the
    row offsets: the same array as ``pa.array([list(r) for r in rows])``, without converting
    every value through a Python list."""
    lens = np.fromiter((len(r) for r in rows), dtype=np.int32, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(lens, out=offsets[1:])
    flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=dtype, count=int(offsets[-1]))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))


def write_samples_parquet(table: Any, path: str | os.PathLike[str]) -> None:
    """Write a `samples_table` to `path` (not atomically: the caller writes a temporary path)."""
    # Byte-stream split: the samples change slowly, so their high bytes repeat (about 4x
    # smaller than the same numbers as JSON text; benchmarks/results/results_size.md).
    split = {f"{n}.list.element": "BYTE_STREAM_SPLIT" for n in table.column_names
             if n not in ("time_s", "clients")}
    _write_parquet(table, path, use_dictionary=False, column_encoding=split)


def read_samples_parquet(path: str | os.PathLike[str]) -> tuple[PolicySample, ...]:
    """The policy samples of a file written by `write_samples_parquet` (InputError naming the
    file when it is unreadable or of another schema)."""
    pa, pq = _arrow()
    p = Path(path)
    try:
        table = pq.read_table(p)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"cannot read the policy samples file: {exc}", source=str(p)) from None
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if meta.get("exfairs.schema") != SAMPLES_SCHEMA or "time_s" not in table.column_names:
        raise InputError("not an ExFairS policy samples file", field="exfairs.schema",
                         value=meta.get("exfairs.schema"), source=str(p))
    names = [n for n in table.column_names if n not in ("time_s", "clients")]
    times = table.column("time_s").to_pylist()
    cols = [table.column(n).to_pylist() for n in names]
    try:
        clients: list[tuple[int, ...] | None] = (
            [tuple(int(c) for c in row) for row in table.column("clients").to_pylist()]
            if "clients" in table.column_names else [None] * len(times))
        return tuple(PolicySample(time_s=float(t), values=tuple(
            (n, tuple(float(v) for v in col[i])) for n, col in zip(names, cols, strict=True)),
            clients=clients[i]) for i, t in enumerate(times))
    except (TypeError, ValueError) as exc:
        raise InputError(f"malformed policy samples file: {exc}", source=str(p)) from None
