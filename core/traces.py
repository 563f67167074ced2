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

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from exfairs.errors import ConfigError, InputError
from exfairs.records import ClientInfo, LatencyModel, Workload
from exfairs.rng import stream
from exfairs.trace_read import (
    AZURE_COLUMNS,
    BUNDLED_TRACES,
    BURSTGPT_COLUMNS,
    MAX_TRACE_ROWS,
    TRACE_LIMIT_BYTES,
    TimeUnit,
    Trace,
    TraceColumns,
    ZeroOutput,
    bundled_traces,
    read_trace,
)

if TYPE_CHECKING:
    from exfairs.scenario import SloSpec

# Re-exported: reading trace files moved to `exfairs.trace_read`; callers import the names here.
__all__ = [
    "AZURE_COLUMNS",
    "BUNDLED_TRACES",
    "BURSTGPT_COLUMNS",
    "MAX_TRACE_ROWS",
    "TRACE_LIMIT_BYTES",
    "ByTenant",
    "ClientMapping",
    "PromptLengthThresholds",
    "RandomAssignment",
    "RoundRobin",
    "TimeUnit",
    "Trace",
    "TraceColumns",
    "ZeroOutput",
    "assign_clients",
    "bundled_traces",
    "read_trace",
    "workload_from_trace",
]


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
