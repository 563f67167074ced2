"""The three modes really act: on a two-client overload VTC (gate and priority mode) keeps the
service gap of the backlogged clients within the VTC bound, FCFS does not; and on unequal
arrival rates and unequal prompts priority-mode VTC and ExFairS keep their bounds over every
interval in which both clients are backlogged in the theorem's sense (a request waiting), while
a looser notion of backlog (a request not finished) makes every VTC mode "exceed" it."""

from __future__ import annotations

import numpy as np
import pytest
from sim_factories import engine, profile, workload

from exfairs.policies import available_policies
from exfairs.records import RequestRecord
from exfairs.sim.runner import SimResult, simulate

W_P, W_Q = 1.0, 2.0
PROMPT, OUTPUT = 64, 32
ENGINE = dict(max_num_seqs=4, max_num_batched_tokens=256, block_size=16, num_gpu_blocks=64)
WINDOW = (5.0, 45.0)



def _service_curves(records: tuple[RequestRecord, ...], grid: np.ndarray) -> dict[str, np.ndarray]:
    """Weighted service per client by time: w_p·prompt when the prefill completes (first token),
    w_q per output token as emitted."""
    out: dict[str, np.ndarray] = {}
    for client in ("heavy", "light"):
        events: list[float] = []
        weights: list[float] = []
        for r in records:
            if r.client != client:
                continue
            events.extend(r.token_times_s)
            weights.extend([W_Q] * len(r.token_times_s))
            if r.first_token_s is not None:
                events.append(r.first_token_s)
                weights.append(W_P * r.prompt_tokens)
        order = np.argsort(events, kind="stable")
        t = np.asarray(events)[order]
        cum = np.cumsum(np.asarray(weights)[order])
        idx = np.searchsorted(t, grid, side="right")
        out[client] = np.where(idx > 0, cum[np.maximum(idx - 1, 0)], 0.0)
    return out


def _backlogged(records: tuple[RequestRecord, ...], client: str, t: float) -> bool:
    return any(r.client == client and r.arrival_s <= t and (r.finish_s or np.inf) > t
               for r in records)


def _max_gap(res: SimResult) -> float:
    grid = np.linspace(*WINDOW, 401)
    for t in grid:  # the bound concerns clients that are both backlogged
        assert _backlogged(res.records, "heavy", t) and _backlogged(res.records, "light", t)
    s = _service_curves(res.records, grid)
    gap = (s["heavy"] - s["heavy"][0]) - (s["light"] - s["light"][0])
    return float(np.abs(gap).max())


@pytest.mark.skipif("VTC" not in available_policies(), reason="VTC not registered yet")
@pytest.mark.parametrize("exp", [
    "VTC",  # priority mode: meets the bound since charging at submission (policies/vtc.py)
    "QUEUE_VTC",
    "ENGINE_VTC",
])
def test_vtc_modes_bound_the_service_gap_fcfs_does_not(exp: str) -> None:
    # heavy sends 5x the requests of light; together 4x what the engine serves.
    specs = [("heavy", i / 25.0, PROMPT, OUTPUT) for i in range(25 * 50)]
    specs += [("light", 0.01 + i / 5.0, PROMPT, OUTPUT) for i in range(5 * 50)]
    wl = workload(specs, clients=["heavy", "light"])
    prof = profile(fixed_ms=10.0, prefill_token_ms=0.05, decode_seq_ms=0.5)
    eng = engine(**ENGINE)
    kv_tokens = eng.num_gpu_blocks * eng.block_size
    # Sheng et al. (OSDI 2024), Theorem 4.2: 2·max(w_p·L_in, w_q·M), M the KV token capacity.
    bound = 2 * max(W_P * PROMPT, W_Q * kv_tokens)

    fcfs_gap = _max_gap(simulate(wl, "QUEUE_FCFS", prof, engine=eng))
    fcfs_prio_gap = _max_gap(simulate(wl, "FCFS", prof, engine=eng))
    vtc_gap = _max_gap(simulate(wl, exp, prof, engine=eng,
                                policy_params={"w_p": W_P, "w_q": W_Q}))
    assert fcfs_gap > bound and fcfs_prio_gap > bound
    assert vtc_gap <= bound, (exp, vtc_gap, bound)
    # Not a close call: VTC keeps the gap far below FCFS's.
    assert vtc_gap < fcfs_gap / 4


@pytest.mark.skipif("VTC" not in available_policies(), reason="VTC not registered yet")
def test_priority_mode_vtc_acts() -> None:
    """Priority mode changes what the engine runs: VTC's priorities shrink the gap well below
    FCFS's, even where they miss the bound."""
    specs = [("heavy", i / 25.0, PROMPT, OUTPUT) for i in range(25 * 50)]
    specs += [("light", 0.01 + i / 5.0, PROMPT, OUTPUT) for i in range(5 * 50)]
    wl = workload(specs, clients=["heavy", "light"])
    prof = profile(fixed_ms=10.0, prefill_token_ms=0.05, decode_seq_ms=0.5)
    eng = engine(**ENGINE)
    fcfs_gap = _max_gap(simulate(wl, "FCFS", prof, engine=eng))
    vtc_gap = _max_gap(simulate(wl, "VTC", prof, engine=eng))
    assert vtc_gap < fcfs_gap / 2


