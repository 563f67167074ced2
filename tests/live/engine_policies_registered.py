"""Imported inside the engine process (`RunSpec.policy_modules`): registers the test policies."""

from engine_policies import FixedScores, RaisesAfter

from exfairs.policies.registry import register_policy

register_policy("TEST_FIXED")(FixedScores)
register_policy("TEST_RAISES")(RaisesAfter)
