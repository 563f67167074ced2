"""Content identities for cache keys: everything that can change a simulated result.

A sweep cell's key (`exfairs.sim.sweep_grid.Cell.key`) hashes the identities below, so that
editing a scenario, a trace it references, a profile, or any source file that computes results
makes a new key instead of reusing an old cell:

* `scenario_identity` — the scenario TOML's bytes (bundled or a file) and the bytes of every trace
  it references (``trace = ...`` anywhere in it, resolved as the scenario reader does) and of its
  ``[dataset]`` (the dataset's files and its tokenizer's);
* `profile_identity` — the profile JSON's bytes (bundled or a file);
* `source_identity` — the source of the packages that compute results (core, sim, policies,
  calibration), file names and bytes, plus the file of a policy defined elsewhere (entry point).
* `dependency_identity` — the versions of what else computes results: the Python interpreter
  (implementation and version) and `RESULT_DEPENDENCIES` (numpy draws the workload and does the
  arithmetic, simpy orders the events). Libraries that only read or write files or draw
  figures are left out, except where they decide a result's inputs: pyarrow reads Parquet and
  ``datasets`` dataset files, transformers/tokenizers measure lengths with a tokenizer, so a
  scenario's ``[dataset]`` adds their versions to its identity (only then).

Unreadable inputs fall back to their name: the cell then fails when it runs, with the reader's
error. Files given by path are read at every call; bundled data and source once per process.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import platform
import sys
from collections.abc import Iterator
from importlib import metadata, resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

#: The packages whose code decides a simulated result.
RESULT_PACKAGES = ("exfairs", "exfairs.sim", "exfairs.policies", "exfairs.calibration")
_SOURCE_SUFFIXES = (".py", ".toml", ".json", ".csv")
#: Distributions (installed package names) whose version can change a simulated result.
RESULT_DEPENDENCIES = ("numpy", "simpy")
#: Dataset formats read with pyarrow (`exfairs.datasets`); their rows depend on its version.
_PYARROW_FORMATS = ("parquet", "hf")
#: What measures a dataset's lengths when it names a tokenizer (`exfairs.token_count`).
_TOKENIZER_DEPENDENCIES = ("transformers", "tokenizers")


def _reported_version(dist: str) -> str:
    """The installed version of distribution `dist` ("absent" when it is not installed)."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def _versions(dists: tuple[str, ...]) -> list[bytes]:
    return [f"{d}=={_reported_version(d)}".encode() for d in dists]


@functools.cache
def dependency_identity() -> str:
    """Digest of the interpreter's implementation and version and of the versions of
    `RESULT_DEPENDENCIES`, read once per process."""
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return _digest(python.encode(), *_versions(RESULT_DEPENDENCIES))


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return h.hexdigest()


def _trace_refs(doc: Any) -> Iterator[str]:
    """Every string value under a ``trace`` key, depth first, in document order."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k == "trace" and isinstance(v, str):
                yield v
            else:
                yield from _trace_refs(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _trace_refs(v)


def _dataset_parts(doc: Any, base_dir: Path | None) -> list[bytes]:
    """The bytes of a ``[dataset]`` table's files: the dataset (every file of a directory, by
    relative path) and its tokenizer's files, which set the measured lengths."""
    from exfairs.datasets import _detect_format, _resolve

    table = doc.get("dataset") if isinstance(doc, dict) else None
    if not isinstance(table, dict) or not isinstance(table.get("path"), str):
        return []
    roots = [_resolve(table["path"], base_dir)]
    tok = table.get("tokenizer")
    if isinstance(tok, str):
        roots.append(Path(tok) if base_dir is None or Path(tok).is_absolute()
                     else base_dir / tok)
    parts: list[bytes] = []
    for root in roots:
        files = sorted(f for f in root.rglob("*") if f.is_file()) if root.is_dir() else [root]
        for f in files:
            parts += [f.relative_to(root).as_posix().encode() if root.is_dir() else b"",
                      f.read_bytes()]
    # The readers' versions, when a reader beyond this package decides the rows or lengths.
    fmt = table.get("format", "auto")
    if fmt == "auto":
        fmt = _detect_format(roots[0])  # an unknown suffix raises: the run reports it
    if fmt in _PYARROW_FORMATS:
        parts += _versions(("pyarrow",))
    if isinstance(tok, str):
        parts += _versions(_TOKENIZER_DEPENDENCIES)
    return parts


