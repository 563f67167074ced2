"""The live driver's gate and priority logic against a fake engine (no vLLM needed)."""

from __future__ import annotations

import asyncio
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from live_fakes import FakeEngine, ScriptedBackend, make_workload

from exfairs.live.backend import BackendError, BackendTimeout, TokenChunk
from exfairs.live.config import DriverConfig
from exfairs.live.driver import LiveDriver, prompt_token_ids
from exfairs.policies import Mode, make_policy
from exfairs.policies.base import FloatArray, Policy
from exfairs.records import SLO, Outcome, Request


class Recording(Policy):
    """Fixed client scores (lower first) and a log of every hook call."""

    def __init__(self, scores: dict[str, float] | None = None) -> None:
        super().__init__()
        self.fixed = scores or {}
        self.calls: list[tuple[str, object, float]] = []
        self.service: Counter[str] = Counter()

    def client_scores(self, now_s: float) -> FloatArray:
        return np.array([self.fixed.get(n, 0.0) for n in self.client_names])

    def on_arrival(self, request: Request, now_s: float) -> None:
        self.calls.append(("arrival", request.request_id, now_s))

    def on_dispatch(self, request: Request, now_s: float) -> None:
        self.calls.append(("dispatch", request.request_id, now_s))

    def on_service(self, client: str, prefill_tokens: int, decode_tokens: int,
                   now_s: float) -> None:
        self.calls.append(("service", (client, prefill_tokens, decode_tokens), now_s))
        self.service[client + ":prefill"] += prefill_tokens
        self.service[client + ":decode"] += decode_tokens

    def on_finish(self, request: Request, now_s: float, slo_met: bool) -> None:
        self.calls.append(("finish", request.request_id, now_s))

    def on_violation(self, request: Request, now_s: float) -> None:
        self.calls.append(("violation", request.request_id, now_s))

    def on_drop(self, request: Request, now_s: float) -> None:
        self.calls.append(("drop", request.request_id, now_s))


def run(driver: LiveDriver, engine: object | None = None):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        if engine is not None:
            await engine.start()  # type: ignore[attr-defined]
        return await driver.run()

    return asyncio.run(go())


def test_gate_releases_in_policy_order_and_respects_max_inflight() -> None:
    wl = make_workload(9, clients=("a", "b", "c"), arrivals_s=[0.0] * 9, output_tokens=3)
    eng = FakeEngine(max_num_seqs=8)
    pol = Recording({"a": 2.0, "b": 0.0, "c": 1.0})
    out = run(LiveDriver(wl, pol, Mode.GATE, eng, DriverConfig(max_inflight=1)), eng)
    # Request 0 (client a) finds the engine idle; the rest queue and leave in policy order.
    assert eng.started_order == [0, 1, 4, 7, 2, 5, 8, 3, 6]
    assert eng.max_running_seen == 1
    assert all(r.outcome is Outcome.FINISHED for r in out.records)
    assert all(p == 0 for _, p in eng.submissions)


def test_gate_limit_defaults_to_max_num_seqs() -> None:
    wl = make_workload(12, arrivals_s=[0.0] * 12, output_tokens=5)
    eng = FakeEngine(max_num_seqs=3)
    driver = LiveDriver(wl, make_policy("FCFS"), Mode.GATE, _Limited(eng, 3))
    assert driver.max_inflight == 3
    run(driver, eng)
    assert eng.max_running_seen == 3


class _Limited:
    """Wraps a FakeEngine, reporting a max_num_seqs."""

    def __init__(self, eng: FakeEngine, n: int) -> None:
        self.eng, self.max_num_seqs, self.name = eng, n, "limited"

    async def start(self) -> None:
        await self.eng.start()

    async def close(self) -> None:
        pass

    def knobs(self):  # type: ignore[no-untyped-def]
        return ()

    def stream(self, request, ids, priority):  # type: ignore[no-untyped-def]
        return self.eng.stream(request, ids, priority)


