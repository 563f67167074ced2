"""Every console script answers --version with its name and the package version."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exfairs import __version__


@pytest.mark.parametrize("prog", ["exfairs-sim", "exfairs-live", "exfairs-calibrate"])
def test_version_flag(prog: str) -> None:
    exe = Path(sys.executable).with_name(prog)
    r = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{prog} {__version__}"
