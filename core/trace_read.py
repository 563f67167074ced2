"""Reading request trace files (`exfairs.traces`): the column layout (`TraceColumns`, with the
Azure and BurstGPT presets), the parsed table (`Trace`), bundled traces by name, and `read_trace`
for CSV and JSON-lines files, with errors that name the file, row, column and value.

Split from `exfairs.traces`, which re-exports these names and maps a trace's rows to clients.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np

from exfairs.errors import ConfigError, InputError
from exfairs.paths import read_input_bytes

_log = logging.getLogger(__name__)

TimeUnit = Literal["auto", "s", "ms", "us", "ns", "datetime"]
ZeroOutput = Literal["error", "drop", "one"]

_UNIT_SCALE = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_TZ_SUFFIX = re.compile(r"(Z|[+-]\d\d:?\d\d)$")

#: Largest trace file read (bytes): public traces are tens of MB (Azure 2023 code: 1.6 MB).
TRACE_LIMIT_BYTES = 1024 * 2**20
#: Bundled traces by name (files in ``exfairs/data/traces``).
BUNDLED_TRACES: Mapping[str, str] = {
    "azure-conv": "azure_llm_2023_conv.csv",
    "azure-code": "azure_llm_2023_code.csv",
}

# A trace row count beyond which reading is refused (a guard against a wrong file, e.g. a log).
MAX_TRACE_ROWS = 50_000_000


@dataclass(frozen=True, slots=True)
class TraceColumns:
    """Where a trace file keeps its fields.

    `timestamp` holds the arrival time: a number in `time_unit` (``"auto"`` reads numbers as
    seconds) or an ISO-8601 date-time (``"datetime"``, or detected by ``"auto"``). `input` and
    `output` hold prompt and output token counts. `on_zero_output` says what to do with rows whose
    output count is 0 (failed requests in some traces): ``"error"``, ``"drop"`` the row, or serve
    ``"one"`` token.
    """

    timestamp: str = "TIMESTAMP"
    input: str = "ContextTokens"
    output: str = "GeneratedTokens"
    time_unit: TimeUnit = "auto"
    on_zero_output: ZeroOutput = "error"
    #: Optional column of tenant ids (read as text); `ByTenant` maps rows to clients by it.
    tenant: str | None = None

    def __post_init__(self) -> None:
        for name in ("timestamp", "input", "output"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError("must be a non-empty column name", field=name,
                                  value=getattr(self, name))
        if self.tenant is not None and (not isinstance(self.tenant, str) or not self.tenant):
            raise ConfigError("must be a non-empty column name", field="tenant",
                              value=self.tenant)
        if self.time_unit not in ("auto", "s", "ms", "us", "ns", "datetime"):
            raise ConfigError("must be one of auto, s, ms, us, ns, datetime", field="time_unit",
                              value=self.time_unit)
        if self.on_zero_output not in ("error", "drop", "one"):
            raise ConfigError("must be one of error, drop, one", field="on_zero_output",
                              value=self.on_zero_output)


#: The Azure LLM inference trace 2023 layout.
AZURE_COLUMNS = TraceColumns()
#: The BurstGPT layout (github.com/HPMLL/BurstGPT); its failed requests have 0 response tokens.
BURSTGPT_COLUMNS = TraceColumns(timestamp="Timestamp", input="Request tokens",
                                output="Response tokens", time_unit="s", on_zero_output="drop")


@dataclass(frozen=True, slots=True, eq=False)
class Trace:
    """A trace as columns, rows sorted by arrival (stable: ties keep file order).

    `arrival_s` is seconds since the trace's first arrival (so ``arrival_s[0] == 0``);
    `input_tokens` and `output_tokens` are ≥ 1. `rows` holds each row's 1-based position in the
    file's data rows, for error messages and provenance. `tenants` holds each row's tenant id when
    the columns name a tenant column (else None).
    """

    source: str
    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    rows: np.ndarray
    tenants: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    @property
    def span_s(self) -> float:
        """Seconds from the first to the last arrival."""
        return float(self.arrival_s[-1]) if len(self) else 0.0

    @property
    def mean_rate_rps(self) -> float:
        """Mean arrival rate, requests per second ((n − 1) gaps over the span; inf if no span)."""
        if len(self) < 2 or self.span_s <= 0:
            return math.inf
        return (len(self) - 1) / self.span_s

    def head(self, n: int) -> Trace:
        """The first `n` requests by arrival."""
        return Trace(self.source, self.arrival_s[:n], self.input_tokens[:n],
                     self.output_tokens[:n], self.rows[:n],
                     self.tenants[:n] if self.tenants is not None else None)


def bundled_traces() -> list[str]:
    """Names of the traces shipped with the package."""
    return sorted(BUNDLED_TRACES)


def _read_bytes(path_or_name: str | os.PathLike[str], base_dir: Path | None) -> tuple[bytes, str]:
    name = os.fspath(path_or_name)
    if name in BUNDLED_TRACES:
        res = resources.files("exfairs").joinpath("data", "traces", BUNDLED_TRACES[name])
        return res.read_bytes(), name
    p = Path(name)
    if base_dir is not None and not p.is_absolute():
        p = base_dir / p
    if os.path.lexists(p):  # a device or FIFO would be read without end
        return read_input_bytes(p, field="trace", what="trace file",
                                limit=TRACE_LIMIT_BYTES), str(p)
    try:
        return p.read_bytes(), str(p)
    except FileNotFoundError:
        raise InputError("no such trace file or bundled trace (bundled: "
                         f"{', '.join(bundled_traces())})", field="trace", value=name) from None
    except OSError as exc:
        raise InputError(f"cannot read trace file: {exc}", field="trace", value=name) from None


def _detect_columns(header: Sequence[str]) -> TraceColumns | None:
    # A layout two of whose three columns are present is taken as meant, so that the caller's
    # error names the missing column rather than an unknown layout.
    names = set(header)
    for preset in (AZURE_COLUMNS, BURSTGPT_COLUMNS):
        if len({preset.timestamp, preset.input, preset.output} & names) >= 2:
            return preset
    return None


def _parse_times(raw: list[str], rows: list[int], unit: TimeUnit, col: str,
                 source: str) -> np.ndarray:
    if unit != "datetime":
        try:
            values = np.array([float(x) for x in raw], dtype=np.float64)
        except ValueError:
            if unit != "auto":
                bad = next(i for i, x in enumerate(raw) if not _is_float(x))
                raise InputError(f"not a number (time unit {unit!r})",
                                 field=f"row {rows[bad]}.{col}", value=raw[bad],
                                 source=source) from None
        else:
            bad_idx = np.flatnonzero(~np.isfinite(values))
            if bad_idx.size:
                i = int(bad_idx[0])
                raise InputError("timestamps must be finite", field=f"row {rows[i]}.{col}",
                                 value=raw[i], source=source)
            return values * _UNIT_SCALE.get(unit, 1.0)
    # Date-times. numpy parses ISO strings with any number of fractional digits (Azure uses 7);
    # values with a zone offset go through datetime, which handles offsets.
    if not any(_TZ_SUFFIX.search(x.strip()) for x in raw):
        try:
            stamps = np.array([x.strip().replace(" ", "T") for x in raw], dtype="datetime64[ns]")
            ns = (stamps - stamps.min()).astype(np.int64)
            return np.asarray(ns, dtype=np.float64) * 1e-9
        except ValueError:
            pass
    out = np.empty(len(raw), dtype=np.float64)
    for i, x in enumerate(raw):
        try:
            dt = datetime.fromisoformat(x.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InputError("not a number or an ISO-8601 date-time",
                             field=f"row {rows[i]}.{col}", value=x, source=source) from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        out[i] = dt.timestamp()
    return out


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_tokens(raw: list[Any], rows: list[int], col: str, source: str) -> np.ndarray:
    out = np.empty(len(raw), dtype=np.int64)
    for i, x in enumerate(raw):
        try:
            v = float(x) if not isinstance(x, bool) else math.nan
        except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond float range
            v = math.nan
        if not math.isfinite(v) or v < 0 or not float(v).is_integer() or v > 1e9:
            raise InputError("must be a whole number of tokens in [0, 1e9]",
                             field=f"row {rows[i]}.{col}", value=x, source=source)
        out[i] = int(v)
    return out


def _names(cols: TraceColumns) -> tuple[str, ...]:
    base = (cols.timestamp, cols.input, cols.output)
    return (*base, cols.tenant) if cols.tenant is not None else base


def _csv_rows(text: str, columns: TraceColumns | None,
              source: str) -> tuple[TraceColumns, list[int], list[list[str]]]:
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise InputError("empty trace file", field="(file)", value=source, source=source) from None
    except csv.Error as exc:
        raise InputError(f"not a valid CSV header: {exc}", field="(header)", value=None,
                         source=source) from None
    header = [h.strip() for h in header]
    cols = columns or _detect_columns(header)
    if cols is None:
        raise InputError("unknown trace layout: name the timestamp, input and output columns "
                         "(TraceColumns) or use the Azure or BurstGPT layout",
                         field="(header)", value=header, source=source)
    idx: list[int] = []
    for name in _names(cols):
        if name not in header:
            raise InputError(f"column missing from the header {header}", field=name, value=None,
                             source=source)
        idx.append(header.index(name))
    lines: list[int] = []
    values: list[list[str]] = [[] for _ in idx]
    try:
        for n, row in enumerate(reader, start=1):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise InputError(f"has {len(row)} fields, the header {len(header)}",
                                 field=f"row {n}", value=",".join(row), source=source)
            lines.append(n)
            for k, j in enumerate(idx):
                values[k].append(row[j])
            if len(lines) > MAX_TRACE_ROWS:
                raise InputError(f"more than {MAX_TRACE_ROWS} rows", field="(file)", value=source,
                                 source=source)
    except csv.Error as exc:
        raise InputError(f"malformed CSV: {exc}", field=f"row {reader.line_num}", value=None,
                         source=source) from None
    return cols, lines, values


def _jsonl_rows(text: str, columns: TraceColumns | None,
                source: str) -> tuple[TraceColumns, list[int], list[list[Any]]]:
    cols = columns
    lines: list[int] = []
    values: list[list[Any]] = [[], [], [], []]
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as exc:
            # JSONDecodeError is a ValueError; so is an integer literal too long to convert.
            raise InputError(f"not valid JSON: {exc}", field=f"line {n}", value=line[:80],
                             source=source) from None
        if not isinstance(obj, dict):
            raise InputError("each line must be a JSON object", field=f"line {n}",
                             value=line[:80], source=source)
        if cols is None:
            cols = _detect_columns(list(obj))
            if cols is None:
                raise InputError("unknown trace layout: name the timestamp, input and output "
                                 "fields (TraceColumns)", field=f"line {n}", value=sorted(obj),
                                 source=source)
        for k, name in enumerate(_names(cols)):
            if name not in obj:
                raise InputError("field missing", field=f"line {n}.{name}", value=None,
                                 source=source)
            values[k].append(obj[name])
        lines.append(n)
        if len(lines) > MAX_TRACE_ROWS:
            raise InputError(f"more than {MAX_TRACE_ROWS} rows", field="(file)", value=source,
                             source=source)
    if cols is None:
        raise InputError("empty trace file", field="(file)", value=source, source=source)
    return cols, lines, values


def read_trace(
    path_or_name: str | os.PathLike[str],
    *,
    columns: TraceColumns | None = None,
    fmt: Literal["csv", "jsonl"] | None = None,
    limit: int | None = None,
    base_dir: Path | None = None,
) -> Trace:
    """Read a trace file (or a bundled trace by name, see `bundled_traces`).

    `fmt` defaults from the suffix (``.jsonl``/``.ndjson`` → JSON lines, else CSV); `columns`
    defaults to the Azure or BurstGPT layout detected from the header. Rows are sorted by arrival
    (stably), then the first `limit` kept. Relative paths are taken from `base_dir` when given.
    Raises InputError naming the file, the row/column and the value for anything malformed:
    missing columns, unparsable or negative numbers, bad encoding, empty files.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InputError("must be a positive integer", field="limit", value=limit)
    data, source = _read_bytes(path_or_name, base_dir)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text: {exc}", field="(file)", value=source,
                         source=source) from None
    if not text.strip():
        raise InputError("empty trace file", field="(file)", value=source, source=source)
    kind = fmt or ("jsonl" if Path(source).suffix.lower() in (".jsonl", ".ndjson") else "csv")
    if kind not in ("csv", "jsonl"):
        raise InputError("must be 'csv' or 'jsonl'", field="format", value=kind, source=source)
    cols, lines, raw = (_jsonl_rows if kind == "jsonl" else _csv_rows)(text, columns, source)
    if not lines:
        raise InputError("the trace has no requests", field="(file)", value=source, source=source)
    unit = cols.time_unit
    if kind == "jsonl" and unit in ("auto", "s", "ms", "us", "ns"):
        raw_t = [str(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else
                 (x if isinstance(x, str) else "nan") for x in raw[0]]
    else:
        raw_t = [str(x) for x in raw[0]]
    times = _parse_times(raw_t, lines, unit, cols.timestamp, source)
    inp = _parse_tokens(raw[1], lines, cols.input, source)
    out = _parse_tokens(raw[2], lines, cols.output, source)
    rows = np.asarray(lines, dtype=np.int64)
    tenants = (np.asarray([str(x) for x in raw[3]], dtype=object) if cols.tenant is not None
               else None)
    zero_in = np.flatnonzero(inp < 1)
    if zero_in.size:
        i = int(zero_in[0])
        raise InputError("a request needs at least one prompt token",
                         field=f"row {lines[i]}.{cols.input}", value=int(inp[i]), source=source)
    zero_out = out < 1
    if zero_out.any():
        if cols.on_zero_output == "error":
            i = int(np.flatnonzero(zero_out)[0])
            raise InputError("output count 0 (set on_zero_output to 'drop' or 'one')",
                             field=f"row {lines[i]}.{cols.output}", value=0, source=source)
        if cols.on_zero_output == "drop":
            keep = ~zero_out
            times, inp, out, rows = times[keep], inp[keep], out[keep], rows[keep]
            tenants = tenants[keep] if tenants is not None else None
            if not len(rows):
                raise InputError("no request with output tokens", field=cols.output, value=0,
                                 source=source)
        else:
            out = np.maximum(out, 1)
        _log.info("%s: %d rows with 0 output tokens (%s)", source, int(zero_out.sum()),
                  cols.on_zero_output)
    order = np.argsort(times, kind="stable")
    times = times[order]
    times = times - times[0]
    trace = Trace(source, times, inp[order], out[order], rows[order],
                  tuple(tenants[order]) if tenants is not None else None)
    return trace.head(limit) if limit is not None else trace
