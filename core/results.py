"""One result per run (docs/design.md §8): a JSON file ``X.json`` and its records, ``X.parquet``.

``X.json`` (schema version 3) is, at its top level, ``"schema": "exfairs.result",
"schema_version": 3``, the run's flat summary (`exfairs.export.flat_summary`: `vllm bench serve`
keys such as ``mean_ttft_ms``, ``p99_itl_ms``, ``request_throughput``, ``duration``, the fairness
indices, ``per_client``), then::

    "records_file": "X.parquet", "records_sha256": "...", "num_records": N,
    "run": {"info": {...RunInfo...}, "clients": [...], "metrics_rest": {...},
            "policy_samples": [...]}

The metrics are stored once, as the flat summary: the reader rebuilds `RunMetrics` from it and
``run.metrics_rest`` (the few fields it has no key for; `exfairs.results_flat`). Where the summary
cannot give the metrics back exactly (an infinite value) ``run.metrics`` holds them whole instead,
as in schema 2 (which always had both).

When the policy recorded samples in one layout, they go to ``X.samples.parquet`` instead of
``run.policy_samples`` (``"samples_file"``, ``"samples_sha256"``, ``"num_policy_samples"``; a
column ``time_s`` and one list column per sampled quantity, indexed like the clients, or for
sparse samples aligned with a list column ``clients`` of client indices): about 4x
smaller than as JSON text, and read back with the result either way.

``run`` holds every dataclass field by field under its field names, so it reads like the types in
`exfairs.records`, `exfairs.metrics` and this module: enums are their values, ``(name, value)``
pair tuples (engine knobs, policy parameters, policy-sample values) JSON objects, NaN is JSON
``null`` and ±inf the strings ``"inf"``/``"-inf"``. The records are Parquet (one row per request,
token times exact; see `exfairs.export`), so pandas or polars read them without ExFairS.

`write_result` writes both files atomically (each via a temp file + os.replace, the records
first; the JSON names the records file's SHA-256, so a records file that does not belong to the
JSON is detected); `read_result` loads the same dataclasses back (equal to what was written) and
raises `InputError` naming the file and the field path (e.g. ``run.info.seed``, or the summary's
key such as ``per_client.a.num_prompts``) for a malformed file. Version-1 files (one JSON
document with the records inline) and version-2 files are still read.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import hashlib
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

from exfairs.atomic import atomic_temp_path, atomic_writer
from exfairs.errors import InputError
from exfairs.metrics import RunMetrics
from exfairs.records import ClientInfo, PolicySample, RequestRecord
from exfairs.results_flat import flat_path, join_metrics, split_metrics

_log = logging.getLogger(__name__)

SCHEMA = "exfairs.result"
SCHEMA_VERSION = 3
_READABLE_VERSIONS = (1, 2, 3)
# Versions whose records (and policy samples) live in Parquet files beside the JSON.
_SPLIT_VERSIONS = (2, 3)

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


def _encode_float(x: float) -> float | str | None:
    if math.isnan(x):
        return None
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _encode_times(times: tuple[float, ...]) -> dict[str, str]:
    raw = np.asarray(times, dtype="<f8").view(np.uint8).reshape(-1, 8).T.copy().tobytes()
    return {"f64z": base64.b64encode(zlib.compress(raw, 6)).decode("ascii")}


#: Field names per dataclass type, filled on first use.
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    # dataclasses.fields() rebuilds its tuple on every call; a results file encodes thousands of
    # dataclass instances of a handful of types.
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _encode(value: Any) -> Any:
    # Exact built-in scalar types first (the bulk of a document); subclasses (an IntEnum, a NumPy
    # float) fall through to the general checks below, which give the same results as before.
    tp = type(value)
    if tp is float:
        return _encode_float(value)
    if tp is int or tp is str or tp is bool or value is None:
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        is_record = isinstance(value, RequestRecord)
        is_sample = isinstance(value, PolicySample)
        for name in _field_names(tp):
            v = getattr(value, name)
            if is_record and name == "token_times_s":
                out[name] = _encode_times(v)
            elif is_sample and name == "clients" and v is None:
                continue  # dense sample: written as before sparse samples existed
            else:
                out[name] = _encode(v)
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


def encode_run(result: RunResult) -> dict[str, Any]:
    """The ``run`` part of a results document: info, clients, metrics, policy samples (no
    records), as JSON-ready values."""
    return {"info": _encode(result.info), "clients": _encode(result.clients),
            "metrics": _encode(result.metrics), "policy_samples": _encode(result.policy_samples)}


def decode_run(run: Any, source: str = "<dict>") -> RunResult:
    """The `RunResult` (without records) of a ``run`` part made by `encode_run`; InputError
    naming `source` and the field path when it does not match."""
    return result_from_dict({"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "run": run},
                            source)


def records_path(path: str | os.PathLike[str]) -> Path:
    """The records (Parquet) file that belongs to the results JSON at `path`."""
    return Path(path).with_suffix(".parquet")


def samples_path(path: str | os.PathLike[str]) -> Path:
    """The policy samples (Parquet) file that belongs to the results JSON at `path`."""
    return Path(path).with_suffix(".samples.parquet")


def result_to_dict(result: RunResult, records_file: str = "", records_sha256: str = "",
                   samples_file: str = "", samples_sha256: str = "") -> dict[str, Any]:
    """The JSON document of `result` (what `write_result` writes; the records go to Parquet,
    and so do the policy samples when `samples_file` is given)."""
    from exfairs.export import flat_summary

    run = encode_run(result)
    flat = flat_summary(result.info, result.clients, result.metrics)
    rest = split_metrics(run["metrics"], flat)
    if rest is not None:
        # One copy of the metrics: the reader rebuilds run.metrics from the summary.
        run = {k: v for k, v in run.items() if k != "metrics"} | {"metrics_rest": rest}
    doc = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **flat,
           "records_file": records_file, "records_sha256": records_sha256,
           "num_records": len(result.records), "run": run}
    if samples_file:
        run["policy_samples"] = []
        doc.update(samples_file=samples_file, samples_sha256=samples_sha256,
                   num_policy_samples=len(result.policy_samples))
    return doc


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_result(result: RunResult, path: str | os.PathLike[str]) -> None:
    """Write `result` to `path` (JSON) and its records beside it (`records_path`), each file
    atomically; on an exception neither file changes."""
    from exfairs.export import samples_table, write_records_parquet, write_samples_parquet

    dest = Path(path)
    rec_dest, smp_dest = records_path(dest), samples_path(dest)
    m = result.metrics
    table = samples_table(result.policy_samples)
    # The JSON is renamed into place first, then the records and samples: in between (or after
    # a crash there) the checksums tell a reader that those files are not this JSON's.
    with contextlib.ExitStack() as stack:
        tmp_records = stack.enter_context(atomic_temp_path(rec_dest))
        write_records_parquet(result.records, tmp_records, (m.window_start_s, m.window_end_s),
                              atomic=False)
        smp_name = smp_sha = ""
        if table is not None:
            tmp_samples = stack.enter_context(atomic_temp_path(smp_dest))
            write_samples_parquet(table, tmp_samples)
            smp_name, smp_sha = smp_dest.name, _sha256(tmp_samples)
        doc = result_to_dict(result, rec_dest.name, _sha256(tmp_records), smp_name, smp_sha)
        with atomic_writer(dest) as f:
            json.dump(doc, f, allow_nan=False, separators=(",", ":"))
            f.write("\n")
    if table is None:
        # A samples file from an earlier write of this name belongs to no JSON now.
        with contextlib.suppress(FileNotFoundError):
            smp_dest.unlink()


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
        if value is None:
            return math.nan
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
    if version not in _READABLE_VERSIONS:
        raise InputError(f"unsupported results schema version (this reader knows "
                         f"{', '.join(map(str, _READABLE_VERSIONS))}); use a matching exfairs "
                         "version", field="schema_version", value=version, source=source)
    body: dict[str, Any] = doc
    prefix = ""
    from_flat = False
    if version in _SPLIT_VERSIONS:
        run, prefix = doc.get("run"), "run."
        if not isinstance(run, dict):
            raise InputError("missing", field="run", value=None, source=source)
        body = {**run, "records": []}
        if version == 3 and "metrics" not in run:
            rest = run.get("metrics_rest")
            if not isinstance(rest, dict):
                raise InputError("expected an object", field="run.metrics_rest",
                                 value=type(rest).__name__, source=source)
            body["metrics"] = join_metrics(doc, rest)
            from_flat = True
    try:
        result: RunResult = _decode(RunResult, body, "")
    except _Bad as exc:
        shown = exc.value if not isinstance(exc.value, (dict, list)) else type(exc.value).__name__
        field = prefix + exc.path
        if from_flat and exc.path.startswith("metrics"):
            field = flat_path(exc.path, doc)
        raise InputError(exc.message, field=field, value=shown, source=source) from None
    return result


def _records_file(doc: dict[str, Any], path: Path) -> Path:
    """The records file named by a schema-2 document, checked to exist and to be the one the
    document was written with (its SHA-256)."""
    return _named_file(doc, path, "records_file", "records_sha256", "records")


def _named_file(doc: dict[str, Any], path: Path, key: str, sha_key: str, what: str) -> Path:
    name = doc.get(key)
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise InputError(f"expected the {what} file's name", field=key, value=name,
                         source=str(path))
    file = path.parent / name
    if not file.is_file():
        raise InputError(f"the {what} file is missing", field=key, value=name,
                         source=str(path))
    if _sha256(file) != doc.get(sha_key):
        raise InputError(f"the {what} file does not belong to this results file (checksum "
                         "differs); rerun the cell", field=key, value=name,
                         source=str(path))
    return file


def _attach_samples(result: RunResult, doc: dict[str, Any], path: Path) -> RunResult:
    """`result` with the policy samples of the samples file the document names (if any)."""
    from exfairs.export import read_samples_parquet

    name = doc.get("samples_file")
    if not name:
        return result
    smp = _named_file(doc, path, "samples_file", "samples_sha256", "policy samples")
    samples = read_samples_parquet(smp)
    if len(samples) != doc.get("num_policy_samples"):
        raise InputError(f"the policy samples file has {len(samples)} rows",
                         field="num_policy_samples", value=doc.get("num_policy_samples"),
                         source=str(path))
    return dataclasses.replace(result, policy_samples=samples)


def _attach_records(result: RunResult, doc: dict[str, Any], path: Path) -> RunResult:
    from exfairs.export import read_records_parquet

    records = read_records_parquet(_records_file(doc, path))
    if len(records) != doc.get("num_records"):
        raise InputError(f"the records file has {len(records)} rows", field="num_records",
                         value=doc.get("num_records"), source=str(path))
    return dataclasses.replace(result, records=records)


def check_result(path: str | os.PathLike[str]) -> RunResult:
    """`read_result` without decoding the records (they come back empty) but with everything
    that makes them loadable checked: the JSON, and the records file's presence, checksum and
    Parquet footer and row count. For resuming sweeps: much cheaper than a full read."""
    from exfairs.export import records_row_count

    p = Path(path)
    result = read_result(p, records=False)
    doc = json.loads(p.read_text(encoding="utf-8"))
    if doc.get("schema_version") in _SPLIT_VERSIONS:
        rows = records_row_count(_records_file(doc, p))
        if rows != doc.get("num_records"):
            raise InputError(f"the records file has {rows} rows", field="num_records",
                             value=doc.get("num_records"), source=str(p))
    return result


def read_result(path: str | os.PathLike[str], *, records: bool = True) -> RunResult:
    """Load a result written by `write_result` (with its records unless `records` is False:
    then `records` is empty and the Parquet file is not read); InputError naming the file (and
    the field) when it is missing, not JSON, or does not match the schema."""
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
    result = result_from_dict(doc, str(p))
    if doc.get("schema_version") in _SPLIT_VERSIONS:
        result = _attach_samples(result, doc, p)
    if records and doc.get("schema_version") in _SPLIT_VERSIONS:
        result = _attach_records(result, doc, p)
    elif not records:
        result = dataclasses.replace(result, records=())
    return result


def read_results(paths: Sequence[str | os.PathLike[str]], *, records: bool = True
                 ) -> list[RunResult]:
    """`read_result` for each path, in order; a directory stands for its ``*.json`` files
    (sorted by name)."""
    out: list[RunResult] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(read_result(f, records=records) for f in sorted(path.glob("*.json")))
        else:
            out.append(read_result(path, records=records))
    return out
