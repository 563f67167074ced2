"""STATIC_PRIORITY: fixed per-tenant priorities in vLLM's priority order (docs/policies.md).

vLLM's ``scheduling_policy="priority"`` orders its waiting queue by ``(priority, arrival time)``,
lowest first (vllm/v1/core/sched/request_queue.py, `PriorityRequestQueue`), and a tenant's
priority is whatever its API caller sets. This policy gives every request of client i the static
priority ``p_i``: the client score is ``p_i``, ties go to the earliest head arrival (the queue's
rule), so gate and engine modes reproduce vLLM's order and priority mode is vLLM's own queue with
``priority = p_i``. A tenant with a lower priority value is never served while one with a higher
value is backlogged — static priorities can starve; this is the baseline, not a remedy.

Parameters: ``priorities`` — ``"client:int,client:int,..."`` (or a mapping client → int); clients
not listed get ``default_priority`` (int, default 0). An unknown client name in ``priorities`` is
allowed (the policy may be shared between workloads).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from exfairs.errors import ConfigError
from exfairs.policies.base import FloatArray, IntArray, Policy
from exfairs.policies.registry import register_policy
from exfairs.records import Request


def _int(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError("must be an integer", field=field, value=value)
    return value


def parse_priorities(value: str | Mapping[str, int]) -> dict[str, int]:
    """``"a:0,b:5"`` (or a mapping) → {client: priority}; ConfigError naming ``priorities``."""
    if isinstance(value, Mapping):
        return {str(k): _int(f"priorities.{k}", v) for k, v in value.items()}
    if not isinstance(value, str):
        raise ConfigError("must be a string 'client:int,...'", field="priorities", value=value)
    out: dict[str, int] = {}
    for item in filter(None, (s.strip() for s in value.split(","))):
        name, sep, raw = item.rpartition(":")
        try:
            prio = int(raw)
        except ValueError:
            prio = None
        if not sep or not name or prio is None:
            raise ConfigError("expected 'client:int' items separated by commas",
                              field="priorities", value=value)
        out[name] = prio
    return out


@register_policy("STATIC_PRIORITY")
class StaticPriority(Policy):
    """Score = the client's static priority (lower first); see the module docstring."""

    def __init__(self, priorities: str | Mapping[str, int] = "",
                 default_priority: int = 0) -> None:
        super().__init__()
        self.priorities = parse_priorities(priorities)
        self.default_priority = _int("default_priority", default_priority)
        self._prio = np.zeros(0)

    def _grow(self, n_clients: int) -> None:
        names = self.client_names
        self._prio = np.asarray(
            [float(self.priorities.get(n, self.default_priority)) for n in names[:n_clients]])

    def client_scores(self, now_s: float) -> FloatArray:
        return self._prio.copy()

    def scores_of(self, indices: IntArray, now_s: float) -> FloatArray:
        return self._prio[indices]

    def submission_priority(self, request: Request, now_s: float) -> int:
        return int(self._prio[self.client_index(request.client)])
