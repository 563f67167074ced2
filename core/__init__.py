"""ExFairS: experiential fairness for multi-tenant LLM inference serving.

The top-level package holds the shared core that the simulator (`exfairs.sim`), the live backend
(`exfairs.live`), the policies (`exfairs.policies`) and calibration (`exfairs.calibration`) all use:
request and record types, the workload, metrics and result files.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("exfairs")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
