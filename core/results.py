"""One results file per run (DESIGN.md §8): provenance, clients, records, metrics, policy samples.

The file is JSON with a versioned schema::

    {"schema": "exfairs.result", "schema_version": 1,
     "info": {...RunInfo...}, "clients": [...], "records": [...], "metrics": {...},
     "policy_samples": [...]}

Every dataclass is written field by field under its field names, so the file reads like the types
in `exfairs.records`, `exfairs.metrics` and this module. Conventions:

* non-finite floats are the strings ``"nan"``, ``"inf"``, ``"-inf"`` (the file stays strict JSON);
* enums are their values (``"finished"``); ``(name, value)`` pair tuples (engine knobs, policy
  parameters, policy-sample values) are JSON objects;
* a record's `token_times_s` is stored exactly but compactly: the float64 array, byte-shuffled,
  zlib-compressed and base64-encoded (``{"f64z": "..."}``) — about 5 bytes per token instead of
  about 19 as decimal text (600 requests × 256 tokens: about 1.3 MB instead of 3.0 MB).

`write_result` writes atomically (temp file + os.replace); `read_result` loads the same dataclasses
back (equal to what was written) and raises `InputError` naming the file and the field path
(e.g. ``records[12].slo.e2e_s``) for a malformed file.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
import math
import os
import subprocess
import types
import typing
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import numpy as np

from exfairs.atomic import atomic_writer
from exfairs.errors import InputError
from exfairs.metrics import RunMetrics
from exfairs.records import ClientInfo, PolicySample, RequestRecord

_log = logging.getLogger(__name__)

SCHEMA = "exfairs.result"
SCHEMA_VERSION = 1

Scalar = int | float | str | bool
Knobs = tuple[tuple[str, Scalar], ...]


@dataclass(frozen=True, slots=True)
class RunInfo:
    """Provenance of one run.

    `backend` is ``"sim"`` or ``"live"``; `mode` the policy mode (``gate``/``priority``/
    ``engine``); `load_factor` the multiple of engine capacity the scenario's rates were scaled to;
    `engine_knobs` and `policy_params` the resolved settings as (name, value) pairs; `created_utc`
    an ISO-8601 UTC timestamp; `wall_time_s` the run's wall-clock duration in seconds.
    """

    backend: Literal["sim", "live"]
    scenario: str
    experiment: str
    policy: str
    mode: str
    seed: int
    load_factor: float
    profile_id: str
    engine_knobs: Knobs = ()
    policy_params: Knobs = ()
    package_version: str = ""
    git_revision: str = ""
    created_utc: str = ""
    wall_time_s: float = 0.0


@dataclass(frozen=True, slots=True)
class RunResult:
    """Everything one run produced; `clients` in the workload's order."""

    info: RunInfo
    clients: tuple[ClientInfo, ...]
    records: tuple[RequestRecord, ...]
    metrics: RunMetrics
    policy_samples: tuple[PolicySample, ...] = ()


def git_revision(source_dir: str | os.PathLike[str] | None = None) -> str:
    """The git commit of the source tree (best effort): ``git rev-parse HEAD`` run in
    `source_dir` (default: this package's directory); "" when git or a repository is unavailable.
    Never raises."""
    where = Path(source_dir) if source_dir is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    rev = out.stdout.strip()
    return rev if out.returncode == 0 and len(rev) >= 7 else ""


