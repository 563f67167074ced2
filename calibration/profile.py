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

The types live in `exfairs.calibration.profile_types` and reading a parsed document in
`exfairs.calibration.profile_json`; this module re-exports their names.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

from exfairs.atomic import atomic_writer
from exfairs.calibration.profile_json import (
    MAX_PROFILE_NUMBER,
    READABLE_VERSIONS,
    profile_from_json,
)
from exfairs.calibration.profile_types import (
    SCHEMA,
    SCHEMA_VERSION,
    EngineDefaults,
    FitError,
    Measurement,
    Profile,
    ProfileMetadata,
    Residuals,
)
from exfairs.errors import InputError

# Re-exported: the types moved to `profile_types` and reading a document to `profile_json`;
# callers import the names here.
__all__ = [
    "DEFAULT_PROFILE_ID",
    "MAX_PROFILE_NUMBER",
    "READABLE_VERSIONS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "EngineDefaults",
    "FitError",
    "Measurement",
    "Profile",
    "ProfileMetadata",
    "Residuals",
    "bundled_profile_ids",
    "load_profile",
    "profile_from_json",
    "save_profile",
]

DEFAULT_PROFILE_ID = "a100-llama2-7b"


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
