"""Profile files: versioned JSON holding a fitted step-cost model and its provenance (DESIGN §5).

Schema (version 2; version 1 files still load: they lack the keys marked *v2*)::

    {
      "schema": "exfairs.profile", "schema_version": 2,
      "metadata": {"id", "hardware", "model", "engine", "engine_version", "dtype",
                   "tensor_parallel_size", "date", "source", "notes"},
      "engine": {"num_gpu_blocks", "block_size", "max_num_seqs", "max_num_batched_tokens",
                 "max_model_len", optional: "submit_latency_s" (seconds, measured live),
                 "enable_chunked_prefill", "long_prefill_token_threshold",
                 "scheduling_policy" (`exfairs.engine_knobs.EngineKnobs`; absent = default)},
      "coefficients": {"fixed_ms", "decode_fixed_ms", "prefill_token_ms", "prefill_attn_ms",
                       "decode_seq_ms", "decode_ctx_ms", "floor_ms",
                       v2: "decode_knots": [int], "decode_knot_ms": [float],
                       "mixed_fixed_ms": float | null, "mixed_seq_ms": float | null,
                       "sample_row_ms": {mode: float}, "sampling_baseline": mode},
      "fit": {"median_ape", "p90_ape", "n_train", "n_test",
              v2: "mean_bias_pct", "method"} | null,
      "residuals": v2, {"probabilities": [float], "ratio_quantiles": [float], "mean_ratio",
                        "lag1_autocorr", "n_steps"} | null,
      "measurements": [{"prefill_tokens", "prefill_attn", "decode_seqs", "decode_ctx",
                        "duration_ms", v2: "rows", "sampling"}, ...]
    }

`residuals` describe step / predicted duration ratios of the steps the profile was fitted on
(the simulator's optional step noise draws from them, `exfairs.sim.costs`).

`load_profile` accepts a path or the id of a bundled profile (``exfairs-sim list`` lists them).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Any

from exfairs.atomic import atomic_writer
from exfairs.calibration.costmodel import (
    COEFFICIENT_NAMES,
    DEFAULT_SAMPLING_MODE,
    SAMPLING_MODES,
    CostCoefficients,
    CostModel,
)
from exfairs.engine_knobs import EngineKnobs, check_count_knobs, check_knob_rules
from exfairs.errors import ConfigError, InputError

SCHEMA = "exfairs.profile"
#: Largest number a profile field may hold: far above any real count or duration, it rejects
#: corrupted files before they reach float arithmetic.
MAX_PROFILE_NUMBER = 1e15
_TOP_LEVEL_KEYS = ("schema", "schema_version", "metadata", "engine", "coefficients", "fit",
                   "residuals", "measurements")
SCHEMA_VERSION = 2
#: Versions `profile_from_json` reads.
READABLE_VERSIONS = (1, 2)
DEFAULT_PROFILE_ID = "a100-llama2-7b"


@dataclass(frozen=True, slots=True)
class ProfileMetadata:
    """Where a profile's numbers come from."""

    id: str
    hardware: str
    model: str
    engine: str = "vllm"
    engine_version: str = ""
    dtype: str = "float16"
    tensor_parallel_size: int = 1
    date: str = ""
    source: str = ""
    notes: str = ""


#: The ``engine`` keys every profile writes, in the order it writes them.
_ENGINE_KEYS = ("num_gpu_blocks", "block_size", "max_num_seqs", "max_num_batched_tokens",
                "max_model_len")
#: The other shared knobs a profile may hold; written only where they differ from the default,
#: so profiles measured with vLLM's defaults keep their bytes (and cache keys).
_ENGINE_OPTIONAL_KEYS = ("enable_chunked_prefill", "long_prefill_token_threshold",
                         "scheduling_policy")


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineDefaults(EngineKnobs):
    """Engine knobs the profile was measured with (`exfairs.engine_knobs.EngineKnobs`, vLLM's
    names; a file gives at least `num_gpu_blocks`); the simulator's defaults.

    `submit_latency_s` (optional, seconds; None = not measured) is not a vLLM knob but a
    property of the machine's front end → engine-core path: how long after a request is sent
    the engine core can schedule it (`exfairs.sim.config.EngineConfig.submit_latency_s`).
    Profiles fitted from live runs on this machine record it as measured there; the simulator
    uses 0 for a profile without it. Keyword arguments only. ConfigError names the field as
    ``engine.<knob>``.
    """

    num_gpu_blocks: int
    block_size: int = 16
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    max_model_len: int = 4096
    submit_latency_s: float | None = None

    def __post_init__(self) -> None:
        try:
            check_count_knobs(self)
            check_knob_rules(self)
        except ConfigError as exc:
            raise ConfigError(exc.detail, field=f"engine.{exc.field}", value=exc.value) from None
        lat = self.submit_latency_s
        # The same range as EngineConfig.submit_latency_s, which it becomes (the comparison
        # also refuses NaN and ±inf, without math.isfinite's OverflowError on a huge int).
        if lat is not None and (isinstance(lat, bool) or not isinstance(lat, (int, float))
                                or not 0.0 <= lat <= 60.0):
            raise ConfigError("must be a number of seconds in [0, 60] (or absent)",
                              field="engine.submit_latency_s", value=lat)

    def to_json(self) -> dict[str, Any]:
        """The ``engine`` object: the five counts, the other shared knobs where they differ
        from their defaults, `submit_latency_s` where measured (so older profiles keep their
        bytes and cache keys)."""
        out: dict[str, Any] = {k: getattr(self, k) for k in _ENGINE_KEYS}
        defaults = {f.name: f.default for f in fields(EngineKnobs)}
        for k in _ENGINE_OPTIONAL_KEYS:
            if getattr(self, k) != defaults[k]:
                out[k] = getattr(self, k)
        if self.submit_latency_s is not None:
            out["submit_latency_s"] = self.submit_latency_s
        return out


