"""`simulate(submit_latencies=...)`: a gate release's own release-to-engine latency (a replay of
a live run passes each release's recorded hop, `exfairs.live.replay`)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_factories import engine, profile, workload

from exfairs.errors import ConfigError
from exfairs.sim.plan import StepInfo
from exfairs.sim.runner import simulate


def _admitted(wl: object, lat: float, lats: dict[int, float] | None
              ) -> tuple[dict[int, float], dict[int, float]]:
    """(request id → start of the step that admitted it, request id → finish time)."""
    starts: dict[int, float] = {}

    def obs(info: StepInfo) -> None:
        for rid in info.admitted:
            starts.setdefault(rid, info.start_s)

    res = simulate(wl, "QUEUE_FCFS", profile(), engine=engine(submit_latency_s=lat),  # type: ignore[arg-type]
                   observer=obs, step_by_step=True, max_inflight=2, submit_latencies=lats)
    return starts, {r.request_id: r.finish_s for r in res.records if r.finish_s is not None}


def test_one_release_with_its_own_latency_joins_a_step_later() -> None:
    # Gate of 2: request 0 finishes early, request 1 keeps decoding, request 2 waits in the gate
    # and is released at request 0's finish.
    wl = workload([("a", 0.0, 32, 2), ("a", 0.0, 32, 40), ("a", 0.0, 32, 4)], clients=["a"])
    starts0, fin0 = _admitted(wl, 0.0, None)
    assert starts0[2] == fin0[0]  # no latency: admitted in the step that starts at the release
    starts1, fin1 = _admitted(wl, 0.0, {2: 1e-4})
    assert starts1[0] == starts0[0] == 0.0 and starts1[1] == 0.0  # the others: no latency
    assert fin1[0] == fin0[0] and starts1[2] > fin1[0]  # request 2 missed that step
    # Its own latency replaces the engine's, in both directions.
    starts2, fin2 = _admitted(wl, 1e-4, {2: 0.0})
    assert starts2[0] == 1e-4 and starts2[2] == fin2[0]


@pytest.mark.parametrize("value", [-1e-3, math.nan, 61.0, True, "1"])
def test_a_bad_latency_names_the_request(value: object) -> None:
    wl = workload([("a", 0.0, 32, 2)], clients=["a"])
    with pytest.raises(ConfigError, match=r"submit_latencies\[0\]"):
        simulate(wl, "QUEUE_FCFS", profile(), engine=engine(),  # type: ignore[arg-type]
                 submit_latencies={0: value})  # type: ignore[dict-item]


@pytest.mark.parametrize(("exp", "order"), [("ENGINE_VTC", "stream"), ("VTC", "step")])
def test_latencies_outside_gate_and_stream_priority_mode_are_refused(exp: str,
                                                                      order: str) -> None:
    # Engine mode hears requests in the engine; priority mode with the "step" order hears them
    # when the engine does (one latency for all).
    wl = workload([("a", 0.0, 32, 2)], clients=["a"])
    with pytest.raises(ConfigError, match="submit_latencies"):
        simulate(wl, exp, profile(), engine=engine(hook_order=order),  # type: ignore[arg-type]
                 submit_latencies={0: 1e-3})


@settings(max_examples=25, deadline=None)
@given(lat=st.floats(0.0, 0.05), exp=st.sampled_from(["QUEUE_FCFS", "QUEUE_VTC", "VTC"]),
       order=st.sampled_from(["step", "stream"]),
       specs=st.lists(st.tuples(st.sampled_from(["a", "b"]), st.floats(0.0, 2.0),
                                st.integers(1, 300), st.integers(1, 30)), min_size=1,
                      max_size=15))
def test_the_same_latency_for_every_request_is_the_engines(
        lat: float, exp: str, order: str, specs: list[tuple[str, float, int, int]]) -> None:
    if exp == "VTC":
        order = "stream"  # priority mode takes per-request latencies with it only
    wl = workload(specs, clients=["a", "b"])
    own = {r.request_id: lat for r in wl.requests}  # type: ignore[attr-defined]
    base = simulate(wl, exp, profile(), engine=engine(submit_latency_s=lat, max_num_seqs=3,  # type: ignore[arg-type]
                                                      hook_order=order), max_inflight=2)
    per = simulate(wl, exp, profile(), engine=engine(max_num_seqs=3, hook_order=order),  # type: ignore[arg-type]
                   max_inflight=2, submit_latencies=own)
    fast_per = simulate(wl, exp, profile(), engine=engine(max_num_seqs=3, hook_order=order),  # type: ignore[arg-type]
                        max_inflight=2, submit_latencies=own, step_by_step=True)
    assert per.records == base.records == fast_per.records
