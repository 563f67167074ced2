"""Profile files: versioned JSON holding a fitted step-cost model and its provenance (DESIGN §5).

Schema (version 1)::

    {
      "schema": "exfairs.profile", "schema_version": 1,
      "metadata": {"id", "hardware", "model", "engine", "engine_version", "dtype",
                   "tensor_parallel_size", "date", "source", "notes"},
      "engine": {"num_gpu_blocks", "block_size", "max_num_seqs", "max_num_batched_tokens",
                 "max_model_len"},
      "coefficients": {"fixed_ms", "decode_fixed_ms", "prefill_token_ms", "prefill_attn_ms",
                       "decode_seq_ms", "decode_ctx_ms", "floor_ms"},
      "fit": {"median_ape", "p90_ape", "n_train", "n_test"} | null,
      "measurements": [{"prefill_tokens", "prefill_attn", "decode_seqs", "decode_ctx",
                        "duration_ms"}, ...]
    }

`load_profile` accepts a path or the id of a bundled profile (``exfairs-sim list`` lists them).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from exfairs.atomic import atomic_writer
from exfairs.calibration.costmodel import CostCoefficients, CostModel
from exfairs.errors import ConfigError, InputError

SCHEMA = "exfairs.profile"
#: Largest number a profile field may hold: far above any real count or duration, it rejects
#: corrupted files before they reach float arithmetic.
MAX_PROFILE_NUMBER = 1e15
_TOP_LEVEL_KEYS = ("schema", "schema_version", "metadata", "engine", "coefficients", "fit",
                   "measurements")
SCHEMA_VERSION = 1
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


@dataclass(frozen=True, slots=True)
class EngineDefaults:
    """Engine knobs the profile was measured with (vLLM's names); the simulator's defaults."""

    num_gpu_blocks: int
    block_size: int = 16
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    max_model_len: int = 4096

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError("must be an integer ≥ 1", field=f"engine.{f.name}", value=v)

    @property
    def kv_capacity_tokens(self) -> int:
        """KV cache capacity in tokens."""
        return self.num_gpu_blocks * self.block_size


@dataclass(frozen=True, slots=True)
class FitError:
    """Held-out error of the fitted model: absolute percentage error over test steps."""

    median_ape: float
    p90_ape: float
    n_train: int
    n_test: int


@dataclass(frozen=True, slots=True)
class Measurement:
    """One measured (or derived) step: its features and duration in milliseconds."""

    prefill_tokens: int
    prefill_attn: float
    decode_seqs: int
    decode_ctx: int
    duration_ms: float


@dataclass(frozen=True, slots=True)
class Profile:
    """A calibration profile: metadata, engine knobs, fitted coefficients, fit error, samples."""

    metadata: ProfileMetadata
    engine: EngineDefaults
    coefficients: CostCoefficients
    fit: FitError | None = None
    measurements: tuple[Measurement, ...] = field(default=())

    @property
    def id(self) -> str:
        return self.metadata.id

    def cost_model(self, max_num_batched_tokens: int | None = None) -> CostModel:
        """The cost model, with the profile's token budget unless overridden."""
        return CostModel(self.coefficients,
                         max_num_batched_tokens or self.engine.max_num_batched_tokens)

    def to_json(self) -> dict[str, Any]:
        """The JSON document (schema above)."""
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "metadata": asdict(self.metadata),
            "engine": asdict(self.engine),
            "coefficients": asdict(self.coefficients),
            "fit": None if self.fit is None else asdict(self.fit),
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
    if isinstance(version, bool) or version != SCHEMA_VERSION:
        raise InputError(f"unsupported schema version (this ExFairS reads {SCHEMA_VERSION})",
                         field="schema_version", value=doc.get("schema_version"), source=source)
    # Every number of a profile is a count, a duration or an error rate: none is negative.
    meta = _section(doc, "metadata", ProfileMetadata, source, non_negative=True)
    if meta.tensor_parallel_size < 1:
        raise InputError("must be an integer ≥ 1", field="metadata.tensor_parallel_size",
                         value=meta.tensor_parallel_size, source=source)
    engine = _section(doc, "engine", EngineDefaults, source, non_negative=True)
    coeffs = _section(doc, "coefficients", CostCoefficients, source, non_negative=True)
    fit = _section(doc, "fit", FitError, source, required=False, non_negative=True)
    raw_meas = doc.get("measurements", [])
    if not isinstance(raw_meas, list):
        raise InputError("must be a list", field="measurements", value=type(raw_meas).__name__,
                         source=source)
    meas: list[Measurement] = []
    for i, m in enumerate(raw_meas):
        meas.append(_section({f"measurements[{i}]": m}, f"measurements[{i}]", Measurement, source,
                             non_negative=True))
    return Profile(meta, engine, coeffs, fit, tuple(meas))


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