@dataclass(frozen=True, slots=True)
class FitError:
    """Held-out error of the fitted model: absolute percentage error over test steps.

    `mean_bias_pct`: Σ predicted / Σ measured − 1 over the test steps, in % (how far the total
    busy time is off); `method` says how steps were held out (folds of compositions, or whole
    runs)."""

    median_ape: float
    p90_ape: float
    n_train: int
    n_test: int
    mean_bias_pct: float = 0.0
    method: str = ""


@dataclass(frozen=True, slots=True)
class Measurement:
    """One measured (or derived) step: its features and duration in milliseconds; `rows` the
    sampled rows (0: unknown) and `sampling` the batch's sampling mode ("": unknown)."""

    prefill_tokens: int
    prefill_attn: float
    decode_seqs: int
    decode_ctx: int
    duration_ms: float
    rows: int = 0
    sampling: str = ""


@dataclass(frozen=True, slots=True)
class Residuals:
    """Distribution of measured / predicted step durations over the fitted steps:
    `ratio_quantiles[i]` is the quantile at `probabilities[i]`; `lag1_autocorr` the lag-1
    autocorrelation of the ratio in step order (within each run)."""

    probabilities: tuple[float, ...]
    ratio_quantiles: tuple[float, ...]
    mean_ratio: float
    lag1_autocorr: float
    n_steps: int

    def __post_init__(self) -> None:
        p, q = self.probabilities, self.ratio_quantiles
        if len(p) < 2 or len(p) != len(q):
            raise ConfigError("need ≥ 2 probabilities and as many quantiles",
                              field="residuals.ratio_quantiles", value=len(q))
        if p[0] != 0.0 or p[-1] != 1.0 or any(b <= a for a, b in pairwise(p)):
            raise ConfigError("must rise strictly from 0 to 1", field="residuals.probabilities",
                              value=list(p))
        if any(not (math.isfinite(x) and x > 0) for x in q) or \
                any(b < a for a, b in pairwise(q)):
            raise ConfigError("must be finite, > 0 and non-decreasing",
                              field="residuals.ratio_quantiles", value=list(q))
        if not -1.0 <= self.lag1_autocorr <= 1.0:
            raise ConfigError("must be in [-1, 1]", field="residuals.lag1_autocorr",
                              value=self.lag1_autocorr)

    def to_json(self) -> dict[str, Any]:
        return {"probabilities": list(self.probabilities),
                "ratio_quantiles": list(self.ratio_quantiles), "mean_ratio": self.mean_ratio,
                "lag1_autocorr": self.lag1_autocorr, "n_steps": self.n_steps}


@dataclass(frozen=True, slots=True)
class Profile:
    """A calibration profile: metadata, engine knobs, fitted coefficients, fit error, samples."""

    metadata: ProfileMetadata
    engine: EngineDefaults
    coefficients: CostCoefficients
    fit: FitError | None = None
    measurements: tuple[Measurement, ...] = field(default=())
    residuals: Residuals | None = None

    @property
    def id(self) -> str:
        return self.metadata.id

    def cost_model(self, max_num_batched_tokens: int | None = None,
                   sampling_mode: str = DEFAULT_SAMPLING_MODE) -> CostModel:
        """The cost model, with the profile's token budget unless overridden, for steps that
        sample in `sampling_mode` (costmodel.sampling_mode)."""
        return CostModel(self.coefficients,
                         max_num_batched_tokens or self.engine.max_num_batched_tokens,
                         sampling_mode)

    def to_json(self) -> dict[str, Any]:
        """The JSON document (schema above)."""
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "metadata": asdict(self.metadata),
            "engine": self.engine.to_json(),
            "coefficients": self.coefficients.to_json(),
            "fit": None if self.fit is None else asdict(self.fit),
            "residuals": None if self.residuals is None else self.residuals.to_json(),
            "measurements": [asdict(m) for m in self.measurements],
        }


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


def bundled_profile_ids() -> list[str]:
    """Ids of the profiles shipped with the package."""
    root = resources.files("exfairs.calibration").joinpath("profiles")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".json"))


def load_profile(path_or_id: str | os.PathLike[str]) -> Profile:
    """Load a profile file, or a bundled profile by id. InputError on anything malformed."""
    text: str
    source = str(path_or_id)
    p = Path(path_or_id)
    if p.suffix == ".json" or p.exists():
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError("no such profile file", field="profile", value=source) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read profile: {exc}", field="profile", value=source) from None
    else:
        if source not in bundled_profile_ids():
            raise InputError(
                "no such profile file or bundled profile; bundled: "
                + ", ".join(bundled_profile_ids()),
                field="profile", value=source)
        res = resources.files("exfairs.calibration").joinpath("profiles", f"{source}.json")
        text = res.read_text(encoding="utf-8")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        # JSONDecodeError is a ValueError; so is an integer literal too long to convert.
        raise InputError(f"not valid JSON: {exc}", field="(file)", value=source,
                         source=source) from None
    return profile_from_json(doc, source)


def save_profile(profile: Profile, path: str | os.PathLike[str]) -> None:
    """Write `profile` atomically (temp file in the same folder, then rename)."""
    with atomic_writer(path) as fh:
        json.dump(profile.to_json(), fh, indent=1)
        fh.write("\n")
