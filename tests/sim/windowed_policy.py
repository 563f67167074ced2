"""A least-attained-service policy over a sliding time window (a test policy): the client served
the fewest tokens in the last `window_s` seconds goes first. Its ranking changes with time alone,
so it asks to be woken when served tokens leave the window."""

from __future__ import annotations

import bisect
import math
from collections import deque

import numpy as np

from exfairs.policies import register_policy
from exfairs.policies.base import FloatArray, Policy


@register_policy("TEST_LAS_WINDOW")
class WindowedLAS(Policy):
    """Lowest tokens served in (now − window_s, now] first."""

    def __init__(self, window_s: float = 0.05) -> None:
        super().__init__()
        self.window_s = window_s
        self._events: deque[tuple[float, int, int]] = deque()  # (time, client, tokens)

    def on_service(self, client: str, prefill_tokens: int, decode_tokens: int,
                   now_s: float) -> None:
        self._events.append((now_s, self.client_index(client), prefill_tokens + decode_tokens))

    def client_scores(self, now_s: float) -> FloatArray:
        ev = self._events
        while ev and ev[0][0] <= now_s - self.window_s:
            ev.popleft()  # times never decrease, so older events never count again
        out = np.zeros(self.n_clients)
        for t, c, n in ev:
            if t <= now_s:
                out[c] += n
        return out

    def next_wakeup(self, now_s: float) -> float:
        times = [t + self.window_s for t, _, _ in self._events]
        i = bisect.bisect_right(times, now_s)
        return times[i] if i < len(times) else math.inf
