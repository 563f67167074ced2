"""One copy of the metrics in a results file (schema 3): the run's `RunMetrics` rebuilt from the
flat summary (`exfairs.export.flat_summary`) plus the few fields it does not hold.

Schema 2 stored the metrics twice, as the flat summary and field by field under ``run.metrics``:
on small live runs that second copy was about a third of all the bytes. Schema 3 stores
``run.metrics_rest`` instead: the `RunMetrics` fields the flat summary has no key for (the QoE
and service parameters, `FairnessMetrics.service_gap_clients`, and any later non-scalar field),
in `exfairs.results`'s field-by-field encoding. The writer keeps the full ``run.metrics`` when the
summary cannot give the metrics back exactly (an infinite value, which the summary writes as
null, or a client weight that differs from its `ClientInfo`'s), so a reader always gets back
what was written.

These functions work on JSON values (the encoded form), not on the dataclasses.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from exfairs.export import VLLM_NAMES
from exfairs.metrics import AggregateMetrics, ClientMetrics, FairnessMetrics, RunMetrics

# RunMetrics fields the flat summary holds (the rest go to ``metrics_rest`` whole).
_FROM_FLAT = ("window_start_s", "window_end_s", "overall", "per_client", "fairness")
_MISSING = object()


def _put(out: dict[str, Any], name: str, src: dict[str, Any], key: str) -> None:
    # An absent key stays absent, so that the decoder reports it as missing (see flat_path).
    v = src.get(key, _MISSING)
    if v is not _MISSING:
        out[name] = v


def _aggregate(src: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(AggregateMetrics):
        _put(out, f.name, src, VLLM_NAMES.get(f.name, f.name))
    return out


def join_metrics(doc: dict[str, Any], rest: dict[str, Any]) -> dict[str, Any]:
    """The encoded ``RunMetrics`` of a schema-3 document: its flat summary `doc` and its
    ``run.metrics_rest`` `rest`."""
    got = rest.get("fairness")
    fairness_rest: dict[str, Any] = got if isinstance(got, dict) else {}
    fairness: dict[str, Any] = {}
    for f in dataclasses.fields(FairnessMetrics):
        _put(fairness, f.name, fairness_rest if f.name in fairness_rest else doc, f.name)
    per_client: list[Any] = []
    clients = doc.get("per_client")
    if isinstance(clients, dict):
        for name, entry in clients.items():
            if not isinstance(entry, dict):
                per_client.append(entry)
                continue
            cm: dict[str, Any] = {}
            for f in dataclasses.fields(ClientMetrics):
                if f.name == "client":
                    cm["client"] = name
                elif f.name == "metrics":
                    cm["metrics"] = _aggregate(entry)
                else:
                    _put(cm, f.name, entry, f.name)
            per_client.append(cm)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(RunMetrics):
        if f.name == "overall":
            out["overall"] = _aggregate(doc)
        elif f.name == "per_client":
            out["per_client"] = per_client if isinstance(clients, dict) else clients
        elif f.name == "fairness":
            out["fairness"] = fairness
        elif f.name in _FROM_FLAT:
            _put(out, f.name, doc, f.name)
        else:
            _put(out, f.name, rest, f.name)
    return out


def split_metrics(metrics: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any] | None:
    """The ``metrics_rest`` of the encoded `metrics` given the flat summary `doc` they were
    summarised into, or None when `join_metrics` would not give `metrics` back exactly (the
    writer then keeps the full copy)."""
    rest: dict[str, Any] = {k: v for k, v in metrics.items() if k not in _FROM_FLAT}
    fairness = metrics.get("fairness", {})
    # The summary holds the scalar fairness fields (`flat_summary`); lists and objects stay here.
    rest["fairness"] = {k: v for k, v in fairness.items() if isinstance(v, (list, dict))}
    if not rest["fairness"]:
        del rest["fairness"]
    return rest if join_metrics(doc, rest) == metrics else None


_CLIENT = re.compile(r"per_client\[(\d+)\](?:\.(metrics\.)?(.*))?$")


def flat_path(path: str, doc: dict[str, Any]) -> str:
    """Where in a schema-3 document the field at `path` (a path into the rebuilt metrics, e.g.
    ``metrics.overall.requests``) was read from (``num_prompts``), for error messages."""
    sub = path.removeprefix("metrics.")
    head, _, tail = sub.partition(".")
    if head == "overall":
        return VLLM_NAMES.get(tail, tail)
    if head == "fairness":
        return tail
    if head in ("window_start_s", "window_end_s"):
        return head
    m = _CLIENT.match(sub)
    if m:
        names = list(doc.get("per_client") or {})
        i = int(m.group(1))
        name = names[i] if i < len(names) else str(i)
        field = m.group(3) or ""
        if m.group(2):
            field = VLLM_NAMES.get(field, field)
        return f"per_client.{name}" + (f".{field}" if field else "")
    return "run.metrics_rest." + sub