def _waiting(records: tuple[RequestRecord, ...], client: str, grid: np.ndarray) -> np.ndarray:
    """True where `client` has a request waiting: arrived, its prefill not yet done (no first
    token). Waiting until the first token over-counts by the prefill step: conservative."""
    arr = np.sort([r.arrival_s for r in records if r.client == client])
    first = np.sort([r.first_token_s if r.first_token_s is not None else np.inf
                     for r in records if r.client == client])
    return (np.searchsorted(arr, grid, side="right")
            - np.searchsorted(first, grid, side="right")) > 0


def _backlogged_gap(res: SimResult) -> float:
    """Sheng et al.'s Theorem 4.2 quantity: the largest |W_heavy(t1, t2) − W_light(t1, t2)| over
    t1 < t2 inside one interval in which both clients are continuously backlogged (grid of
    20 ms; a backlog break shorter than that is not seen, which can only enlarge the result)."""
    grid = np.linspace(*WINDOW, 2001)
    both = _waiting(res.records, "heavy", grid) & _waiting(res.records, "light", grid)
    s = _service_curves(res.records, grid)
    gap = s["heavy"] - s["light"]
    best, i = 0.0, 0
    while i < len(grid):
        if not both[i]:
            i += 1
            continue
        j = i
        while j < len(grid) and both[j]:
            j += 1
        best = max(best, float(gap[i:j].max() - gap[i:j].min()))
        i = j
    return best


# Heavy at 40 requests/s against light at 4/s (unequal rates, light under its half share), and
# heavy's prompts 512 tokens against light's 16 (unequal prompts, 5:1 rates).
_UNEQUAL = {
    "rates": [("heavy", i / 40.0, 64, 32) for i in range(40 * 50)]
    + [("light", 0.01 + i / 4.0, 64, 32) for i in range(4 * 50)],
    "prompts": [("heavy", i / 25.0, 512, 32) for i in range(25 * 50)]
    + [("light", 0.01 + i / 5.0, 16, 32) for i in range(5 * 50)],
}


@pytest.mark.skipif("VTC" not in available_policies(), reason="VTC not registered yet")
@pytest.mark.parametrize("case", sorted(_UNEQUAL))
def test_priority_mode_vtc_and_exfairs_keep_their_bounds_while_both_are_backlogged(
        case: str) -> None:
    specs = _UNEQUAL[case]
    wl = workload(specs, clients=["heavy", "light"])
    prof = profile(fixed_ms=10.0, prefill_token_ms=0.05, decode_seq_ms=0.5)
    eng = engine(**ENGINE)
    kv_tokens = eng.num_gpu_blocks * eng.block_size
    l_in = max(p for _, _, p, _ in specs)
    vtc_bound = 2 * max(W_P * l_in, W_Q * kv_tokens)  # Theorem 4.2
    # ExFairS (policies/exfairs_policy.py): score = (1−α)c + α·B·(u/K − v) with the experience
    # terms in [−αB, αB], so it may pick j over i while c_j − c_i ≤ 2αB/(1−α): VTC's bound plus
    # that, B = credit_requests · the largest request cost (the mean of the requests seen is at
    # most that). Defaults α = 0.7, credit_requests = 4.
    b_max = 4 * max(W_P * p + W_Q * o for _, _, p, o in specs)
    exfairs_bound = vtc_bound + 2 * 0.7 * b_max / 0.3
    params = {"w_p": W_P, "w_q": W_Q}
    fcfs = _backlogged_gap(simulate(wl, "FCFS", prof, engine=eng))
    vtc = simulate(wl, "VTC", prof, engine=eng, policy_params=params)
    exf = simulate(wl, "ExFairS", prof, engine=eng, policy_params=params)
    assert fcfs > vtc_bound  # the measure can fail: FCFS in priority mode misses the bound
    assert _backlogged_gap(vtc) <= vtc_bound, case
    assert _backlogged_gap(exf) <= exfairs_bound, case
    # The looser notion — a client counts as backlogged while a request of it is unfinished,
    # including requests running, not waiting — is what made the gap look 3-7x the bound: a
    # client whose requests all run is not backlogged, VTC owes it nothing then, and every mode
    # (gate and engine too) shows the same excess.
    loose = np.linspace(*WINDOW, 401)
    assert all(_backlogged(vtc.records, "light", t) for t in loose)
    s = _service_curves(vtc.records, loose)
    g = (s["heavy"] - s["heavy"][0]) - (s["light"] - s["light"][0])
    assert float(np.abs(g).max()) > vtc_bound
