"""Test factories for records and results (metrics, results, summary and plot tests)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from exfairs.metrics import compute_metrics
from exfairs.records import SLO, ClientInfo, Outcome, PolicySample, RequestRecord, slo_met
from exfairs.results import RunInfo, RunResult


def make_record(
    request_id: int = 0,
    client: str = "a",
    *,
    arrival_s: float = 0.0,
    prompt_tokens: int = 100,
    output_tokens: int = 4,
    ttft_s: float | None = 0.5,
    tpot_s: float = 0.1,
    gaps_s: Sequence[float] | None = None,
    generated: int | None = None,
    slo: SLO | None = None,
    outcome: Outcome | None = None,
    queue_s: float | None = 0.0,
    preemptions: int = 0,
) -> RequestRecord:
    """A record whose first token comes `ttft_s` after arrival and the others every `tpot_s`
    (or after the explicit `gaps_s`); `generated` tokens (default all). The outcome defaults to
    FINISHED/VIOLATED by the SLO for complete requests and ABORTED for partial ones."""
    slo = slo or SLO()
    n = output_tokens if generated is None else generated
    if ttft_s is None or n == 0:
        times: tuple[float, ...] = ()
    else:
        gaps = np.full(n - 1, tpot_s) if gaps_s is None else np.asarray(gaps_s, dtype=float)
        assert gaps.size == n - 1
        times = tuple(float(x) for x in arrival_s + ttft_s + np.concatenate([[0.0],
                                                                             np.cumsum(gaps)]))
    first = times[0] if times else None
    complete = n == output_tokens and bool(times)
    finish = times[-1] if complete else None
    if outcome is None:
        if complete:
            assert first is not None and finish is not None
            met = slo_met(slo, arrival_s, first, finish, n)
            outcome = Outcome.FINISHED if met else Outcome.VIOLATED
        else:
            outcome = Outcome.ABORTED
    return RequestRecord(
        request_id=request_id, client=client, arrival_s=arrival_s, prompt_tokens=prompt_tokens,
        output_tokens=output_tokens, slo=slo, outcome=outcome,
        dispatch_s=None if queue_s is None else arrival_s + queue_s,
        first_token_s=first, finish_s=finish, generated_tokens=len(times), token_times_s=times,
        preemptions=preemptions,
    )


def make_workload_records(seed: int = 0, clients: Sequence[str] = ("a", "b"), n: int = 40,
                          slow_client: str | None = "b") -> list[RequestRecord]:
    """A small synthetic run: `n` requests round-robin over `clients`, arrivals 0.5 s apart;
    `slow_client` gets larger TTFTs so that it misses its 3 s e2e SLO more often."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        c = clients[i % len(clients)]
        ttft = float(rng.uniform(0.1, 0.6)) + (float(rng.uniform(0.0, 3.0)) if c == slow_client
                                               else 0.0)
        out.append(make_record(i, c, arrival_s=0.5 * i, prompt_tokens=int(rng.integers(20, 200)),
                               output_tokens=8, ttft_s=ttft, tpot_s=float(rng.uniform(0.02, 0.1)),
                               slo=SLO(e2e_s=3.0), queue_s=float(rng.uniform(0, 0.1))))
    return out


def make_result(experiment: str = "VTC", seed: int = 0, *, records: Sequence[RequestRecord]
                | None = None, clients: Sequence[str] = ("a", "b"), load_factor: float = 1.0,
                scenario: str = "toy", samples: bool = True,
                window: tuple[float, float] | None = None) -> RunResult:
    """A RunResult with metrics computed from `records` (default `make_workload_records(seed)`)."""
    infos = tuple(ClientInfo(c) for c in clients)
    recs = tuple(records if records is not None else make_workload_records(seed, clients))
    policy = experiment.split("_", 1)[1] if experiment.startswith(("QUEUE_", "ENGINE_")) \
        else experiment
    mode = "gate" if experiment.startswith("QUEUE_") else (
        "engine" if experiment.startswith("ENGINE_") else "priority")
    ps = tuple(PolicySample(float(t), (("counter", tuple(float(t * (k + 1)) for k in
                                                          range(len(clients)))),))
               for t in range(0, 20, 2)) if samples else ()
    info = RunInfo(backend="sim", scenario=scenario, experiment=experiment, policy=policy,
                   mode=mode, seed=seed, load_factor=load_factor, profile_id="test-profile",
                   engine_knobs=(("max_num_seqs", 8), ("enable_chunked_prefill", True),
                                 ("gpu_util", 0.9), ("scheduling_policy", "priority")),
                   policy_params=(("alpha", 0.7),), package_version="0.1.0",
                   git_revision="", created_utc="2026-11-25T04:00:00+00:00", wall_time_s=1.25)
    return RunResult(info=info, clients=infos, records=recs,
                     metrics=compute_metrics(recs, infos, window=window), policy_samples=ps)
