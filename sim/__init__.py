"""The simulator: a SimPy model of a vLLM-V1 engine driven by the scheduling policies.

`simulate` (in `exfairs.sim.runner`) runs one workload under one experiment; `EngineConfig`
(in `exfairs.sim.config`) holds the engine knobs under vLLM's names.
"""

from exfairs.sim.config import EngineConfig
from exfairs.sim.runner import SimResult, simulate

__all__ = ["EngineConfig", "SimResult", "simulate"]
