"""Valid base documents, single-fault mutations that must make them invalid, serialisers, and
the checks every rejected input must pass (exit 2, a one-paragraph message naming file, field and
value, no traceback, no output files)."""

from __future__ import annotations

import copy
import io
import json
import math
import re
from collections import Counter
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from exfairs.sim.cli import main

#: Generated cases per fuzz test, printed at the end of the run (tests/fuzz/conftest.py).
CASES: Counter[str] = Counter()

# -- serialisers -------------------------------------------------------------------------------


def _toml_key(k: str) -> str:
    return json.dumps(k)


def toml_value(v: Any) -> str:
    """`v` as a TOML value (inline tables and arrays on one line)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def to_toml(doc: dict[str, Any]) -> str:
    """A TOML document: scalars and inline tables first, then arrays of tables as [[k]]."""
    lines: list[str] = []
    later: list[tuple[str, list[dict[str, Any]]]] = []
    for k, v in doc.items():
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            later.append((k, v))
        else:
            lines.append(f"{_toml_key(k)} = {toml_value(v)}")
    for k, items in later:
        for item in items:
            lines.append("")
            lines.append(f"[[{_toml_key(k)}]]")
            lines += [f"{_toml_key(ik)} = {toml_value(iv)}" for ik, iv in item.items()]
    return "\n".join(lines) + "\n"


# -- document surgery --------------------------------------------------------------------------

Path_ = tuple[Any, ...]


def get(doc: Any, path: Path_) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def set_at(doc: Any, path: Path_, value: Any) -> Any:
    out = copy.deepcopy(doc)
    get(out, path[:-1])[path[-1]] = value
    return out


def delete_at(doc: Any, path: Path_) -> Any:
    out = copy.deepcopy(doc)
    del get(out, path[:-1])[path[-1]]
    return out


# -- values ------------------------------------------------------------------------------------

#: Numbers no count, rate, duration or factor may take (beyond-float ints included: TOML and
#: JSON integers are unbounded when parsed by Python).
BAD_NUMBERS: list[Any] = [-1, -0.5, -1e-9, math.nan, math.inf, -math.inf, 1e300, 10**30,
                          2**64, 10**400]
NOT_NUMBERS: st.SearchStrategy[Any] = st.one_of(
    st.text(max_size=8), st.booleans(), st.just([]), st.just({}),
    st.lists(st.integers(), min_size=1, max_size=2))
NOT_STRINGS: st.SearchStrategy[Any] = st.one_of(
    st.integers(), st.floats(allow_nan=True), st.booleans(), st.just([]), st.just({}))
NOT_TABLES = st.one_of(st.text(max_size=8), st.integers(), st.booleans(),
                       st.lists(st.integers(), max_size=2))
#: Bytes that are never valid UTF-8.
BAD_UTF8 = st.sampled_from([b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80",
                            b"\xf8\x88\x80\x80\x80", b"\xe2\x82"])
EMPTY_TEXTS = st.sampled_from(["", " ", "\n\n", "\t \r\n", "# only a comment\n"])


def insert_bytes(data: bytes, where: float, junk: bytes) -> bytes:
    i = int(where * len(data))
    return data[:i] + junk + data[i:]


def truncate_toml(text: str, pick: float, cut: float) -> str:
    """`text` cut inside one of its bracketed or quoted values (after the opening delimiter,
    before the closing one): always invalid TOML, as a file cut off mid-write is."""
    spots: list[tuple[int, int]] = []
    offset = 0
    for line in text.splitlines(keepends=True):
        m = re.search(r"= ([\"\[{])", line)
        body = line.rstrip("\n")
        if m and len(body) - m.end() >= 1:
            spots.append((offset + m.end(), offset + len(body) - 1))
        offset += len(line)
    lo, hi = spots[int(pick * len(spots)) % len(spots)]
    return text[: min(hi, lo + int(cut * (hi - lo + 1)))]  # text[hi] closes the value


# -- the checks --------------------------------------------------------------------------------


def run_cli(argv: list[str]) -> tuple[int, str]:
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        code = main(argv)
    return code, err.getvalue()


def assert_rejected(argv: list[str], out_dir: Path, names: list[str]) -> str:
    """Run the CLI on bad input and check the contract; return the error message.

    `names`: strings of which at least one must appear in the message (the file at fault, or
    the bad value where a file refers to another file that does not exist)."""
    code, err = run_cli(argv)
    assert code == 2, f"exit {code}, stderr:\n{err}"
    assert "Traceback" not in err, err
    assert "exfairs-sim: error:" in err, err
    msg = err[err.index("exfairs-sim: error:"):].strip()
    assert "\n\n" not in msg, f"not one paragraph:\n{msg}"
    assert re.search(r"field '.*?' = ", msg), f"no field and value named:\n{msg}"
    assert any(n in msg for n in names), f"none of {names} named:\n{msg}"
    leftover = sorted(out_dir.rglob("*")) if out_dir.exists() else []
    assert leftover == [], f"output left behind: {leftover}"
    return msg
