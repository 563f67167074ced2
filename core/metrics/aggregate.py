"""Aggregates over a set of counted requests (one client, or all): counts, throughputs,
`vllm bench serve` latency statistics and QoE summaries."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from exfairs.metrics.request import _OUTCOME_CODE, _PerRequest
from exfairs.metrics.timeline import flat_ranges
from exfairs.metrics.types import AggregateMetrics, FloatArray, _f
from exfairs.records import Outcome

#: The percentiles of `_stats`, as one array: one `np.percentile` call gives both.
_P90_P99 = np.asarray([90.0, 99.0])

#: Up to this many values `_stats` takes `_stats_finite` (one request's gaps, one client's
#: latencies): measured 8–200 µs there against NumPy's 115–520 µs; past some 10,000 values
#: the full sort and the list cost more than NumPy's two partitions (4 ms against 2.4 ms at
#: 65,536, 80 against 31 ms at 10⁶).
_SMALL = 4096


def _lone(v: FloatArray) -> float | None:
    """The single value of `v` when NumPy's mean, median and percentiles of it all return it
    unchanged and its std is 0.0 (one finite value that is not −0.0, which a percentile turns
    into 0.0); None otherwise. Lets a client with one request skip those calls (≈ 0.1 ms each),
    with the same results."""
    if v.size != 1:
        return None
    x = float(v[0])
    return x if math.isfinite(x) and (x != 0.0 or math.copysign(1.0, x) > 0) else None


def _stats(values_s: FloatArray, prefix: str) -> dict[str, float]:
    # vLLM's bench serve: np.mean/np.median/np.std (population)/np.percentile, reported in ms.
    v = values_s[~np.isnan(values_s)] * 1000.0
    if v.size == 0:
        return {f"{k}_{prefix}_ms": math.nan for k in ("mean", "median", "p90", "p99", "std")}
    if (x := _lone(v)) is not None:
        return {f"mean_{prefix}_ms": x, f"median_{prefix}_ms": x, f"p90_{prefix}_ms": x,
                f"p99_{prefix}_ms": x, f"std_{prefix}_ms": 0.0}
    if v.size <= _SMALL and math.isfinite(total := float(np.add.reduce(v))) and (
            fast := _stats_finite(v, total, prefix)) is not None:
        return fast
    # Both percentiles in one call (half the cost; each is computed as on its own: the order
    # statistics and the interpolation do not depend on the other quantile).
    p90, p99 = np.percentile(v, _P90_P99).tolist()
    return {
        f"mean_{prefix}_ms": _f(np.mean(v)),
        f"median_{prefix}_ms": _f(np.median(v)),
        f"p90_{prefix}_ms": _f(p90),
        f"p99_{prefix}_ms": _f(p99),
        f"std_{prefix}_ms": _f(np.std(v)),
    }


def _percentile_sorted(s: list[float], q: float) -> float:
    """NumPy's default ('linear') percentile of the sorted finite values `s` at fraction `q`
    (0.9 for p90), with NumPy's own arithmetic step by step (numpy/lib/_function_base_impl.py,
    `_quantile`, `_get_indexes`, `_get_gamma`, `_lerp`): virtual index (n − 1)·q, its floor and
    the next index (both the last element at or past the end), weight = index − floor, and the
    two-sided lerp, so the bits are the same."""
    n = len(s)
    vi = (n - 1) * q
    lo = -1 if vi >= n - 1 else math.floor(vi)
    a, b = s[lo], s[-1 if lo == -1 else lo + 1]
    g = vi - lo
    d = b - a
    return b - d * (1 - g) if g >= 0.5 else a + d * g


def _stats_finite(v: FloatArray, total: float, prefix: str) -> dict[str, float] | None:
    """`_stats` of ≥ 2 finite values `v` (ms) whose NumPy sum is `total`: the same arithmetic as
    np.mean/np.std (pairwise sums of `v` in its order, then of its squared deviations) and as
    np.median/np.percentile on one sorted copy, without their per-call Python overhead (≈ 0.1 ms
    per client with one request: the per-sender cost of `compute_metrics`). Bit-identical to the
    NumPy calls (hypothesis-checked in tests/core/test_metrics_fast_paths.py). None when `v`
    holds a −0.0: NumPy's partition and a sort may order ±0.0 differently, which shows in the
    sign of a zero median or percentile."""
    n = int(v.size)
    mean = total / n
    dev = v - mean
    dev *= dev
    std = math.sqrt(float(np.add.reduce(dev)) / n)
    srt = np.sort(v)
    if srt[0] <= 0.0 and np.signbit(srt[srt == 0.0]).any():
        return None
    s = srt.tolist()
    k = n // 2
    # np.median is np.mean of the middle one or two, and NumPy's sum starts from +0.0 (so a
    # middle −0.0 comes back as 0.0).
    median = 0.0 + s[k] if n % 2 else (0.0 + s[k - 1] + s[k]) / 2
    return {
        f"mean_{prefix}_ms": mean,
        f"median_{prefix}_ms": median,
        f"p90_{prefix}_ms": _percentile_sorted(s, 90 / 100),
        f"p99_{prefix}_ms": _percentile_sorted(s, 99 / 100),
        f"std_{prefix}_ms": std,
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

    counts = np.bincount(outcome, minlength=len(_OUTCOME_CODE)).tolist()

    def count(o: Outcome) -> int:
        return int(counts[_OUTCOME_CODE[o]])

    # The gaps of the completed records among `idx`, in record order (their slices of `itl_s`:
    # cost in the client's gaps, not in every record's).
    if done_idx.size == 1:
        k = int(done_idx[0])
        itl = pr.itl_s[pr.itl_start[k]:pr.itl_start[k + 1]]
    else:
        lo = pr.itl_start[done_idx]
        _, at = flat_ranges(lo, pr.itl_start[done_idx + 1] - lo)
        itl = pr.itl_s[at]
    qoe = pr.qoe[idx]
    one_qoe = _lone(qoe)
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
        mean_qoe=one_qoe if one_qoe is not None else _f(np.mean(qoe)) if n else math.nan,
        median_qoe=one_qoe if one_qoe is not None else _f(np.median(qoe)) if n else math.nan,
        p10_qoe=(one_qoe if one_qoe is not None else _f(np.percentile(qoe, 10)) if n
                 else math.nan),
        min_qoe=one_qoe if one_qoe is not None else _f(np.min(qoe)) if n else math.nan,
        **stats,
    )
