"""Calibration: measure real engine steps, fit the step-cost model, read and write profile files."""

from exfairs.calibration.costmodel import CostCoefficients, CostModel
from exfairs.calibration.profile import EngineDefaults, Profile, ProfileMetadata, load_profile

__all__ = [
    "CostCoefficients",
    "CostModel",
    "EngineDefaults",
    "Profile",
    "ProfileMetadata",
    "load_profile",
]
