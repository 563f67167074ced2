"""The batched service timeline and inter-token gaps of `exfairs.metrics` equal, bit for bit,
the per-record computation they replaced (kept here as the reference), including simultaneous
events, whose order fixes the summation order of the cumulative service."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from metrics_factory import make_record

from exfairs.metrics import DEFAULT_SERVICE_WEIGHTS, ServiceWeights, _itl_s, service_timeline
from exfairs.records import ClientInfo, Outcome, RequestRecord


def _ref_itl(records: Sequence[RequestRecord]) -> np.ndarray:
    gaps = [np.diff(np.asarray(r.token_times_s, dtype=np.float64))
            for r in records if r.outcome.completed and len(r.token_times_s) > 1]
    return np.concatenate(gaps) if gaps else np.zeros(0)


def _ref_events(records: Sequence[RequestRecord], clients: Sequence[ClientInfo],
                weights: ServiceWeights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    index = {c.name: i for i, c in enumerate(clients)}
    weight = np.asarray([c.weight for c in clients], dtype=np.float64)
    ev_t, ev_v, ev_c = [], [], []
    for r in records:
        c = index[r.client]
        times = np.asarray(r.token_times_s, dtype=np.float64)
        if times.size:
            ev_t.append(times)
            ev_v.append(np.full(times.size, weights.output / weight[c]))
            ev_c.append(np.full(times.size, c, dtype=np.float64))
        if r.first_token_s is not None:
            ev_t.append(np.asarray([r.first_token_s]))
            ev_v.append(np.asarray([weights.prompt * r.prompt_tokens / weight[c]]))
            ev_c.append(np.asarray([c], dtype=np.float64))
    return _cat(ev_t), _cat(ev_v), _cat(ev_c).astype(np.int64)


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0)


def _ref_service(records: Sequence[RequestRecord], clients: Sequence[ClientInfo],
                 grid: np.ndarray, weights: ServiceWeights) -> np.ndarray:
    t_serv, v_serv, c_serv = _ref_events(records, clients, weights)
    out = np.zeros((len(clients), grid.size))
    for c in range(len(clients)):
        sel = c_serv == c
        order = np.argsort(t_serv[sel], kind="stable")
        cum = np.concatenate([[0.0], np.cumsum(v_serv[sel][order])])
        out[c] = cum[np.searchsorted(t_serv[sel][order], grid, side="right")]
    return out


# Times on a coarse grid so that tokens of different requests (and a first token and a prompt
# event) often coincide, as they do in a simulated batch step.
_record = st.builds(
    lambda i, client, arrival, prompt, out, ttft, tpot, cut, aborted: make_record(
        i, client, arrival_s=arrival / 4, prompt_tokens=prompt, output_tokens=out,
        ttft_s=None if ttft == 0 else ttft / 4, tpot_s=tpot / 4,
        generated=min(out, cut) if aborted else None,
        outcome=Outcome.ABORTED if aborted else None),
    st.integers(0, 10_000), st.sampled_from(["a", "b", "c"]), st.integers(0, 20),
    st.integers(1, 300), st.integers(1, 6), st.integers(0, 4), st.integers(1, 3),
    st.integers(0, 6), st.booleans())


@settings(max_examples=150, deadline=None)
@given(records=st.lists(_record, max_size=12),
       weights=st.sampled_from([DEFAULT_SERVICE_WEIGHTS, ServiceWeights(prompt=0.3, output=1.7)]),
       client_weights=st.tuples(*[st.sampled_from([1.0, 0.3, 3.0])] * 3))
def test_batched_paths_equal_the_per_record_ones(records: list[RequestRecord],
                                                 weights: ServiceWeights,
                                                 client_weights: tuple[float, float, float]
                                                 ) -> None:
    clients = [ClientInfo(n, weight=w) for n, w in zip("abc", client_weights, strict=True)]
    assert np.array_equal(_itl_s(records), _ref_itl(records))
    tl = service_timeline(records, clients, weights)
    assert np.array_equal(tl.service, _ref_service(records, clients, tl.times_s, weights))
