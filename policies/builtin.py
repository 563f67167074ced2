"""Imports every built-in policy module so their `@register_policy` decorators run."""

from exfairs.policies import edf, exfairs_policy, fcfs, round_robin, vtc  # noqa: F401
