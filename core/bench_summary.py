"""A run's summary as flat JSON with `vllm bench serve`'s key names, for readers outside ExFairS.

**Summary** (`flat_summary`): one JSON object of scalars — the `vllm bench serve` result keys
(``duration``, ``completed``, ``failed``, ``total_input_tokens``, ``request_throughput``,
``mean_ttft_ms``, ``p99_itl_ms``, ...) over the counted requests, ExFairS's fairness indices, the
run's provenance, and ``per_client``: the same keys for each client. Undefined values are JSON
``null`` (never the string "nan").

Split from `exfairs.export` (which re-exports these names and writes the Parquet files).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from exfairs.metrics import AggregateMetrics, RunMetrics
from exfairs.records import ClientInfo

# AggregateMetrics field → vllm bench serve key, where the two differ.
VLLM_NAMES = {"requests": "num_prompts", "duration_s": "duration"}


def _json_num(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def aggregate_dict(m: AggregateMetrics) -> dict[str, Any]:
    """One `AggregateMetrics` under `vllm bench serve`'s key names (null for NaN)."""
    return {VLLM_NAMES.get(f.name, f.name): _json_num(getattr(m, f.name))
            for f in dataclasses.fields(m)}


def flat_summary(info: Any, clients: Sequence[ClientInfo], metrics: RunMetrics
                 ) -> dict[str, Any]:
    """The run's summary as one flat JSON object (see the module docstring); `info` is the run's
    `exfairs.results.RunInfo`."""
    knobs = dict(info.engine_knobs)
    out: dict[str, Any] = {
        # No copy of the wall-clock fields (date, wall time): `run.info` holds them once, so
        # two runs of one cell differ only there.
        "backend": info.backend, "scenario": info.scenario,
        "experiment": info.experiment, "policy": info.policy, "mode": info.mode,
        "seed": info.seed, "load_factor": _json_num(info.load_factor),
        "profile_id": info.profile_id, "model_id": knobs.get("model"),
        "max_concurrency": knobs.get("max_inflight"),
        "window_start_s": _json_num(metrics.window_start_s),
        "window_end_s": _json_num(metrics.window_end_s),
    }
    out.update(aggregate_dict(metrics.overall))
    out.update(_scalars(metrics.fairness))  # every scalar fairness index, under its own name
    weights = {c.name: c.weight for c in clients}
    out["per_client"] = {
        cm.client: {**_scalars(cm, skip=("client",)),
                    "weight": _json_num(weights.get(cm.client, cm.weight)),
                    **aggregate_dict(cm.metrics)}
        for cm in metrics.per_client}
    return out


def _scalars(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The int/float/str/bool fields of a dataclass (null for NaN), in field order."""
    return {f.name: _json_num(getattr(obj, f.name)) for f in dataclasses.fields(obj)
            if f.name not in skip
            and isinstance(getattr(obj, f.name), (int, float, str, bool))}
