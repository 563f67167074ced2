"""Policies for the scheduler plug-in's live tests (not registered here: importing this module has
no side effects; `engine_policies_registered` registers them inside the engine process)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from exfairs.policies.base import FloatArray, Policy


class FixedScores(Policy):
    """Fixed per-client scores (lower runs first; the highest-scored client is preempted first)."""

    name: ClassVar[str] = "TEST_FIXED"

    def __init__(self, scores: Mapping[str, float] | None = None) -> None:
        super().__init__()
        self.scores = dict(scores or {})

    def client_scores(self, now_s: float) -> FloatArray:
        return np.asarray([self.scores.get(n, 0.0) for n in self.client_names], dtype=np.float64)


class RaisesAfter(Policy):
    """Scores all zero until its `calls`-th `client_scores` call, which raises."""

    name: ClassVar[str] = "TEST_RAISES"

    def __init__(self, calls: int = 5) -> None:
        super().__init__()
        self.calls = calls
        self._n = 0

    def client_scores(self, now_s: float) -> FloatArray:
        self._n += 1
        if self._n >= self.calls:
            raise RuntimeError(f"planted failure at call {self._n}")
        return np.zeros(self.n_clients)
