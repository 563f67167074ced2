"""Imports every built-in policy module so their `@register_policy` decorators run."""

from exfairs.policies import fcfs  # noqa: F401