def test_priority_mode_submits_at_arrival_with_policy_priority() -> None:
    wl = make_workload(6, clients=("a", "b"), arrivals_s=[0.0] * 6, output_tokens=2)
    eng = FakeEngine(max_num_seqs=1, priority_scheduling=True)
    pol = Recording({"a": 5.0, "b": 1.0})
    out = run(LiveDriver(wl, pol, Mode.PRIORITY, eng), eng)
    assert dict(eng.submissions) == {0: 5, 1: 1, 2: 5, 3: 1, 4: 5, 5: 1}
    # Everything is in the engine at once; the engine's priority order decides.
    assert eng.started_order == [0, 1, 3, 5, 2, 4]
    assert all(r.dispatch_s is not None and r.dispatch_s - r.arrival_s < 0.1
               for r in out.records)


def test_hooks_get_real_token_counts_and_one_resolution_each() -> None:
    wl = make_workload(8, prompt_tokens=11, output_tokens=4)
    eng = FakeEngine(max_num_seqs=2)
    pol = Recording()
    out = run(LiveDriver(wl, pol, Mode.GATE, eng), eng)
    assert pol.service["a:prefill"] == 4 * 11 and pol.service["b:prefill"] == 4 * 11
    assert pol.service["a:decode"] == 4 * 4 and pol.service["b:decode"] == 4 * 4
    kinds = Counter(k for k, _, _ in pol.calls)
    assert kinds["arrival"] == kinds["dispatch"] == kinds["finish"] == 8
    times = [t for _, _, t in pol.calls]
    assert times == sorted(times), "hook times must never decrease"
    for r in out.records:
        assert r.generated_tokens == 4 and len(r.token_times_s) == 4
        assert r.arrival_s <= r.dispatch_s <= r.first_token_s <= r.finish_s  # type: ignore[operator]


def test_multi_token_chunks_are_counted() -> None:
    wl = make_workload(2, output_tokens=5)
    backend = ScriptedBackend([TokenChunk(2), TokenChunk(0), TokenChunk(3, finished=True)])
    pol = Recording()
    out = run(LiveDriver(wl, pol, Mode.GATE, backend))
    assert [r.generated_tokens for r in out.records] == [5, 5]
    assert pol.service["a:decode"] == 5
    r = out.records[0]
    assert r.token_times_s[0] == r.token_times_s[1] == r.first_token_s


def test_short_stream_is_failed_not_finished() -> None:
    wl = make_workload(1, output_tokens=5)
    out = run(LiveDriver(wl, Recording(), Mode.GATE,
                         ScriptedBackend([TokenChunk(2, finished=True)])))
    assert out.records[0].outcome is Outcome.FAILED
    assert "2 of 5" in (out.records[0].error or "")


def test_late_requests_are_violated_and_told_once() -> None:
    wl = make_workload(6, arrivals_s=[0.0] * 6, output_tokens=10, slo=SLO(e2e_s=0.03))
    eng = FakeEngine(max_num_seqs=1, token_s=0.01)
    pol = Recording()
    out = run(LiveDriver(wl, pol, Mode.GATE, eng, DriverConfig(advance_every_s=0.005)), eng)
    assert all(r.outcome is Outcome.VIOLATED for r in out.records[1:])
    viol = Counter(rid for k, rid, _ in pol.calls if k == "violation")
    assert set(viol.values()) == {1} and len(viol) >= 5


def test_errors_map_to_failed_and_timed_out() -> None:
    wl = make_workload(6, output_tokens=3)
    eng = FakeEngine(max_num_seqs=4, fail={1: BackendError("HTTP 500"),
                                           2: BackendTimeout("read timeout")},
                     hang={3})
    pol = Recording()
    out = run(LiveDriver(wl, pol, Mode.GATE, eng, DriverConfig(request_timeout_s=0.3)), eng)
    by_id = {r.request_id: r for r in out.records}
    assert by_id[1].outcome is Outcome.FAILED and "500" in (by_id[1].error or "")
    assert by_id[2].outcome is Outcome.TIMED_OUT
    assert by_id[3].outcome is Outcome.TIMED_OUT and "client timeout" in (by_id[3].error or "")
    assert {by_id[i].outcome for i in (0, 4, 5)} == {Outcome.FINISHED}
    drops = {rid for k, rid, _ in pol.calls if k == "drop"}
    assert drops == {1, 2, 3}
    assert out.stopped is None


