"""Aggregates over a set of counted requests (one client, or all): counts, throughputs,
`vllm bench serve` latency statistics and QoE summaries."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from exfairs.metrics.request import _OUTCOME_CODE, _PerRequest
from exfairs.metrics.types import AggregateMetrics, FloatArray, _f
from exfairs.records import Outcome


def _stats(values_s: FloatArray, prefix: str) -> dict[str, float]:
    # vLLM's bench serve: np.mean/np.median/np.std (population)/np.percentile, reported in ms.
    v = values_s[~np.isnan(values_s)] * 1000.0
    if v.size == 0:
        return {f"{k}_{prefix}_ms": math.nan for k in ("mean", "median", "p90", "p99", "std")}
    return {
        f"mean_{prefix}_ms": _f(np.mean(v)),
        f"median_{prefix}_ms": _f(np.median(v)),
        f"p90_{prefix}_ms": _f(np.percentile(v, 90)),
        f"p99_{prefix}_ms": _f(np.percentile(v, 99)),
        f"std_{prefix}_ms": _f(np.std(v)),
    }


def _aggregate(pr: _PerRequest, idx: npt.NDArray[np.int64], duration_s: float
               ) -> AggregateMetrics:
    """Aggregates over the counted records at positions `idx` (increasing) of `pr`."""
    n = int(idx.size)
    done = pr.completed[idx]
    done_idx = idx[done]
    met = int(np.count_nonzero(pr.slo_met[idx]))
    in_tok = int(pr.prompt_tokens[done_idx].sum())
    out_tok = int(pr.generated_tokens[done_idx].sum())
    n_done = int(done_idx.size)
    outcome = pr.outcome[idx]

    def rate(count: float) -> float:
        return _f(count / duration_s) if duration_s > 0 else math.nan

    def count(o: Outcome) -> int:
        return int(np.count_nonzero(outcome == _OUTCOME_CODE[o]))

    # The gaps of the completed records among `idx`, in record order.
    sel = np.zeros(pr.completed.size, dtype=bool)
    sel[done_idx] = True
    itl = pr.itl_s[sel[pr.itl_owner]]
    qoe = pr.qoe[idx]
    stats: dict[str, float] = {}
    stats.update(_stats(pr.ttft_s[idx], "ttft"))
    stats.update(_stats(pr.tpot_s[done_idx], "tpot"))
    stats.update(_stats(itl, "itl"))
    stats.update(_stats(pr.e2e_s[done_idx], "e2el"))
    stats.update(_stats(pr.queue_s[idx], "queue"))
    return AggregateMetrics(
        requests=n,
        completed=n_done,
        slo_met=met,
        violations=n - met,
        failed=count(Outcome.FAILED),
        timed_out=count(Outcome.TIMED_OUT),
        aborted=count(Outcome.ABORTED),
        rejected=count(Outcome.REJECTED),
        preemptions=int(pr.preemptions[idx].sum()),
        total_input_tokens=in_tok,
        total_output_tokens=out_tok,
        duration_s=_f(duration_s),
        request_throughput=rate(n_done),
        output_throughput=rate(out_tok),
        total_token_throughput=rate(in_tok + out_tok),
        request_goodput=rate(met),
        slo_attainment=_f(met / n) if n else math.nan,
        violation_rate=_f((n - met) / n) if n else math.nan,
        mean_qoe=_f(np.mean(qoe)) if n else math.nan,
        median_qoe=_f(np.median(qoe)) if n else math.nan,
        p10_qoe=_f(np.percentile(qoe, 10)) if n else math.nan,
        min_qoe=_f(np.min(qoe)) if n else math.nan,
        **stats,
    )
