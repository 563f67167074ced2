"""Experiment names of the original ExFairS study mapped to (policy, mode) (docs/design.md §2).

``ExFairS``, ``VTC``, ``FCFS`` → priority mode; ``QUEUE_<POLICY>`` → gate mode;
``ENGINE_<POLICY>`` → engine mode. Names match case-insensitively and come back canonical.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from exfairs.errors import InputError
from exfairs.policies.registry import available_policies, policy_class


class Mode(str, Enum):
    """Where the policy acts."""

    GATE = "gate"  # client-side queue in front of the engine
    PRIORITY = "priority"  # priority fixed at submission; the engine orders its waiting queue
    ENGINE = "engine"  # the engine's waiting queue and preemption victims, every step


_PREFIX = {Mode.GATE: "QUEUE_", Mode.ENGINE: "ENGINE_", Mode.PRIORITY: ""}


@dataclass(frozen=True, slots=True)
class Experiment:
    """A policy in a mode; `name` is the canonical experiment name (e.g. ``QUEUE_VTC``)."""

    policy: str
    mode: Mode

    @property
    def name(self) -> str:
        return f"{_PREFIX[self.mode]}{self.policy}"


def experiment_names() -> list[str]:
    """Every valid experiment name, canonical spelling."""
    names = available_policies()
    return [f"{_PREFIX[m]}{p}" for m in (Mode.PRIORITY, Mode.GATE, Mode.ENGINE) for p in names]


def parse_experiment(name: str) -> Experiment:
    """Experiment for `name`; InputError listing the valid names if there is none."""
    upper = name.strip().upper()
    mode = Mode.PRIORITY
    rest = upper
    for m, prefix in ((Mode.GATE, "QUEUE_"), (Mode.ENGINE, "ENGINE_")):
        if upper.startswith(prefix):
            mode, rest = m, upper[len(prefix):]
            break
    try:
        cls = policy_class(rest)
    except InputError:
        raise InputError(
            f"unknown experiment; valid names (case-insensitive): {', '.join(experiment_names())}",
            field="experiment",
            value=name,
        ) from None
    return Experiment(policy=cls.name, mode=mode)