def test_engine_death_stops_the_run_and_accounts_for_everything() -> None:
    wl = make_workload(40, gap_s=0.01, output_tokens=5)
    eng = FakeEngine(max_num_seqs=2, die_after_tokens=12)
    pol = Recording()
    out = run(LiveDriver(wl, pol, Mode.GATE, eng), eng)
    assert out.stopped is not None and out.stopped.startswith("engine died")
    assert [r.request_id for r in out.records] == list(range(40))
    counts = Counter(r.outcome for r in out.records)
    assert counts[Outcome.FAILED] >= 1 and counts[Outcome.ABORTED] >= 20
    assert sum(counts.values()) == 40
    # Requests that never arrived are aborted without a dispatch.
    assert any(r.outcome is Outcome.ABORTED and r.dispatch_s is None and
               (r.error or "").startswith("not submitted") for r in out.records)
    # Every request the policy saw arrive was resolved for it exactly once.
    arrived = {rid for k, rid, _ in pol.calls if k == "arrival"}
    finished = {rid for k, rid, _ in pol.calls if k == "finish"}
    dropped = {rid for k, rid, _ in pol.calls if k == "drop"}
    assert arrived == finished | dropped and not (finished & dropped)


def test_stop_request_aborts_in_flight_and_queued() -> None:
    wl = make_workload(30, gap_s=0.005, output_tokens=50)
    eng = FakeEngine(max_num_seqs=2, token_s=0.005)

    async def go():  # type: ignore[no-untyped-def]
        await eng.start()
        d = LiveDriver(wl, Recording(), Mode.GATE, eng)
        asyncio.get_running_loop().call_later(0.1, d.request_stop, "interrupted (test)")
        return await d.run()

    out = asyncio.run(go())
    assert out.stopped == "interrupted (test)"
    assert len(out.records) == 30
    c = Counter(r.outcome for r in out.records)
    assert c[Outcome.ABORTED] >= 25
    queued = [r for r in out.records if (r.error or "").startswith("queued when")]
    assert queued and all(r.dispatch_s is None for r in queued)
    partial = [r for r in out.records if r.outcome is Outcome.ABORTED and r.generated_tokens > 0]
    assert partial, "in-flight requests keep the tokens they got"


def test_drain_limit_aborts_the_rest() -> None:
    wl = make_workload(3, output_tokens=3)
    eng = FakeEngine(max_num_seqs=4, hang={1})
    out = run(LiveDriver(wl, Recording(), Mode.GATE, eng, DriverConfig(drain_timeout_s=0.2)),
              eng)
    assert out.stopped is not None and out.stopped.startswith("drain limit")
    assert out.records[1].outcome is Outcome.ABORTED
    assert out.records[0].outcome is Outcome.FINISHED


def test_arrivals_follow_the_run_clock() -> None:
    wl = make_workload(5, arrivals_s=[0.0, 0.05, 0.1, 0.15, 0.2], output_tokens=1)
    eng = FakeEngine(max_num_seqs=8)
    out = run(LiveDriver(wl, Recording(), Mode.PRIORITY, eng), eng)
    for r in out.records:
        assert r.dispatch_s is not None
        assert 0.0 <= r.dispatch_s - r.arrival_s < 0.1


def test_policy_samples_and_empty_workload() -> None:
    eng = FakeEngine()
    out = run(LiveDriver(make_workload(0), make_policy("VTC"), Mode.GATE, eng), eng)
    assert out.records == () and out.stopped is None
    out = run(LiveDriver(make_workload(3), make_policy("VTC"), Mode.GATE, eng), eng)
    assert out.policy_samples and out.policy_samples[0].values[0][0] == "counter"


def test_driver_samples_are_sparse() -> None:
    # Clients a, b, idle registered; only a and b send (from 0.2 s): every sample holds the
    # clients heard from by then, never the idle one, aligned with their values.
    from exfairs.records import ClientInfo, Workload

    base = make_workload(4, arrivals_s=[0.2, 0.25, 0.3, 0.35])
    wl = Workload(name=base.name, seed=0, clients=(*base.clients, ClientInfo("idle")),
                  requests=base.requests, duration_s=base.duration_s)
    eng = FakeEngine()
    out = run(LiveDriver(wl, make_policy("VTC"), Mode.GATE, eng,
                         config=DriverConfig(sample_every_s=0.05)), eng)
    assert len(out.policy_samples) >= 2
    first, last = out.policy_samples[0], out.policy_samples[-1]
    assert first.time_s < 0.2 and first.clients == ()
    assert last.clients == (0, 1)
    for s in out.policy_samples:
        assert s.clients is not None and 2 not in s.clients
        assert all(len(v) == len(s.clients) for _, v in s.values)


