"""FCFS: arrival order across all clients."""

from __future__ import annotations

import numpy as np

from exfairs.policies.base import FloatArray, IntArray, Policy
from exfairs.policies.registry import register_policy


@register_policy("FCFS")
class FCFS(Policy):
    """First come, first served: every client scores 0, so the queue's tie-break (earliest head
    arrival, then lowest request id) gives global arrival order."""

    def client_scores(self, now_s: float) -> FloatArray:
        return np.zeros(self.n_clients)

    def scores_of(self, indices: IntArray, now_s: float) -> FloatArray:
        return np.zeros(indices.shape[0])
