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

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from exfairs.atomic import atomic_temp_path, atomic_writer
from exfairs.errors import InputError
from exfairs.metrics import RunMetrics
from exfairs.records import ClientInfo, PolicySample, RequestRecord
from exfairs.result_codec import DecodeFailure, decode_value, encode_value
from exfairs.results_flat import flat_path, join_metrics, split_metrics

_log = logging.getLogger(__name__)
#: The codec's encoder under its name from before the split (tests and benchmarks import it).
_encode = encode_value

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


def encode_run(result: RunResult) -> dict[str, Any]:
    """The ``run`` part of a results document: info, clients, metrics, policy samples (no
    records), as JSON-ready values."""
    return {"info": encode_value(result.info), "clients": encode_value(result.clients),
            "metrics": encode_value(result.metrics),
            "policy_samples": encode_value(result.policy_samples)}


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
        result: RunResult = decode_value(RunResult, body, "")
    except DecodeFailure as exc:
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
