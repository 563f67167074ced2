"""Request traces: reading arrival/length traces and mapping their rows to clients
(docs/design.md §6).

A trace is a table of requests with an arrival timestamp, a prompt (input) token count and an
output token count. Supported files:

- the Azure LLM inference traces 2023 (CSV, ``TIMESTAMP,ContextTokens,GeneratedTokens``; bundled
  as ``azure-conv`` and ``azure-code``, CC-BY-4.0, see ``data/traces/SOURCE.md``);
- BurstGPT-style CSVs (``Timestamp``, ``Request tokens``, ``Response tokens``);
- any CSV or JSON-lines file whose timestamp / input / output columns are named by `TraceColumns`.

The mapping of rows to clients is explicit: round robin, seeded random with weights, by
prompt-length thresholds, or by a tenant column the file has (`TraceColumns.tenant`,
`ByTenant`). A trace becomes a `Workload` with `workload_from_trace`, or serves as the arrival
process of a scenario client (`exfairs.scenario`).
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
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from exfairs.errors import ConfigError, InputError
from exfairs.paths import read_input_bytes
from exfairs.records import ClientInfo, LatencyModel, Workload
from exfairs.rng import stream

if TYPE_CHECKING:
    from exfairs.scenario import SloSpec

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


# -- mapping rows to clients ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoundRobin:
    """Row k (by arrival) goes to client k mod n."""


@dataclass(frozen=True, slots=True)
class RandomAssignment:
    """Each row goes to a client drawn independently with probability ∝ `weights` (equal when
    None), from the stream ``stream(seed, "trace", "mapping")``."""

    weights: tuple[float, ...] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError("must be a non-negative integer", field="seed", value=self.seed)
        if self.weights is not None:
            for w in self.weights:
                if not (isinstance(w, (int, float)) and math.isfinite(w) and 0 <= w <= 1e9):
                    raise ConfigError("weights must be finite numbers ≥ 0", field="weights",
                                      value=self.weights)
            if sum(self.weights) <= 0:
                raise ConfigError("at least one weight must be > 0", field="weights",
                                  value=self.weights)


@dataclass(frozen=True, slots=True)
class PromptLengthThresholds:
    """Client k gets the rows with ``thresholds[k-1] ≤ prompt tokens < thresholds[k]`` (the first
    client everything below ``thresholds[0]``, the last everything from ``thresholds[-1]``); so
    there is one threshold fewer than clients, in increasing order."""

    thresholds: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.thresholds:
            raise ConfigError("needs at least one threshold", field="thresholds",
                              value=self.thresholds)
        prev = 0
        for t in self.thresholds:
            if isinstance(t, bool) or not isinstance(t, int) or t <= prev:
                raise ConfigError("must be increasing positive integers", field="thresholds",
                                  value=self.thresholds)
            prev = t


@dataclass(frozen=True, slots=True)
class ByTenant:
    """Rows go to clients by the trace's tenant column (`TraceColumns.tenant`): a tenant named
    like a client to that client, the others in order of first appearance to the clients in turn
    (`exfairs.datasets.tenant_clients`)."""


ClientMapping = RoundRobin | RandomAssignment | PromptLengthThresholds | ByTenant


def assign_clients(trace: Trace, n_clients: int, mapping: ClientMapping,
                   client_names: Sequence[str] | None = None) -> np.ndarray:
    """The client index (0 … n_clients − 1) of each row of `trace`, by `mapping` (`ByTenant`
    matches tenants to `client_names`; default: "0", "1", …)."""
    if n_clients < 1:
        raise InputError("needs at least one client", field="clients", value=n_clients)
    n = len(trace)
    if isinstance(mapping, ByTenant):
        from exfairs.datasets import tenant_clients

        if trace.tenants is None:
            raise InputError("ByTenant needs a tenant column (TraceColumns.tenant)",
                             field="mapping", value="tenant", source=trace.source)
        names = list(client_names) if client_names is not None else [
            str(i) for i in range(n_clients)]
        return tenant_clients(trace.tenants, names)
    if isinstance(mapping, RoundRobin):
        return np.arange(n, dtype=np.int64) % n_clients
    if isinstance(mapping, RandomAssignment):
        w = np.ones(n_clients) if mapping.weights is None else np.asarray(mapping.weights, float)
        if w.shape[0] != n_clients:
            raise InputError(f"needs one weight per client ({n_clients})", field="mapping.weights",
                             value=mapping.weights)
        rng = stream(mapping.seed, "trace", "mapping")
        return rng.choice(n_clients, size=n, p=w / w.sum()).astype(np.int64)
    if isinstance(mapping, PromptLengthThresholds):
        if len(mapping.thresholds) != n_clients - 1:
            raise InputError(f"needs one threshold fewer than clients ({n_clients - 1})",
                             field="mapping.thresholds", value=mapping.thresholds)
        return np.searchsorted(np.asarray(mapping.thresholds), trace.input_tokens,
                               side="right").astype(np.int64)
    raise InputError("unknown client mapping", field="mapping", value=mapping)


def workload_from_trace(
    path: str | os.PathLike[str] | Trace,
    *,
    clients: Sequence[ClientInfo | str],
    mapping: ClientMapping,
    limit: int | None = None,
    slo: SloSpec | Mapping[str, SloSpec] | None = None,
    latency: LatencyModel | None = None,
    columns: TraceColumns | None = None,
    speedup: float = 1.0,
    seed: int = 0,
    name: str | None = None,
    max_model_len: int | None = None,
) -> Workload:
    """A workload that replays a trace: row k becomes one request with the row's arrival
    (seconds since the trace's first arrival, divided by `speedup`), prompt and output tokens.

    `clients` names the clients (ClientInfo or plain names, weight 1, class "mix"); `mapping`
    assigns rows to them. `slo` gives every client's SLOs (one `SloSpec`, or one per client name;
    clients without one get none); SLOs given as scale factors and `Request.unloaded_e2e_s` need
    `latency`. `max_model_len` clamps prompts so prompt + output fits (see
    `exfairs.workload.clamp_lengths`). `seed` is only recorded (a replay draws nothing, except
    a `RandomAssignment` mapping, which has its own seed). The workload's `duration_s` is the last
    arrival plus one mean inter-arrival gap.
    """
    from exfairs.workload import build_requests  # import here: workload imports this module

    if not (isinstance(speedup, (int, float)) and math.isfinite(speedup) and 0 < speedup <= 1e6):
        raise InputError("must be a number in (0, 1e6]", field="speedup", value=speedup)
    infos = tuple(c if isinstance(c, ClientInfo) else ClientInfo(name=c) for c in clients)
    names = [c.name for c in infos]
    if not infos or len(set(names)) != len(names):
        raise InputError("needs one or more clients with distinct names", field="clients",
                         value=names)
    trace = path if isinstance(path, Trace) else read_trace(path, columns=columns, limit=limit)
    if isinstance(path, Trace) and limit is not None:
        trace = trace.head(limit)
    owner = assign_clients(trace, len(infos), mapping, names)
    if isinstance(slo, Mapping):
        unknown = sorted(set(slo) - set(names))
        if unknown:
            raise InputError("SLOs given for clients that are not listed", field="slo",
                             value=unknown)
        specs = [slo.get(n) for n in names]
    else:
        specs = [slo] * len(infos)
    arrivals = trace.arrival_s / float(speedup)
    n = len(trace)
    duration = float(arrivals[-1]) + (float(arrivals[-1]) / (n - 1) if n > 1 else 0.0)
    duration = max(duration, float(np.nextafter(arrivals[-1], np.inf)))
    requests = build_requests(
        client_names=names,
        client_index=owner,
        arrivals_s=arrivals,
        prompt_tokens=trace.input_tokens,
        output_tokens=trace.output_tokens,
        slo_specs=specs,
        latency=latency,
        max_model_len=max_model_len,
    )
    stem = trace.source if trace.source in BUNDLED_TRACES else Path(trace.source).stem
    label = name or f"trace:{stem}"
    return Workload(name=label, seed=seed, clients=infos, requests=requests, duration_s=duration)