def test_engine_mode_submits_at_arrival_with_tags_and_leaves_the_policy_alone() -> None:
    """Engine mode: the policy runs inside the engine, so the driver's policy object hears nothing
    and every request goes out at once, tagged for the scheduler plug-in."""
    from exfairs.live.plugin_protocol import K_CLIENT, K_ID, K_RUN, parse_request

    class Tagged(FakeEngine):
        seen: list[dict[str, object]]

        def stream(self, request, ids, priority, *, extra_args=None):  # type: ignore[no-untyped-def]
            self.seen.append(dict(extra_args or {}))
            return super().stream(request, ids, priority)

    eng = Tagged(max_num_seqs=2)
    eng.seen = []
    policy = make_policy("VTC")
    wl = make_workload(6, gap_s=0.0)
    out = run(LiveDriver(wl, policy, Mode.ENGINE, eng, run_tag="r1"), eng)
    assert all(r.outcome is Outcome.FINISHED for r in out.records)
    assert sorted(int(a[K_ID]) for a in eng.seen) == list(range(6))  # type: ignore[call-overload]
    assert {a[K_RUN] for a in eng.seen} == {"r1"}
    assert [a[K_CLIENT] for a in sorted(eng.seen, key=lambda a: int(a[K_ID]))] == \
        [r.client for r in wl.requests]  # type: ignore[call-overload]
    back = parse_request(eng.seen[0])
    assert back is not None and back[0] == "r1" and back[1] in wl.requests
    assert policy.n_clients == 0 and out.policy_samples == ()  # the driver-side policy is unused


def test_driver_runs_once() -> None:
    eng = FakeEngine()
    d = LiveDriver(make_workload(1), make_policy("FCFS"), Mode.GATE, eng)
    run(d, eng)
    with pytest.raises(RuntimeError, match="once"):
        run(d)


@given(st.integers(0, 2**31), st.integers(1, 300), st.integers(0, 10**6))
def test_prompt_ids_are_deterministic_and_in_range(seed: int, n: int, rid: int) -> None:
    req = Request(request_id=rid, client="a", arrival_s=0.0, prompt_tokens=n, output_tokens=1)
    ids = prompt_token_ids(seed, req, 4096, 10)
    assert len(ids) == n and min(ids) >= 10 and max(ids) < 4096
    assert ids == prompt_token_ids(seed, req, 4096, 10)


def test_prompt_ids_differ_between_requests() -> None:
    a = Request(request_id=1, client="a", arrival_s=0.0, prompt_tokens=64, output_tokens=1)
    b = Request(request_id=2, client="a", arrival_s=0.0, prompt_tokens=64, output_tokens=1)
    assert prompt_token_ids(0, a, 4096) != prompt_token_ids(0, b, 4096)


@given(st.lists(st.sampled_from(["ok", "fail", "timeout", "hang"]), min_size=1, max_size=12),
       st.integers(1, 4), st.sampled_from([Mode.GATE, Mode.PRIORITY]))
def test_every_request_gets_exactly_one_record(kinds: list[str], slots: int, mode: Mode) -> None:
    wl = make_workload(len(kinds), gap_s=0.002, output_tokens=2)
    fail = {i: (BackendError("boom") if k == "fail" else BackendTimeout("slow"))
            for i, k in enumerate(kinds) if k in ("fail", "timeout")}
    hang = {i for i, k in enumerate(kinds) if k == "hang"}
    eng = FakeEngine(max_num_seqs=slots, token_s=0.001, fail=fail, hang=hang,
                     priority_scheduling=mode is Mode.PRIORITY)
    out = run(LiveDriver(wl, make_policy("VTC"), mode, eng,
                         DriverConfig(request_timeout_s=0.05, drain_timeout_s=5.0)), eng)
    assert [r.request_id for r in out.records] == list(range(len(kinds)))
    expect = {"ok": {Outcome.FINISHED}, "fail": {Outcome.FAILED},
              "timeout": {Outcome.TIMED_OUT}, "hang": {Outcome.TIMED_OUT}}
    for r, k in zip(out.records, kinds, strict=True):
        # A request stuck behind hanging ones may itself time out waiting for a slot.
        assert r.outcome in expect[k] | {Outcome.TIMED_OUT}
    assert not math.isnan(out.end_s)