def utc_now() -> str:
    """The current time as an ISO-8601 UTC string (seconds), for `RunInfo.created_utc`."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------------------------
# Encoding


def _encode_float(x: float) -> float | str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _encode_times(times: tuple[float, ...]) -> dict[str, str]:
    raw = np.asarray(times, dtype="<f8").view(np.uint8).reshape(-1, 8).T.copy().tobytes()
    return {"f64z": base64.b64encode(zlib.compress(raw, 6)).decode("ascii")}


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if isinstance(value, RequestRecord) and f.name == "token_times_s":
                out[f.name] = _encode_times(v)
            else:
                out[f.name] = _encode(v)
        return out
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return _encode_float(value)
    if isinstance(value, tuple):
        if value and all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str)
                         for p in value):
            return {k: _encode(v) for k, v in value}
        return [_encode(v) for v in value]
    raise TypeError(f"cannot encode {type(value).__name__} in a results file")


def result_to_dict(result: RunResult) -> dict[str, Any]:
    """The JSON document of `result` (what `write_result` writes)."""
    body = _encode(result)
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **body}


def write_result(result: RunResult, path: str | os.PathLike[str]) -> None:
    """Write `result` to `path` as JSON, atomically (a crash leaves the old file or none)."""
    doc = result_to_dict(result)
    with atomic_writer(path) as f:
        json.dump(doc, f, allow_nan=False, separators=(",", ":"))
        f.write("\n")


# ----------------------------------------------------------------------------------------------
# Decoding


class _Bad(Exception):
    def __init__(self, path: str, value: Any, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.value = value
        self.message = message


def _decode_times(value: Any, path: str) -> tuple[float, ...]:
    if isinstance(value, list):
        return tuple(_decode(float, v, f"{path}[{i}]") for i, v in enumerate(value))
    if not (isinstance(value, dict) and isinstance(value.get("f64z"), str)):
        raise _Bad(path, value, "expected {\"f64z\": <base64>} or a list of seconds")
    try:
        raw = zlib.decompress(base64.b64decode(value["f64z"], validate=True))
    except (binascii.Error, zlib.error) as exc:
        raise _Bad(path, "<data>", f"corrupt token times: {exc}") from None
    if len(raw) % 8:
        raise _Bad(path, "<data>", "corrupt token times: length is not a multiple of 8")
    arr = np.frombuffer(raw, dtype=np.uint8).reshape(8, -1).T.copy().view("<f8").ravel()
    return tuple(float(x) for x in arr)


_hints_cache: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _hints_cache:
        _hints_cache[cls] = typing.get_type_hints(cls)
    return _hints_cache[cls]


def _decode(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _Bad(path, value, f"expected an object ({tp.__name__})")
        hints = _hints(tp)
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(tp):
            sub = f"{path}.{f.name}" if path else f.name
            if f.name not in value:
                if (f.default is dataclasses.MISSING
                        and f.default_factory is dataclasses.MISSING):
                    raise _Bad(sub, None, "missing")
                continue
            if tp is RequestRecord and f.name == "token_times_s":
                kwargs[f.name] = _decode_times(value[f.name], sub)
            else:
                kwargs[f.name] = _decode(hints[f.name], value[f.name], sub)
        try:
            return tp(**kwargs)
        except (ValueError, TypeError) as exc:
            raise _Bad(path, value, str(exc)) from None
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        # Exact JSON types first so that 1 stays an int and true a bool in int | float | bool.
        for a in args:
            if a in (bool, int, str) and type(value) is a:
                return value
        errors: list[str] = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _decode(a, value, path)
            except _Bad as exc:
                errors.append(exc.message)
        raise _Bad(path, value, "; ".join(errors) or "unexpected value")
    if origin is Literal:
        if value not in args:
            raise _Bad(path, value, f"expected one of {list(args)}")
        return value
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            elem = args[0]
            if typing.get_origin(elem) is tuple and len(typing.get_args(elem)) == 2 \
                    and typing.get_args(elem)[0] is str and isinstance(value, dict):
                vt = typing.get_args(elem)[1]
                return tuple((k, _decode(vt, v, f"{path}.{k}")) for k, v in value.items())
            if not isinstance(value, list):
                raise _Bad(path, value, "expected a list")
            return tuple(_decode(elem, v, f"{path}[{i}]") for i, v in enumerate(value))
        if not isinstance(value, list) or len(value) != len(args):
            raise _Bad(path, value, f"expected a list of {len(args)} items")
        return tuple(_decode(a, v, f"{path}[{i}]")
                     for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if isinstance(tp, type) and issubclass(tp, Enum):
        try:
            return tp(value)
        except ValueError:
            raise _Bad(path, value, f"expected one of {[m.value for m in tp]}") from None
    if tp is bool:
        if not isinstance(value, bool):
            raise _Bad(path, value, "expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(path, value, "expected an integer")
        return value
    if tp is float:
        if isinstance(value, str) and value in ("nan", "inf", "-inf"):
            return math.nan if value == "nan" else float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Bad(path, value, "expected a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _Bad(path, value, "expected a string")
        return value
    raise _Bad(path, value, f"unsupported type {tp!r}")


def result_from_dict(doc: Any, source: str = "<dict>") -> RunResult:
    """Build a `RunResult` from a parsed results document; InputError naming `source` and the
    field path when it does not match the schema."""
    if not isinstance(doc, dict):
        raise InputError("not a results file (expected a JSON object)", source=source)
    if doc.get("schema") != SCHEMA:
        raise InputError(f"not a results file (expected schema {SCHEMA!r})", field="schema",
                         value=doc.get("schema"), source=source)
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise InputError(f"unsupported results schema version (this reader knows "
                         f"{SCHEMA_VERSION}); use a matching exfairs version",
                         field="schema_version", value=version, source=source)
    try:
        result: RunResult = _decode(RunResult, doc, "")
    except _Bad as exc:
        shown = exc.value if not isinstance(exc.value, (dict, list)) else type(exc.value).__name__
        raise InputError(exc.message, field=exc.path, value=shown, source=source) from None
    return result


def read_result(path: str | os.PathLike[str]) -> RunResult:
    """Load a results file written by `write_result`; InputError naming the file (and the field)
    when it is missing, not JSON, or does not match the schema."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read results file: {exc.strerror or exc}",
                         source=str(p)) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                         "the file may be truncated", source=str(p)) from None
    return result_from_dict(doc, str(p))


def read_results(paths: Sequence[str | os.PathLike[str]]) -> list[RunResult]:
    """`read_result` for each path, in order; a directory stands for its ``*.json`` files
    (sorted by name)."""
    out: list[RunResult] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(read_result(f) for f in sorted(path.glob("*.json")))
        else:
            out.append(read_result(path))
    return out
