"""The machine state a live validation is taken in (issue 12, item 5): its load before the run,
and the cores the engine may use. A run on a busy machine is not a reference (two live runs of
one seed differed by 12–38 % when another job shared the cores), so `validate` refuses one."""

from __future__ import annotations

import os

from exfairs.errors import InputError


def parse_cpus(text: str) -> set[int]:
    """``"0,1"`` or ``"0-3"`` → core numbers. InputError naming --cpus on bad input."""
    out: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            out.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise InputError("expected core numbers like 0,1 or 0-3", field="--cpus",
                         value=text) from None
    if not out or min(out) < 0:
        raise InputError("expected core numbers like 0,1 or 0-3", field="--cpus", value=text)
    return out


def check_machine(max_load: float, allow_busy: bool, cpus: str | None) -> list[str]:
    """Pin this process (and so the engine processes it spawns) to `cpus` (default: the cores it
    may use now), and check the 1-minute load average against `max_load`. Returns report notes;
    raises InputError when the machine is busy and `allow_busy` is False."""
    notes: list[str] = []
    if hasattr(os, "sched_setaffinity"):
        allowed = os.sched_getaffinity(0)
        want = parse_cpus(cpus) if cpus is not None else allowed
        if not want <= allowed:
            raise InputError(f"cores not available to this process (it may use "
                             f"{sorted(allowed)})", field="--cpus", value=cpus)
        os.sched_setaffinity(0, want)
        notes.append(f"engine pinned to cores {','.join(map(str, sorted(want)))}")
    load1, load5, _ = os.getloadavg()
    notes.append(f"load average before the run: {load1:.2f} (1 min), {load5:.2f} (5 min); "
                 f"limit {max_load:g}")
    if load1 > max_load:
        if not allow_busy:
            raise InputError(f"the machine is busy (1-minute load average {load1:.2f} > "
                             f"{max_load:g}): a live run now is no reference; wait, or pass "
                             "--allow-busy (flagged in the report)", field="--max-load",
                             value=max_load)
        notes.append(f"BUSY MACHINE: load average {load1:.2f} > {max_load:g} (--allow-busy); "
                     "live figures are not a reference")
    return notes
