"""How the study's document prints numbers and tables (GitHub markdown; '–' for undefined)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from exfairs.summary import Stat


def fmt(x: float, digits: int, scale: float = 1.0) -> str:
    """A number as the document prints it ('–' when undefined)."""
    return "–" if math.isnan(x) else f"{x * scale:.{digits}f}"


def fmt_stat(st: Stat, digits: int, scale: float = 1.0) -> str:
    """Mean ± 95% CI half-width as the document prints it."""
    if math.isnan(st.mean):
        return "–"
    if math.isnan(st.ci95):
        return fmt(st.mean, digits, scale)
    return f"{fmt(st.mean, digits, scale)} ± {fmt(st.ci95, digits, scale)}"


def fmt_diff(st: Stat, digits: int, scale: float = 1.0) -> str:
    """A signed difference ± its 95% CI half-width ('−' for negative; '–' undefined)."""
    if math.isnan(st.mean):
        return "–"
    sign = "+" if st.mean * scale >= 0 else "−"
    body = f"{sign}{abs(st.mean * scale):.{digits}f}"
    return body if math.isnan(st.ci95) else f"{body} ± {st.ci95 * scale:.{digits}f}"


def fmt_pct(x: float, digits: int = 2) -> str:
    """A signed fraction as a percentage (0.0123 → '+1.23%')."""
    if math.isnan(x):
        return "–"
    sign = "+" if x >= 0 else "−"
    return f"{sign}{abs(x) * 100:.{digits}f}%"


def md_table(head: Sequence[str], body: Sequence[Sequence[str]], align: str = "") -> str:
    """A GitHub markdown table; `align` is one letter per column (l or r; default l then r)."""
    al = align or ("l" + "r" * (len(head) - 1))
    sep = ["---:" if a == "r" else ":---" for a in al]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def exp_label(exp: str) -> str:
    """An experiment name as the document prints it (code span)."""
    return f"`{exp}`"
