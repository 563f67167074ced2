"""Test factories for scenarios and clients (keyword defaults; no files needed)."""

from __future__ import annotations

from typing import Any

from exfairs.scenario import (
    DEFAULT_OUTPUT,
    SHORT_PROMPT,
    ArrivalProcess,
    ClientSpec,
    LengthDist,
    PoissonArrivals,
    Scenario,
    SloSpec,
)


class LinearLatency:
    """A LatencyModel with known values: ttft = 0.001·p, tpot = 0.02, e2e = ttft + 0.02·(o − 1)."""

    def unloaded_ttft_s(self, prompt_tokens: int) -> float:
        return 0.001 * prompt_tokens

    def unloaded_e2e_s(self, prompt_tokens: int, output_tokens: int) -> float:
        return 0.001 * prompt_tokens + 0.02 * (output_tokens - 1)

    def unloaded_tpot_s(self, prompt_tokens: int, output_tokens: int) -> float:
        return 0.02 if output_tokens >= 2 else 0.0


def make_client(
    name: str = "c0",
    *,
    rate_per_min: float = 60.0,
    arrival: ArrivalProcess | None = None,
    prompt: LengthDist = SHORT_PROMPT,
    output: LengthDist = DEFAULT_OUTPUT,
    prompt_class: Any = "short",
    weight: float = 1.0,
    slo: SloSpec | None = None,
) -> ClientSpec:
    return ClientSpec(name=name, prompt_class=prompt_class, rate_per_min=rate_per_min,
                      arrival=arrival or PoissonArrivals(), prompt=prompt, output=output,
                      weight=weight, slo=slo or SloSpec())


def make_scenario(
    clients: tuple[ClientSpec, ...] | None = None,
    *,
    name: str = "test",
    duration_s: float = 100.0,
    warmup_s: float = 0.0,
    cooldown_s: float = 0.0,
    rate_basis: Any = "absolute",
) -> Scenario:
    return Scenario(name=name, description="", duration_s=duration_s, warmup_s=warmup_s,
                    cooldown_s=cooldown_s, rate_basis=rate_basis,
                    clients=clients if clients is not None else (make_client(),))
