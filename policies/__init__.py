"""Scheduling policies behind one interface, driven identically by the simulator and the live
backend.

A policy keeps per-client accounting (fed by hooks as requests arrive and tokens are served) and
ranks clients; `PolicyQueue` turns that ranking into "which queued request goes next". Nothing here
reads a clock or imports SimPy or vLLM: time is always passed in, in seconds.
"""

from exfairs.policies.base import Policy
from exfairs.policies.experiments import Experiment, Mode, experiment_names, parse_experiment
from exfairs.policies.queue import PolicyQueue
from exfairs.policies.registry import available_policies, make_policy, register_policy

__all__ = [
    "Experiment",
    "Mode",
    "Policy",
    "PolicyQueue",
    "available_policies",
    "experiment_names",
    "make_policy",
    "parse_experiment",
    "register_policy",
]
