"""Progress of a sweep for the command lines: one updating tqdm line on a terminal, plain periodic
lines in CI logs and files.

Cells reused from an earlier run arrive first and all at once; they are counted as done but not
in the rate, so the ETA reflects only cells computed now, and a fully reused sweep prints one
line, not one per cell.
"""

from __future__ import annotations

import time
from typing import IO, Any


class CellProgress:
    """A `run_sweep` progress callback ``(done, total, outcome)`` writing to `stream`.

    On a terminal (`tty` None: ``stream.isatty()``) a tqdm bar; otherwise a line at most every
    `every_s` seconds and at each tenth of the cells, and always at the end.
    """

    def __init__(self, label: str, stream: IO[str], *, tty: bool | None = None,
                 every_s: float = 30.0) -> None:
        self.label = label
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.every_s = every_s
        self.reused = 0
        self._bar: Any = None
        self._t0 = time.perf_counter()
        self._last_line = -1.0
        self._last_tenth = -1

    def __call__(self, done: int, total: int, outcome: Any) -> None:
        if getattr(outcome, "skipped", False):
            # `run_sweep` reports every reused cell with `done` = all of them: report once, when
            # work starts or, if nothing is left, now.
            if self.reused:
                return
            self.reused = done
            if done < total:
                return
        now = time.perf_counter()
        if self.tty:
            self._tty(done, total)
        else:
            self._plain(done, total, now)

    def _tty(self, done: int, total: int) -> None:
        if self._bar is None:
            from tqdm import tqdm

            # `initial` keeps reused cells out of tqdm's rate and ETA.
            self._bar = tqdm(total=total, initial=done, desc=self.label, unit="cell",
                             file=self.stream, dynamic_ncols=True, leave=True)
            if self.reused:
                self._bar.set_postfix_str(f"{self.reused} reused", refresh=False)
        else:
            self._bar.update(done - self._bar.n)
        if done >= total:
            self._bar.close()

    def _plain(self, done: int, total: int, now: float) -> None:
        tenth = 10 * done // max(total, 1)
        due = (now - self._last_line >= self.every_s or tenth > self._last_tenth
               or done >= total)
        if not due:
            return
        self._last_line, self._last_tenth = now, tenth
        elapsed = now - self._t0
        computed = done - self.reused
        left = total - done
        eta = (f"ETA {elapsed / computed * left:.0f}s" if computed > 0 and left
               else ("done" if not left else "ETA ?"))
        reused = f", {self.reused} reused" if self.reused else ""
        self.stream.write(f"{self.label}: {done}/{total} cells{reused}, {elapsed:.1f}s, "
                          f"{eta}\n")
        self.stream.flush()
