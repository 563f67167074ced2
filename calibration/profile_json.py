"""Reading a profile document (schema: `exfairs.calibration.profile`): `profile_from_json`
validates every section of a parsed JSON document and builds the `Profile`; InputError names
the field and the file.

Split from `exfairs.calibration.profile`, which re-exports these names and reads the files.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

from exfairs.calibration.costmodel import COEFFICIENT_NAMES, SAMPLING_MODES, CostCoefficients
from exfairs.calibration.profile_types import (
    SCHEMA,
    EngineDefaults,
    FitError,
    Measurement,
    Profile,
    ProfileMetadata,
    Residuals,
)
from exfairs.errors import ConfigError, InputError

#: Largest number a profile field may hold: far above any real count or duration, it rejects
#: corrupted files before they reach float arithmetic.
MAX_PROFILE_NUMBER = 1e15
_TOP_LEVEL_KEYS = ("schema", "schema_version", "metadata", "engine", "coefficients", "fit",
                   "residuals", "measurements")
#: Versions `profile_from_json` reads.
READABLE_VERSIONS = (1, 2)


def _section(doc: dict[str, Any], name: str, cls: type, source: str, required: bool = True,
             non_negative: bool = False) -> Any:
    raw = doc.get(name)
    if raw is None and not required:
        return None
    if not isinstance(raw, dict):
        raise InputError("must be a JSON object", field=name, value=raw, source=source)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise InputError(f"unknown keys {unknown}; expected some of {sorted(names)}",
                         field=name, value=raw, source=source)
    for f in fields(cls):
        if f.name not in raw:
            continue
        v = raw[f.name]
        low = 0.0 if non_negative else -MAX_PROFILE_NUMBER
        if f.type in ("float", "int") and (isinstance(v, bool) or not isinstance(v, (int, float))
                                           or not low <= v <= MAX_PROFILE_NUMBER
                                           or not math.isfinite(v)):
            # Range before isfinite: math.isfinite raises OverflowError on a huge int.
            raise InputError(f"must be a finite number in [{low:g}, {MAX_PROFILE_NUMBER:g}]",
                             field=f"{name}.{f.name}", value=v, source=source)
        if f.type == "int" and isinstance(v, float):
            if not v.is_integer():
                raise InputError("must be an integer", field=f"{name}.{f.name}", value=v,
                                 source=source)
            raw = {**raw, f.name: int(v)}
        if f.type == "str" and not isinstance(v, str):
            raise InputError("must be a string", field=f"{name}.{f.name}", value=v, source=source)
    try:
        return cls(**raw)
    except ConfigError as exc:
        field_name = exc.field if (exc.field or "").startswith(name) else f"{name}.{exc.field}"
        raise InputError(exc.detail, field=field_name, value=exc.value, source=source) from None
    except TypeError as exc:
        raise InputError(f"missing or bad keys: {exc}", field=name, value=raw,
                         source=source) from None


def profile_from_json(doc: Any, source: str = "<profile>") -> Profile:
    """Validate and build a `Profile` from a parsed JSON document; InputError names the field."""
    if not isinstance(doc, dict):
        raise InputError("a profile must be a JSON object", field="(top level)",
                         value=type(doc).__name__,
                         source=source)
    if doc.get("schema") != SCHEMA:
        raise InputError(f"not an ExFairS profile (expected {SCHEMA!r})", field="schema",
                         value=doc.get("schema"), source=source)
    unknown = sorted(set(doc) - set(_TOP_LEVEL_KEYS))
    if unknown:
        raise InputError(f"unknown key; expected some of {list(_TOP_LEVEL_KEYS)}",
                         field=str(unknown[0]), value=doc[unknown[0]], source=source)
    version = doc.get("schema_version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise InputError("unsupported schema version (this ExFairS reads "
                         f"{', '.join(map(str, READABLE_VERSIONS))})",
                         field="schema_version", value=doc.get("schema_version"), source=source)
    # Every number of a profile is a count, a duration or an error rate: none is negative.
    meta = _section(doc, "metadata", ProfileMetadata, source, non_negative=True)
    if meta.tensor_parallel_size < 1:
        raise InputError("must be an integer ≥ 1", field="metadata.tensor_parallel_size",
                         value=meta.tensor_parallel_size, source=source)
    engine = _section(doc, "engine", EngineDefaults, source, non_negative=True)
    coeffs = _coefficients(doc, source, version)
    fit = _section(doc, "fit", FitError, source, required=False, non_negative=False)
    if fit is not None:
        for name in ("median_ape", "p90_ape", "n_train", "n_test"):
            if getattr(fit, name) < 0:
                raise InputError("must be ≥ 0", field=f"fit.{name}", value=getattr(fit, name),
                                 source=source)
    residuals = _residuals(doc, source)
    raw_meas = doc.get("measurements", [])
    if not isinstance(raw_meas, list):
        raise InputError("must be a list", field="measurements", value=type(raw_meas).__name__,
                         source=source)
    meas: list[Measurement] = []
    for i, m in enumerate(raw_meas):
        meas.append(_section({f"measurements[{i}]": m}, f"measurements[{i}]", Measurement, source,
                             non_negative=True))
        if meas[-1].sampling not in ("", *SAMPLING_MODES):
            raise InputError(f"sampling must be one of {SAMPLING_MODES} (or empty)",
                             field=f"measurements[{i}]", value=m, source=source)
    return Profile(meta, engine, coeffs, fit, tuple(meas), residuals)


_V1_COEFFICIENTS = (*COEFFICIENT_NAMES, "floor_ms")


def _number_list(raw: Any, name: str, source: str, integer: bool = False) -> list[Any]:
    if not isinstance(raw, list):
        raise InputError("must be a list of numbers", field=name, value=raw, source=source)
    for v in raw:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or abs(v) > MAX_PROFILE_NUMBER or (integer and float(v) != int(v)):
            raise InputError("must be a list of finite numbers" + (" (integers)" if integer
                                                                   else ""),
                             field=name, value=raw, source=source)
    return [int(v) for v in raw] if integer else [float(v) for v in raw]


def _coefficients(doc: dict[str, Any], source: str, version: int) -> CostCoefficients:
    """The coefficients section: schema 1's linear keys, plus schema 2's structured terms."""
    raw = doc.get("coefficients")
    if not isinstance(raw, dict):
        raise InputError("must be a JSON object", field="coefficients", value=raw, source=source)
    allowed = _V1_COEFFICIENTS if version == 1 else (
        *_V1_COEFFICIENTS, "decode_knots", "decode_knot_ms", "mixed_fixed_ms", "mixed_seq_ms",
        "sample_row_ms", "sampling_baseline")
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise InputError(f"unknown keys {unknown}; expected some of {sorted(allowed)}",
                         field="coefficients", value=raw, source=source)
    kw: dict[str, Any] = {}
    for name in _V1_COEFFICIENTS:
        if name in raw:
            v = raw[name]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or \
                    not 0 <= v <= MAX_PROFILE_NUMBER or not math.isfinite(v):
                raise InputError(f"must be a finite number in [0, {MAX_PROFILE_NUMBER:g}]",
                                 field=f"coefficients.{name}", value=v, source=source)
            kw[name] = float(v)
    if "decode_knots" in raw:
        kw["decode_knots"] = tuple(_number_list(raw["decode_knots"], "coefficients.decode_knots",
                                                source, integer=True))
    if "decode_knot_ms" in raw:
        kw["decode_knot_ms"] = tuple(_number_list(raw["decode_knot_ms"],
                                                  "coefficients.decode_knot_ms", source))
    for name in ("mixed_fixed_ms", "mixed_seq_ms"):
        if raw.get(name) is not None:
            kw[name] = _number_list([raw[name]], f"coefficients.{name}", source)[0]
    rows = raw.get("sample_row_ms", {})
    if not isinstance(rows, dict):
        raise InputError("must be an object mapping a sampling mode to ms per row",
                         field="coefficients.sample_row_ms", value=rows, source=source)
    kw["sample_row_ms"] = tuple(sorted(
        (str(k), _number_list([v], f"coefficients.sample_row_ms.{k}", source)[0])
        for k, v in rows.items()))
    if "sampling_baseline" in raw:
        kw["sampling_baseline"] = str(raw["sampling_baseline"])
    try:
        return CostCoefficients(**kw)
    except ConfigError as exc:
        raise InputError(exc.detail, field=f"coefficients.{exc.field}", value=exc.value,
                         source=source) from None
    except TypeError as exc:
        raise InputError(f"missing or bad keys: {exc}", field="coefficients", value=raw,
                         source=source) from None


def _residuals(doc: dict[str, Any], source: str) -> Residuals | None:
    raw = doc.get("residuals")
    if raw is None:
        return None
    keys = ("probabilities", "ratio_quantiles", "mean_ratio", "lag1_autocorr", "n_steps")
    if not isinstance(raw, dict) or sorted(raw) != sorted(keys):
        raise InputError(f"must be an object with keys {list(keys)}", field="residuals",
                         value=raw, source=source)
    try:
        return Residuals(
            probabilities=tuple(_number_list(raw["probabilities"], "residuals.probabilities",
                                             source)),
            ratio_quantiles=tuple(_number_list(raw["ratio_quantiles"],
                                               "residuals.ratio_quantiles", source)),
            mean_ratio=_number_list([raw["mean_ratio"]], "residuals.mean_ratio", source)[0],
            lag1_autocorr=_number_list([raw["lag1_autocorr"]], "residuals.lag1_autocorr",
                                       source)[0],
            n_steps=_number_list([raw["n_steps"]], "residuals.n_steps", source, True)[0])
    except ConfigError as exc:
        raise InputError(exc.detail, field=exc.field or "residuals", value=exc.value,
                         source=source) from None

