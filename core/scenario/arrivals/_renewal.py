"""Renewal processes: arrivals from independent inter-arrival gaps."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


def renewal_times(rng: np.random.Generator, duration_s: float, expected: float,
                  gaps: Callable[[int], np.ndarray], start_s: float = 0.0) -> np.ndarray:
    """Arrival times in [start_s, duration_s) from the cumulative sums of `gaps(n)` (seconds);
    `expected` is the expected number of arrivals (sizes the chunks of gaps drawn)."""
    # Draw inter-arrival gaps in chunks until the horizon is passed; chunks are sized so that one
    # usually suffices.
    chunk = int(expected + 6.0 * math.sqrt(expected + 1.0)) + 16
    parts: list[np.ndarray] = []
    t = start_s
    while t < duration_s:
        times = t + np.cumsum(gaps(chunk))
        parts.append(times)
        t = float(times[-1])
    if not parts:
        return np.empty(0)
    times = np.concatenate(parts)
    return times[times < duration_s]
