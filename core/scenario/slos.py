"""A client's SLOs as a scenario gives them: absolute seconds or a scale of unloaded latency."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from exfairs.errors import ConfigError, InputError
from exfairs.records import SLO, LatencyModel
from exfairs.scenario.checks import MAX_SCALE, MAX_SECONDS, check_range


@dataclass(frozen=True, slots=True)
class SloTarget:
    """One SLO bound: absolute `seconds`, or `scale` × the request's unloaded latency."""

    seconds: float | None = None
    scale: float | None = None

    def __post_init__(self) -> None:
        if (self.seconds is None) == (self.scale is None):
            raise ConfigError("give exactly one of 'seconds' or 'scale'", field="(target)",
                              value={"seconds": self.seconds, "scale": self.scale})
        if self.seconds is not None:
            check_range("seconds", self.seconds, 0.0, MAX_SECONDS, low_open=True)
        if self.scale is not None:
            check_range("scale", self.scale, 0.0, MAX_SCALE, low_open=True)

    def resolve(self, unloaded_s: float) -> float:
        """The bound in seconds for a request whose unloaded latency is `unloaded_s`."""
        return float(self.seconds) if self.seconds is not None else float(self.scale) * unloaded_s  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class SloSpec:
    """A client's SLOs before resolution (None = not set): end-to-end, TTFT, TPOT."""

    e2e: SloTarget | None = None
    ttft: SloTarget | None = None
    tpot: SloTarget | None = None

    @property
    def needs_latency(self) -> bool:
        """True when some target is a scale factor (resolution needs a LatencyModel)."""
        return any(t is not None and t.scale is not None for t in (self.e2e, self.ttft, self.tpot))

    def resolve(self, prompt_tokens: int, output_tokens: int,
                latency: LatencyModel | None) -> SLO:
        """The request's SLO in seconds. Scale targets multiply the request's unloaded e2e,
        TTFT or TPOT under `latency` (required when any target is a scale)."""
        if self.needs_latency and latency is None:
            raise InputError("SLOs given as scale factors need a latency model (a profile)",
                             field="latency", value=None)

        def one(t: SloTarget | None, unloaded: Callable[[], float]) -> float | None:
            if t is None:
                return None
            return t.resolve(unloaded() if t.scale is not None else 0.0)

        lat = latency
        return SLO(
            e2e_s=one(self.e2e, lambda: lat.unloaded_e2e_s(prompt_tokens, output_tokens)),  # type: ignore[union-attr]
            ttft_s=one(self.ttft, lambda: lat.unloaded_ttft_s(prompt_tokens)),  # type: ignore[union-attr]
            tpot_s=one(self.tpot, lambda: lat.unloaded_tpot_s(prompt_tokens, output_tokens)),  # type: ignore[union-attr]
        )
