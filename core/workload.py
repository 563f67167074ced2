"""Drawing workloads from scenarios, and the engine capacity a scenario's request mix implies.

`draw_workload` draws every request up front (docs/design.md §6), so every policy, in the simulator
and on a live engine, sees identical requests. Each client draws from its own named streams,
``stream(seed, "client", name, "arrivals" | "prompt" | "output")``, so adding, removing or
reordering clients never changes another client's requests.

`estimate_capacity_rps` is the analytic request rate an engine sustains for a scenario's request
mix; scenarios with ``rate_basis = "capacity"`` are drawn at a load factor times it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from exfairs.calibration.costmodel import CostModel
from exfairs.errors import InputError
from exfairs.records import LatencyModel, Request, Workload
from exfairs.rng import stream
from exfairs.scenario import MAX_LOAD_FACTOR, Scenario, SloSpec

_log = logging.getLogger(__name__)

#: A drawn workload larger than this is refused (a guard against a typo in a rate or duration).
MAX_REQUESTS = 5_000_000


class EngineLimits(Protocol):
    """The engine knobs the capacity estimate needs (vLLM's names). `EngineDefaults` of a profile
    and the simulator's `EngineConfig` both have them."""

    @property
    def num_gpu_blocks(self) -> int: ...
    @property
    def block_size(self) -> int: ...
    @property
    def max_num_seqs(self) -> int: ...
    @property
    def max_num_batched_tokens(self) -> int: ...
    @property
    def max_model_len(self) -> int: ...


# -- lengths ----------------------------------------------------------------------------------


def clamp_lengths(prompt_tokens: np.ndarray, output_tokens: np.ndarray,
                  max_model_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Fit each request into a context of `max_model_len` tokens: outputs are cut to
    max_model_len − 1, then prompts to max_model_len − output (vLLM rejects prompt + max_tokens
    beyond the model length; truncating the prompt keeps the output, which sets the served work)."""
    if max_model_len < 2:
        raise InputError("must be ≥ 2", field="max_model_len", value=max_model_len)
    out = np.minimum(output_tokens, max_model_len - 1)
    prompt = np.minimum(prompt_tokens, max_model_len - out)
    return prompt, out


def build_requests(
    *,
    client_names: Sequence[str],
    client_index: np.ndarray,
    arrivals_s: np.ndarray,
    prompt_tokens: np.ndarray,
    output_tokens: np.ndarray,
    slo_specs: Sequence[SloSpec | None],
    latency: LatencyModel | None,
    max_model_len: int | None = None,
) -> tuple[Request, ...]:
    """Requests from parallel arrays (one entry per request), sorted by arrival, ties by client
    index then input order; ids 0, 1, … in that order. SLOs are resolved to seconds with
    `latency` (needed for scale targets); `unloaded_e2e_s` is filled when `latency` is given."""
    if max_model_len is not None:
        before = prompt_tokens
        prompt_tokens, output_tokens = clamp_lengths(prompt_tokens, output_tokens, max_model_len)
        clamped = int(np.count_nonzero(before != prompt_tokens))
        if clamped:
            _log.info("%d prompts shortened to fit max_model_len=%d", clamped, max_model_len)
    n = arrivals_s.shape[0]
    order = np.lexsort((np.arange(n), client_index, arrivals_s))
    out: list[Request] = []
    for rid, k in enumerate(order):
        ci = int(client_index[k])
        p, o = int(prompt_tokens[k]), int(output_tokens[k])
        spec = slo_specs[ci]
        slo = spec.resolve(p, o, latency) if spec is not None else SloSpec().resolve(p, o, None)
        out.append(Request(
            request_id=rid, client=client_names[ci], arrival_s=float(arrivals_s[k]),
            prompt_tokens=p, output_tokens=o, slo=slo,
            unloaded_e2e_s=latency.unloaded_e2e_s(p, o) if latency is not None else 0.0,
        ))
    return tuple(out)


# -- rates ------------------------------------------------------------------------------------


def _check_load(load_factor: float) -> None:
    if (isinstance(load_factor, bool) or not isinstance(load_factor, (int, float))
            or not math.isfinite(load_factor) or not 0 < load_factor <= MAX_LOAD_FACTOR):
        raise InputError(f"must be a number in (0, {MAX_LOAD_FACTOR:g}]", field="load_factor",
                         value=load_factor)


def client_rates_rps(scenario: Scenario, *, load_factor: float = 1.0,
                     capacity_rps: float | None = None) -> tuple[float, ...]:
    """Each client's arrival rate in requests per second, in scenario order.

    Absolute basis: rate_per_min / 60 × `load_factor`. Capacity basis: `load_factor` ×
    `capacity_rps` split in proportion to the clients' rate_per_min (`capacity_rps` required).
    """
    _check_load(load_factor)
    if scenario.rate_basis == "absolute":
        return tuple(c.rate_per_min / 60.0 * load_factor for c in scenario.clients)
    if capacity_rps is None:
        raise InputError(f"scenario {scenario.name!r} has rate_basis = 'capacity': give the "
                         "engine capacity (estimate_capacity_rps)", field="capacity_rps",
                         value=None)
    if (isinstance(capacity_rps, bool) or not isinstance(capacity_rps, (int, float))
            or not math.isfinite(capacity_rps) or capacity_rps <= 0):
        raise InputError("must be a finite number > 0", field="capacity_rps", value=capacity_rps)
    total = scenario.total_rate_per_min
    return tuple(load_factor * capacity_rps * c.rate_per_min / total for c in scenario.clients)


# -- drawing ----------------------------------------------------------------------------------


def draw_workload(
    scenario: Scenario,
    seed: int,
    latency: LatencyModel,
    *,
    load_factor: float = 1.0,
    capacity_rps: float | None = None,
    max_model_len: int | None = None,
) -> Workload:
    """Draw the scenario's whole workload for `seed`.

    Client c's arrivals, prompt and output lengths come from ``stream(seed, "client", c.name,
    "arrivals" | "prompt" | "output")``. Rates follow `client_rates_rps` (`capacity_rps` is
    required when the scenario's rate_basis is "capacity"). Request ids follow (arrival, client
    order). SLOs are resolved to seconds with `latency` (the profile's cost model), which also
    fills `Request.unloaded_e2e_s`. `max_model_len`, when given, shortens prompts so that prompt +
    output fits (`clamp_lengths`); pass the engine's value when the scenario's lengths may exceed
    it.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError("must be a non-negative integer", field="seed", value=seed)
    rates = client_rates_rps(scenario, load_factor=load_factor, capacity_rps=capacity_rps)
    expected = sum(rates) * scenario.duration_s
    if expected > MAX_REQUESTS:
        raise InputError(f"the workload would have about {expected:.3g} requests (limit "
                         f"{MAX_REQUESTS:,}); lower the rates, load factor or duration_s",
                         field="duration_s", value=scenario.duration_s)
    idx, arr, prm, out = [], [], [], []
    for i, (client, rate) in enumerate(zip(scenario.clients, rates, strict=True)):
        times = client.arrival.times(stream(seed, "client", client.name, "arrivals"), rate,
                                     scenario.duration_s)
        n = times.shape[0]
        idx.append(np.full(n, i, dtype=np.int64))
        arr.append(times)
        prm.append(client.prompt.sample(stream(seed, "client", client.name, "prompt"), n))
        out.append(client.output.sample(stream(seed, "client", client.name, "output"), n))
    requests = build_requests(
        client_names=[c.name for c in scenario.clients],
        client_index=np.concatenate(idx),
        arrivals_s=np.concatenate(arr),
        prompt_tokens=np.concatenate(prm),
        output_tokens=np.concatenate(out),
        slo_specs=[c.slo for c in scenario.clients],
        latency=latency,
        max_model_len=max_model_len,
    )
    return Workload(name=scenario.name, seed=seed, clients=scenario.client_infos(),
                    requests=requests, duration_s=float(scenario.duration_s))


def measure_window(scenario: Scenario, workload: Workload) -> tuple[float, float]:
    """The arrivals metrics count, seconds: [warmup_s, duration − cooldown_s] of the scenario,
    where duration is the workload's arrival horizon."""
    return (float(scenario.warmup_s), float(workload.duration_s - scenario.cooldown_s))


# -- capacity ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CapacityEstimate:
    """The saturated operating point behind `estimate_capacity_rps`.

    `batch` is the saturated decode batch B*, `mean_context_tokens` the decode-token-weighted mean
    context per running sequence, `decode_step_ms` the step time of that batch, `prefill_ms` and
    `decode_ms` a mean request's engine time spent on its prefill and its decode tokens; `rps`
    = 1000 / (prefill_ms + decode_ms). `kv_limited` tells whether KV capacity (not max_num_seqs)
    bounds the batch.
    """

    rps: float
    batch: float
    mean_context_tokens: float
    decode_step_ms: float
    prefill_ms: float
    decode_ms: float
    mean_prompt_tokens: float
    mean_output_tokens: float
    kv_limited: bool


def _prefill_ms(cost: CostModel, prompts: np.ndarray, chunk: int) -> np.ndarray:
    # Marginal cost of computing each prompt in chunks of `chunk` tokens riding along decode
    # steps: the step's fixed costs are already paid by the decode batch.
    c = cost.coefficients
    full, rest = np.divmod(prompts, chunk)
    # Σ over chunks of n·(done + n): full chunks k = 1..full contribute chunk·(k·chunk), the
    # remainder rest·(full·chunk + rest).
    attn = chunk * chunk * full * (full + 1) / 2.0 + rest * (full * chunk + rest)
    return np.asarray(c.prefill_token_ms * prompts + c.prefill_attn_ms * attn, dtype=np.float64)


def capacity_estimate(scenario: Scenario, cost_model: CostModel,
                      engine: EngineLimits, *, grid: int = 120) -> CapacityEstimate:
    """The analytic saturated operating point of `engine` under the scenario's request mix.

    Model (a fluid approximation of a saturated vLLM engine with chunked prefill):
    - the request mix is the clients' length distributions weighted by their rate shares, with
      prompts clamped to fit `max_model_len` as `clamp_lengths` does;
    - a request decodes output − 1 tokens (its first token comes with the prefill); while
      decoding it holds context p + k for k = 1 … o − 1, so the decode-token-weighted mean
      context per sequence is m = E[(o − 1)(p + o/2)] / E[o − 1], plus half a KV block;
    - the saturated decode batch is B* = min(max_num_seqs, max_num_batched_tokens, KV tokens /
      (m + block_size/2)), at least 1;
    - a request's engine time = its prefill's marginal cost (prefill token and attention terms,
      chunks of max_num_batched_tokens − B*) + (o − 1) × decode_step(B*, B*·m) / B*.
      Capacity = 1 / E[engine time].
    Expectations use `grid` quantile points of each length distribution. The estimate ignores
    preemption and scheduling gaps, so it is an upper bound a real engine approaches at
    saturation. It grows with KV capacity and max_num_seqs and falls with longer requests.
    """
    budget = int(engine.max_num_batched_tokens)
    mml = int(engine.max_model_len)
    total = scenario.total_rate_per_min
    e_dec = e_ctx = e_p = e_o = 0.0
    per_client: list[tuple[float, np.ndarray, np.ndarray, np.ndarray]] = []
    for c in scenario.clients:
        share = c.rate_per_min / total
        pv, pw = c.prompt.support(grid)
        ov, ow = c.output.support(grid)
        o = np.minimum(ov, mml - 1)[None, :]
        p = np.minimum(pv[:, None], mml - o)
        w = pw[:, None] * ow[None, :]
        w = w / w.sum()
        dec = o - 1.0
        e_dec += share * float((w * dec).sum())
        e_ctx += share * float((w * dec * (p + o / 2.0)).sum())
        e_p += share * float((w * p).sum())
        e_o += share * float((w * o).sum())
        per_client.append((share, w, p, dec))
    mean_ctx = e_ctx / e_dec if e_dec > 0 else e_p
    kv_batch = engine.num_gpu_blocks * engine.block_size / (mean_ctx + engine.block_size / 2.0)
    batch = max(1.0, min(float(engine.max_num_seqs), float(budget), math.floor(kv_batch)))
    kv_limited = math.floor(kv_batch) < min(engine.max_num_seqs, budget)
    step_ms = cost_model.step_ms(0, 0, batch, batch * mean_ctx)
    chunk = max(1, budget - int(batch))
    prefill = 0.0
    for share, w, p, _ in per_client:
        pf = _prefill_ms(cost_model, np.rint(p), chunk)
        if e_dec <= 0:  # no decode steps to carry the fixed step cost: prefill-only steps pay it
            pf = pf + cost_model.coefficients.fixed_ms * p / budget
        prefill += share * float((w * pf).sum())
    decode = e_dec * step_ms / batch
    return CapacityEstimate(rps=1000.0 / (prefill + decode), batch=batch,
                            mean_context_tokens=mean_ctx, decode_step_ms=step_ms,
                            prefill_ms=prefill, decode_ms=decode, mean_prompt_tokens=e_p,
                            mean_output_tokens=e_o, kv_limited=kv_limited)


def estimate_capacity_rps(scenario: Scenario, cost_model: CostModel,
                          engine: EngineLimits) -> float:
    """Requests per second `engine` (with `cost_model`'s step costs) sustains for the scenario's
    request mix at saturation; see `capacity_estimate` for the model and its assumptions."""
    return capacity_estimate(scenario, cost_model, engine).rps
