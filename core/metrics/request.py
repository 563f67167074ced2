"""Per-request metrics: Andes QoE, the SLO verdict, latencies and VTC service of one record,
and the same for all counted records at once as arrays (`_per_request`, what the aggregates
index)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np
import numpy.typing as npt

from exfairs.metrics.types import (
    DEFAULT_QOE,
    DEFAULT_SERVICE_WEIGHTS,
    BoolArray,
    FloatArray,
    QoEParams,
    RequestMetrics,
    ServiceWeights,
    _f,
)
from exfairs.records import Outcome, RequestRecord, slo_met

# The name the metrics logged under before they were split into modules.
_log = logging.getLogger("exfairs.metrics")


def request_qoe(record: RequestRecord, params: QoEParams = DEFAULT_QOE) -> float:
    """Andes-style QoE of one request, in [0, 1].

    Expected timeline: token i (0-based) is expected at ``e_i = arrival + T + i/r``, where T is the
    request's TTFT SLO (else `params.expected_ttft_s`) and r the reading speed. Tokens delivered
    early are buffered: the user digests token i at ``d_i = max(a_i, d_{i−1} + 1/r)`` (a_i its
    emission time), so the lag ``δ_i = d_i − e_i = max_{j≤i}(a_j − e_j)`` never shrinks. With E(t)
    and D(t) the expected and digested token counts, the delay area ∫(E − D)⁺ dt equals Σ max(0,
    δ_i), and the expected area is ∫E dt = Σ (H − e_i) up to the horizon H = max(e_last, d_last) +
    1/r (the time the last token has been read). QoE = 1 − delay area / expected area: 1 on or ahead
    of the expected timeline, lower with a late first token or a pace slower than reading.

    Unfinished requests (failed, timed out, aborted) are scored on the tokens they delivered; one
    that delivered no token scores 0. Their SLO verdict, not the QoE, carries the penalty for what
    never came.
    """
    times = np.asarray(record.token_times_s, dtype=np.float64)
    if times.size == 0:
        return 0.0
    target = record.slo.ttft_s if record.slo.ttft_s is not None else params.expected_ttft_s
    pace = 1.0 / params.tokens_per_s
    expected = record.arrival_s + target + pace * np.arange(times.size, dtype=np.float64)
    lag = np.maximum.accumulate(times - expected)
    horizon = max(float(expected[-1]), float(expected[-1] + lag[-1])) + pace
    delay_area = float(np.sum(np.maximum(lag, 0.0)))
    expected_area = float(np.sum(horizon - expected))
    return _f(min(1.0, max(0.0, 1.0 - delay_area / expected_area)))


def record_slo_met(record: RequestRecord) -> bool:
    """True iff the request finished and met every SLO it has (docs/design.md §7)."""
    if record.outcome is not Outcome.FINISHED:
        return False
    if record.first_token_s is None or record.finish_s is None:
        _log.warning("request %d is FINISHED without first-token/finish times; counted as a "
                     "violation", record.request_id)
        return False
    met = slo_met(record.slo, record.arrival_s, record.first_token_s, record.finish_s,
                  record.generated_tokens)
    if not met:
        _log.warning("request %d is FINISHED but its times miss its SLO; counted as a violation",
                     record.request_id)
    return met


def request_metrics(record: RequestRecord, qoe: QoEParams = DEFAULT_QOE) -> RequestMetrics:
    """Per-request metrics of `record` (seconds; NaN where undefined)."""

    def nan_if_none(x: float | None) -> float:
        return math.nan if x is None else _f(x)

    return RequestMetrics(
        request_id=record.request_id, client=record.client,
        ttft_s=nan_if_none(record.ttft_s), tpot_s=nan_if_none(record.tpot_s),
        e2e_s=nan_if_none(record.e2e_s), queue_s=nan_if_none(record.queue_s),
        slo_met=record_slo_met(record), qoe=request_qoe(record, qoe),
    )


def in_window(records: Sequence[RequestRecord], window: tuple[float, float] | None
              ) -> list[RequestRecord]:
    """The records whose arrival lies in ``[start, end)`` (all of them when `window` is None)."""
    if window is None:
        return list(records)
    start, end = window
    return [r for r in records if start <= r.arrival_s < end]


def _last_time(r: RequestRecord) -> float:
    candidates = [r.arrival_s]
    if r.token_times_s:
        candidates.append(r.token_times_s[-1])
    for t in (r.first_token_s, r.finish_s, r.dispatch_s):
        if t is not None:
            candidates.append(t)
    return max(candidates)


def served_service(record: RequestRecord, weights: ServiceWeights = DEFAULT_SERVICE_WEIGHTS
                   ) -> float:
    """VTC weighted tokens served to `record` (prompt counted once its prefill completed)."""
    prompt = record.prompt_tokens if record.first_token_s is not None else 0
    return weights.prompt * prompt + weights.output * record.generated_tokens


def demanded_service(record: RequestRecord, weights: ServiceWeights = DEFAULT_SERVICE_WEIGHTS
                     ) -> float:
    """VTC weighted tokens `record` asked for."""
    return weights.prompt * record.prompt_tokens + weights.output * record.output_tokens


@dataclass(frozen=True, slots=True)
class _PerRequest:
    """The counted records' per-request values as arrays, one entry per record in order (seconds;
    NaN where undefined), built once and indexed per client by `_aggregate`.

    `itl_s` holds the inter-token gaps of every record with two tokens or more, record by record,
    and `itl_owner` the position of the record each gap belongs to; record k's gaps are
    ``itl_s[itl_start[k]:itl_start[k + 1]]``."""

    ttft_s: FloatArray
    tpot_s: FloatArray
    e2e_s: FloatArray
    queue_s: FloatArray
    qoe: FloatArray
    slo_met: BoolArray
    completed: BoolArray
    outcome: npt.NDArray[np.int64]
    prompt_tokens: npt.NDArray[np.int64]
    generated_tokens: npt.NDArray[np.int64]
    preemptions: npt.NDArray[np.int64]
    itl_s: FloatArray
    itl_owner: npt.NDArray[np.int64]
    itl_start: npt.NDArray[np.int64]


_OUTCOMES = tuple(Outcome)
_OUTCOME_CODE = {o: k for k, o in enumerate(_OUTCOMES)}


def _none_nan(x: float | None) -> float:
    return math.nan if x is None else _f(x)


def _per_request(records: Sequence[RequestRecord], params: QoEParams) -> _PerRequest:
    """`_PerRequest` of `records`: the values `request_metrics` gives record by record, and the
    inter-token gaps (`_PerRequest.itl_s`), from one pass over the token times."""
    n = len(records)
    lens = np.fromiter((len(r.token_times_s) for r in records), dtype=np.int64, count=n)
    flat = np.fromiter(chain.from_iterable(r.token_times_s for r in records), dtype=np.float64,
                       count=int(lens.sum()))
    ends = np.cumsum(lens)
    starts = ends - lens
    completed = np.fromiter((r.outcome.completed for r in records), dtype=bool, count=n)
    # Gaps across record boundaries are dropped: every kept gap is the same subtraction of the
    # same two floats as a per-record np.diff.
    if flat.size > 1:
        gaps = np.diff(flat)
        owner_tok = np.repeat(np.arange(n, dtype=np.int64), lens)
        keep = owner_tok[1:] == owner_tok[:-1]
        itl, itl_owner = gaps[keep], owner_tok[1:][keep]
    else:
        itl, itl_owner = np.zeros(0), np.zeros(0, dtype=np.int64)
    return _PerRequest(
        ttft_s=np.asarray([_none_nan(r.ttft_s) for r in records], dtype=np.float64),
        tpot_s=np.asarray([_none_nan(r.tpot_s) for r in records], dtype=np.float64),
        e2e_s=np.asarray([_none_nan(r.e2e_s) for r in records], dtype=np.float64),
        queue_s=np.asarray([_none_nan(r.queue_s) for r in records], dtype=np.float64),
        qoe=_qoe_batch(records, flat, starts, lens, params),
        slo_met=np.fromiter((record_slo_met(r) for r in records), dtype=bool, count=n),
        completed=completed,
        outcome=np.fromiter((_OUTCOME_CODE[r.outcome] for r in records), dtype=np.int64,
                            count=n),
        prompt_tokens=np.fromiter((r.prompt_tokens for r in records), dtype=np.int64, count=n),
        generated_tokens=np.fromiter((r.generated_tokens for r in records), dtype=np.int64,
                                     count=n),
        preemptions=np.fromiter((r.preemptions for r in records), dtype=np.int64, count=n),
        itl_s=itl, itl_owner=itl_owner,
        itl_start=np.searchsorted(itl_owner, np.arange(n + 1, dtype=np.int64), side="left"),
    )


def _qoe_batch(records: Sequence[RequestRecord], flat: FloatArray, starts: npt.NDArray[np.int64],
               lens: npt.NDArray[np.int64], params: QoEParams) -> FloatArray:
    """`request_qoe` of every record, bit for bit, from the records' concatenated token times
    `flat` (record k's are ``flat[starts[k]:starts[k] + lens[k]]``).

    The element-wise parts (expected times, lags) run once over all tokens; only the running
    maximum and the two sums stay per record, on views, because NumPy's pairwise summation of a
    record's values depends on how many there are (a padded or segmented sum would round
    differently)."""
    n = len(records)
    out = np.zeros(n)
    if flat.size == 0:
        return out
    pace = 1.0 / params.tokens_per_s
    base = np.fromiter(
        (r.arrival_s + (r.slo.ttft_s if r.slo.ttft_s is not None else params.expected_ttft_s)
         for r in records), dtype=np.float64, count=n)
    # Token i of its record: position in `flat` minus the record's start.
    local = np.arange(flat.size, dtype=np.int64) - np.repeat(starts, lens)
    expected = np.repeat(base, lens) + pace * local.astype(np.float64)
    late = flat - expected
    add = np.add.reduce
    for k in np.flatnonzero(lens).tolist():
        s = int(starts[k])
        e = s + int(lens[k])
        lag = np.maximum.accumulate(late[s:e])
        exp_k = expected[s:e]
        last = float(exp_k[-1])
        horizon = max(last, last + float(lag[-1])) + pace
        # np.add.reduce is what np.sum calls (the same pairwise sum), without its wrapper.
        delay_area = float(add(np.maximum(lag, 0.0)))
        expected_area = float(add(horizon - exp_k))
        out[k] = min(1.0, max(0.0, 1.0 - delay_area / expected_area))
    return out
