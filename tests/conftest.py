"""Shared pytest configuration: hypothesis profiles and test factories."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# CI draws the same examples on every run (derandomize): a landing must not hinge on which random
# examples a run happened to draw. `HYPOTHESIS_PROFILE=explore` draws fresh ones, for a developer
# hunting new failures (fix what it finds, then the derandomized run keeps the case covered).
settings.register_profile(
    "ci", max_examples=60, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "explore", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
