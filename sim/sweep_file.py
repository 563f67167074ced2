"""Sweep files: TOML (`sweep_from_toml`), a file by path or a bundled sweep by name
(`load_sweep`); bad input raises InputError naming the file, field and value.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from exfairs.errors import InputError
from exfairs.paths import read_input_bytes
from exfairs.policies.admission import HOPELESS, KEYS, LIMITS, AdmissionConfig
from exfairs.sim.sweep_grid import Knobs, SweepConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


# A sweep's name becomes a directory name (results/<name>): no separators, no leading dot.
_SWEEP_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def admission_from_table(value: Any, source: str) -> AdmissionConfig:
    """A sweep file's ``[admission]`` table (the keys of `AdmissionConfig.parse`)."""
    known = KEYS
    if not isinstance(value, dict):
        raise InputError(f"must be a table with keys {', '.join(known)}",
                         field="admission", value=value, source=source)
    for k, v in value.items():
        if k not in known:
            raise InputError(f"unknown key; expected some of {list(known)}",
                             field=f"admission.{k}", value=v, source=source)
    for k, allowed in (("hopeless", HOPELESS), ("limit", LIMITS)):
        if k in value and not isinstance(value[k], str):
            raise InputError(f"must be one of {', '.join(allowed)}", field=f"admission.{k}",
                             value=value[k], source=source)
    try:
        return AdmissionConfig(**value)
    except InputError as exc:
        raise exc.with_source(source) from None


def _as_tuple(
    value: Any, fname: str, source: str, kind: type | tuple[type, ...]
) -> tuple[Any, ...]:
    items = value if isinstance(value, list) else [value]
    for item in items:
        if (isinstance(item, bool) and kind is not bool) or not isinstance(item, kind):
            raise InputError(f"expected a list of {getattr(kind, '__name__', kind)}", field=fname,
                             value=value, source=source)
    return tuple(items)


def _knobs(value: Any, fname: str, source: str) -> Knobs:
    if not isinstance(value, dict):
        raise InputError("must be a table", field=fname, value=value, source=source)
    for k, v in value.items():
        if not isinstance(v, (int, float, str, bool)):
            raise InputError("must be a number, string or boolean", field=f"{fname}.{k}", value=v,
                             source=source)
    return tuple(sorted(value.items()))


def sweep_from_toml(text: str, source: str) -> SweepConfig:
    """Parse a sweep file (TOML); InputError names the file, field and value."""
    try:
        doc = tomllib.loads(text)
    except (ValueError, RecursionError) as exc:
        # TOMLDecodeError is a ValueError; so is an integer literal too long to convert, and
        # absurdly deep nesting exhausts the parser's recursion.
        raise InputError(f"not valid TOML: {' '.join(str(exc).split())}", field="(file)",
                         value=source, source=source) from None
    if not doc:
        # An empty file would silently run the built-in defaults.
        raise InputError("empty sweep file: set at least scenarios and experiments",
                         field="(file)", value=source, source=source)
    known = {"name", "scenarios", "experiments", "seeds", "load_factors", "profile", "engine",
             "policy_params", "description", "admission", "policy_samples"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise InputError(f"unknown keys; expected some of {sorted(known)}", field=unknown[0],
                         value=doc[unknown[0]], source=source)
    kw: dict[str, Any] = {}
    if "name" in doc:
        if not isinstance(doc["name"], str) or not _SWEEP_NAME_RE.match(doc["name"]):
            raise InputError("must be 1-64 letters, digits, '_', '-' or '.', starting with a "
                             "letter or digit (it names the output directory)", field="name",
                             value=doc["name"], source=source)
        kw["name"] = doc["name"]
    if "description" in doc and not isinstance(doc["description"], str):
        raise InputError("must be a string", field="description", value=doc["description"],
                         source=source)
    for fname, kind in (("scenarios", str), ("experiments", str), ("seeds", int),
                        ("load_factors", (int, float))):
        if fname in doc:
            kw[fname] = _as_tuple(doc[fname], fname, source, kind)
    if "profile" in doc:
        if not isinstance(doc["profile"], str):
            raise InputError("must be a string", field="profile", value=doc["profile"],
                             source=source)
        kw["profile"] = doc["profile"]
    if "engine" in doc:
        kw["engine"] = _knobs(doc["engine"], "engine", source)
    if "policy_params" in doc:
        pp = doc["policy_params"]
        if not isinstance(pp, dict):
            raise InputError("must be a table of tables", field="policy_params", value=pp,
                             source=source)
        kw["policy_params"] = tuple(sorted((k, _knobs(v, f"policy_params.{k}", source))
                                           for k, v in pp.items()))
    if "admission" in doc:
        kw["admission"] = admission_from_table(doc["admission"], source)
    if "policy_samples" in doc:
        kw["policy_samples"] = doc["policy_samples"]  # checked by SweepConfig
    try:
        config = SweepConfig(**kw, source=source)
        config.cells()  # experiment names are checked here, where the file can be named
    except InputError as exc:
        raise exc.with_source(source) from None
    return config


def bundled_sweeps() -> list[str]:
    """Names of the sweeps shipped with the package (``exfairs/data/sweeps``)."""
    from importlib import resources

    folder = resources.files("exfairs").joinpath("data", "sweeps")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_sweep(path_or_name: str | os.PathLike[str]) -> SweepConfig:
    """A sweep file by path, or a bundled sweep by name (``default``)."""
    from importlib import resources

    p = Path(path_or_name)
    if p.suffix == ".toml" or p.exists():
        data = read_input_bytes(p, field="sweep", what="sweep file")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"cannot read sweep file: {exc}", field="sweep",
                             value=str(p)) from None
        return sweep_from_toml(text, str(p))
    folder = resources.files("exfairs").joinpath("data", "sweeps")
    res = folder.joinpath(f"{path_or_name}.toml")
    if not res.is_file():
        raise InputError("no such sweep file or bundled sweep (bundled: "
                         f"{', '.join(bundled_sweeps())})",
                         field="sweep", value=str(path_or_name))
    return sweep_from_toml(res.read_text(encoding="utf-8"), f"<bundled sweep {path_or_name}>")
