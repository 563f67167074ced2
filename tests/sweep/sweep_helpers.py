"""Shared pieces of the sweep tests: a small, fast scenario and result-file comparison."""

from __future__ import annotations

import re
from pathlib import Path

#: Two clients, 12 s of arrivals at a fraction of capacity: a cell simulates in well under a
#: second, so resume and interrupt tests can run many cells.
TINY_SCENARIO = """\
name = "tiny"
description = "two clients, short horizon (tests)"
duration_s = 12
warmup_s = 1
cooldown_s = 1
rate_basis = "capacity"

[[clients]]
name = "a"
prompt_class = "short"
rate_per_min = 1
slo = { e2e = { scale = 10 } }

[[clients]]
name = "b"
prompt_class = "short"
rate_per_min = 1
arrival = { process = "gamma", cv2 = 4 }
slo = { e2e = { scale = 10 } }
"""

# RunInfo fields that depend on when and where a cell ran, not on what it computed.
_WALL_CLOCK = re.compile(
    rb'"(created_utc|git_revision)":"[^"]*"|"wall_time_s":[-+0-9.eE]+|"wall_time_s":"[a-z]+"')


def write_tiny_scenario(folder: Path) -> Path:
    """The tiny scenario as a file in `folder`."""
    path = folder / "tiny.toml"
    path.write_text(TINY_SCENARIO, encoding="utf-8")
    return path


def comparable_bytes(path: Path) -> bytes:
    """A results file's bytes with the wall-clock fields of RunInfo blanked, nothing else."""
    data = path.read_bytes()
    blanked, n = _WALL_CLOCK.subn(lambda m: m.group(0).split(b":", 1)[0] + b":_", data)
    assert n == 3, f"{path}: expected the 3 wall-clock fields once each, found {n}"
    return blanked


def result_files(folder: Path) -> list[Path]:
    """The results files of a sweep directory (cell files, not summaries), sorted by name."""
    return sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))


def leftovers(folder: Path) -> list[Path]:
    """Temporary files an atomic writer could leave behind (hidden `.NAME.*` files)."""
    return sorted(p for p in folder.rglob(".*") if p.is_file())