def scenario_identity(path_or_name: str) -> str:
    """Digest of a scenario (file path or bundled name) and the traces it references. Files are
    read on every call (they may change between calls); bundled ones once per process."""
    from exfairs.trace_read import _read_bytes

    p = Path(path_or_name)
    if not (p.suffix == ".toml" or p.exists()):
        return _bundled_scenario_identity(path_or_name)
    try:
        data = p.read_bytes()
        doc = tomllib.loads(data.decode("utf-8"))
        refs = list(_trace_refs(doc))
        traces = [_read_bytes(ref, p.parent)[0] for ref in refs] + _dataset_parts(doc, p.parent)
    except Exception:  # unreadable or invalid: the run reports it
        return f"name:{path_or_name}"
    return _digest(data, *(r.encode() for r in refs), *traces)


@functools.cache
def _bundled_scenario_identity(name: str) -> str:
    from exfairs.trace_read import _read_bytes

    try:
        data = resources.files("exfairs").joinpath("data", "scenarios",
                                                   f"{name}.toml").read_bytes()
        doc = tomllib.loads(data.decode("utf-8"))
        refs = list(_trace_refs(doc))
        traces = [_read_bytes(ref, None)[0] for ref in refs] + _dataset_parts(doc, None)
    except Exception:
        return f"name:{name}"
    return _digest(data, *(r.encode() for r in refs), *traces)


def profile_identity(path_or_id: str) -> str:
    """Digest of a profile (file path, read on every call, or bundled id)."""
    p = Path(path_or_id)
    if not (p.suffix == ".json" or p.exists()):
        return _bundled_profile_identity(path_or_id)
    try:
        return _digest(p.read_bytes())
    except Exception:
        return f"name:{path_or_id}"


@functools.cache
def _bundled_profile_identity(profile_id: str) -> str:
    try:
        return _digest(resources.files("exfairs.calibration").joinpath(
            "profiles", f"{profile_id}.json").read_bytes())
    except Exception:
        return f"name:{profile_id}"


@functools.cache
def _package_source(package: str) -> str:
    mod = importlib.import_module(package)
    parts: list[bytes] = []
    for root in getattr(mod, "__path__", []):
        base = Path(root)
        for f in sorted(base.rglob("*")):
            rel = f.relative_to(base)
            if (f.is_file() and f.suffix in _SOURCE_SUFFIXES and "__pycache__" not in rel.parts
                    and not any(part.startswith(".") for part in rel.parts)):
                # Subpackages mapped elsewhere are covered by their own entry.
                parts.append(str(rel).encode())
                parts.append(f.read_bytes())
    return _digest(*parts)


def _in_result_packages(path: Path) -> bool:
    """True when `path` lies under a folder of `RESULT_PACKAGES` (its bytes are already hashed)."""
    resolved = path.resolve()
    for package in RESULT_PACKAGES:
        for root in getattr(importlib.import_module(package), "__path__", []):
            if resolved.is_relative_to(Path(root).resolve()):
                return True
    return False


@functools.cache
def source_identity(policy: str | None = None) -> str:
    """Digest of the result-computing source, and of `policy`'s own file when it lives outside
    the package (a third-party policy)."""
    parts = [_package_source(p).encode() for p in RESULT_PACKAGES]
    if policy is not None:
        try:
            from exfairs.policies.registry import policy_class

            src = inspect.getsourcefile(policy_class(policy))
            # By where the file is, not by module name: a module can join the exfairs.policies
            # namespace from a folder outside the package (an extra __path__ entry).
            if src is not None and not _in_result_packages(Path(src)):
                parts.append(Path(src).read_bytes())
        except Exception:
            parts.append(f"policy:{policy}".encode())
    return _digest(*parts)
