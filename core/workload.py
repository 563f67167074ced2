"""Drawing workloads from scenarios.

`draw_workload` draws every request up front (docs/design.md §6), so every policy, in the simulator
and on a live engine, sees identical requests. Each client draws from its own named streams,
``stream(seed, "client", name, "arrivals" | "prompt" | "output")``, so adding, removing or
reordering clients never changes another client's requests.

Scenarios with ``rate_basis = "capacity"`` are drawn at a load factor times an engine capacity the
caller passes in (`exfairs.calibration.capacity.estimate_capacity_rps` computes it from a profile's
cost model; the core does not depend on the cost model).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from exfairs.datasets import client_pools, draw_rows
from exfairs.errors import InputError
from exfairs.records import LatencyModel, Request, Workload
from exfairs.rng import stream
from exfairs.scenario import MAX_LOAD_FACTOR, Scenario, SloSpec

_log = logging.getLogger(__name__)

#: A drawn workload larger than this is refused (a guard against a typo in a rate or duration).
MAX_REQUESTS = 5_000_000


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
    prompt_texts: Sequence[str] | None = None,
) -> tuple[Request, ...]:
    """Requests from parallel arrays (one entry per request), sorted by arrival, ties by client
    index then input order; ids 0, 1, … in that order. SLOs are resolved to seconds with
    `latency` (needed for scale targets); `unloaded_e2e_s` is filled when `latency` is given.
    `prompt_texts` (one per request) become `Request.prompt_text`."""
    if max_model_len is not None:
        before = prompt_tokens
        prompt_tokens, output_tokens = clamp_lengths(prompt_tokens, output_tokens, max_model_len)
        clamped = int(np.count_nonzero(before != prompt_tokens))
        if clamped and prompt_texts is not None:
            # Text cannot be cut to a token count without the server's tokenizer: the
            # simulator serves the shortened length, a live server gets the whole text.
            _log.warning("%d text prompts are longer than max_model_len=%d allows with their "
                         "outputs; a live server may refuse them", clamped, max_model_len)
        elif clamped:
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
            prompt_text=prompt_texts[k] if prompt_texts is not None else None,
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
    "arrivals" | "prompt" | "output")``; with a dataset, its rows come from ``stream(seed,
    "client", c.name, "dataset")`` (`exfairs.datasets.draw_rows`) and carry their text and
    lengths (outputs from the client's distribution when the dataset's ``output = "client"``).
    Rates follow `client_rates_rps` (`capacity_rps` is
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
    texts: list[str] | None = None
    pools = None
    if scenario.dataset is not None:
        texts = []
        pools = client_pools(scenario.dataset.dataset, [c.name for c in scenario.clients])
    for i, (client, rate) in enumerate(zip(scenario.clients, rates, strict=True)):
        times = client.arrival.times(stream(seed, "client", client.name, "arrivals"), rate,
                                     scenario.duration_s)
        n = times.shape[0]
        idx.append(np.full(n, i, dtype=np.int64))
        arr.append(times)
        if scenario.dataset is not None and pools is not None and texts is not None:
            data = scenario.dataset.dataset
            rows = draw_rows(pools[i], stream(seed, "client", client.name, "dataset"), n)
            texts.extend(data.prompts[int(r)] for r in rows)
            prm.append(data.prompt_tokens[rows])
            if scenario.dataset.output == "dataset" and data.output_tokens is not None:
                out.append(data.output_tokens[rows])
                continue
        else:
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
        prompt_texts=texts,
    )
    return Workload(name=scenario.name, seed=seed, clients=scenario.client_infos(),
                    requests=requests, duration_s=float(scenario.duration_s))


def measure_window(scenario: Scenario, workload: Workload) -> tuple[float, float]:
    """The arrivals metrics count, seconds: [warmup_s, duration − cooldown_s] of the scenario,
    where duration is the workload's arrival horizon."""
    return (float(scenario.warmup_s), float(workload.duration_s - scenario.cooldown_s))
