"""Sweep progress: reused cells are reported once and kept out of the ETA; plain lines off a TTY."""

from __future__ import annotations

import io
from types import SimpleNamespace

from exfairs.progress import CellProgress


def test_finished_sweep_prints_one_line() -> None:
    out = io.StringIO()
    p = CellProgress("sweep", out, tty=False)
    for _ in range(63):  # run_sweep reports every reused cell with done = 63
        p(63, 63, SimpleNamespace(skipped=True))
    lines = out.getvalue().splitlines()
    assert lines == [lines[0]] and "63/63 cells, 63 reused" in lines[0] and "done" in lines[0]


def test_plain_lines_every_tenth_and_eta_from_computed_cells_only() -> None:
    out = io.StringIO()
    p = CellProgress("sweep", out, tty=False, every_s=1e9)
    for _ in range(50):
        p(50, 100, SimpleNamespace(skipped=True))
    assert out.getvalue() == ""  # nothing yet: reused cells are reported with the first work
    for k in range(50):
        p(51 + k, 100, SimpleNamespace(skipped=False))
    lines = out.getvalue().splitlines()
    assert 5 <= len(lines) <= 7 and lines[-1].startswith("sweep: 100/100 cells, 50 reused")
    assert "ETA" in lines[0]


def test_tty_uses_one_updating_tqdm_line() -> None:
    out = io.StringIO()
    p = CellProgress("sweep", out, tty=True)
    for _ in range(3):
        p(3, 10, SimpleNamespace(skipped=True))
    for k in range(7):
        p(4 + k, 10, SimpleNamespace(skipped=False))
    text = out.getvalue()
    assert "\r" in text and text.count("\n") <= 1 and "10/10" in text
