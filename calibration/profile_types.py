"""The types of a calibration profile (`exfairs.calibration.profile`, which documents the JSON
schema and re-exports these names): provenance, engine knobs, held-out fit error, measured
steps, step-duration residuals, and the profile that holds them, each with its JSON form.

Split from `exfairs.calibration.profile`, which keeps the bundled profiles, `load_profile` and
`save_profile`; reading and validating a document is `exfairs.calibration.profile_json`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from itertools import pairwise
from typing import Any

from exfairs.calibration.costmodel import DEFAULT_SAMPLING_MODE, CostCoefficients, CostModel
from exfairs.engine_knobs import EngineKnobs, check_count_knobs, check_knob_rules
from exfairs.errors import ConfigError

SCHEMA = "exfairs.profile"
SCHEMA_VERSION = 2


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
        """The JSON document (schema: `exfairs.calibration.profile`)."""
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
