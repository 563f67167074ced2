"""Print how many generated cases each fuzz test ran (recorded in
benchmarks/results/fuzz_cases.md)."""

from __future__ import annotations

import pytest
from fuzz_docs import CASES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not CASES:
        return
    terminalreporter.section("fuzz cases run")
    for name, n in sorted(CASES.items()):
        terminalreporter.write_line(f"{name}: {n}")
    terminalreporter.write_line(f"total: {sum(CASES.values())}")
