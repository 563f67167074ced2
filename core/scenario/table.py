"""Reading scenario TOML: a table that knows its field path, and the per-file reading context.

Every scenario component reads its own fields through `Table` (``t.integer("tokens")``), so an
error names the file, the full field path (``clients[2].prompt.tokens``) and the value, and keys a
component did not read are rejected (`Table.close`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from exfairs.errors import ConfigError, InputError
from exfairs.scenario.checks import finite
from exfairs.traces import Trace, TraceColumns, read_trace

MISSING: Any = object()
_T = TypeVar("_T")

# Dataclass field names that the file spells differently.
_TOML_NAMES = {"min_tokens": "min"}


def type_name(v: Any) -> str:
    """How an error message names the TOML type of `v`."""
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(v), type(v).__name__)


class Table:
    """A TOML table being read: tracks the field path, the keys used and the source file."""

    def __init__(self, data: Any, path: str, source: str) -> None:
        if not isinstance(data, dict):
            raise InputError(f"must be a table, got {type_name(data)}",
                             field=path or "(top level)", value=data, source=source)
        self.data: dict[str, Any] = data
        self.path = path
        self.source = source
        self._used: set[str] = set()

    def field(self, key: str) -> str:
        """The full field path of `key` in this table."""
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str, value: Any) -> InputError:
        """An InputError about `key` of this table."""
        return InputError(message, field=self.field(key), value=value, source=self.source)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = MISSING) -> Any:
        """The value of `key` (marked as read); `default` when absent, an error when required."""
        self._used.add(key)
        if key in self.data:
            return self.data[key]
        if default is MISSING:
            raise self.error(key, "required field missing", None)
        return default

    def number(self, key: str, default: Any = MISSING) -> Any:
        v = self.raw(key, default)
        if v is default and key not in self.data:
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.error(key, f"must be a number, got {type_name(v)}", v)
        if not finite(v):
            raise self.error(key, "must be a finite number", v)
        return v

    def integer(self, key: str, default: Any = MISSING) -> Any:
        v = self.number(key, default)
        if v is default and key not in self.data:
            return v
        if isinstance(v, float):
            if not v.is_integer():
                raise self.error(key, "must be a whole number", v)
            v = int(v)
        return v

    def string(self, key: str, default: Any = MISSING, choices: tuple[str, ...] = ()) -> Any:
        v = self.raw(key, default)
        if v is default and key not in self.data:
            return v
        if not isinstance(v, str):
            raise self.error(key, f"must be a string, got {type_name(v)}", v)
        if choices and v not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}", v)
        return v

    def table(self, key: str) -> Table | None:
        v = self.raw(key, None)
        return None if v is None else Table(v, self.field(key), self.source)

    def tables(self, key: str) -> list[Table]:
        v = self.raw(key, [])
        if not isinstance(v, list):
            raise self.error(key, f"must be an array of tables, got {type_name(v)}", v)
        return [Table(item, f"{self.field(key)}[{i}]", self.source) for i, item in enumerate(v)]

    def close(self, allowed: tuple[str, ...] = ()) -> None:
        """Reject keys that were never read."""
        unknown = sorted(set(self.data) - self._used - set(allowed))
        if unknown:
            known = sorted(self._used | set(allowed))
            raise self.error(unknown[0], f"unknown key (expected one of {', '.join(known)})",
                             self.data[unknown[0]])

    def build(self, cls: Callable[..., _T], **kwargs: Any) -> _T:
        """`cls(**kwargs)`, with ConfigError turned into an InputError under this table's path."""
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            name = _TOML_NAMES.get(exc.field or "", exc.field or "")
            fld = self.path if name == "(target)" else self.field(name)
            raise InputError(exc.detail, field=fld or "(top level)", value=exc.value,
                             source=self.source) from None


class ReadContext:
    """What reading needs besides the document: the file's folder (for relative trace paths)."""

    def __init__(self, base_dir: Path | None) -> None:
        self.base_dir = base_dir
        # A file referenced by several clients is read once per scenario.
        self.traces: dict[tuple[str, TraceColumns | None, str | None], Trace] = {}

    def trace(self, t: Table) -> Trace:
        """The trace named by `t`'s ``trace`` key (with its column keys), read once per file."""
        name = t.string("trace")
        cols, fmt = _trace_columns(t)
        key = (name, cols, fmt)
        if key in self.traces:
            return self.traces[key]
        try:
            trace = read_trace(name, columns=cols, fmt=fmt, base_dir=self.base_dir)
        except InputError as exc:
            # Name the scenario field that referenced the trace, and the trace's own complaint.
            where = f" ({exc.source}: field {exc.field!r} = {exc.value!r})" if exc.source else ""
            raise t.error("trace", exc.detail + where, name) from None
        self.traces[key] = trace
        return trace


def _trace_columns(t: Table) -> tuple[TraceColumns | None, Literal["csv", "jsonl"] | None]:
    keys = ("timestamp", "input", "output", "time_unit", "on_zero_output")
    given = {k: t.string(k) for k in keys if t.has(k)}
    fmt = t.string("format", None, choices=("csv", "jsonl"))
    if not given:
        return None, fmt
    return t.build(TraceColumns, **given), fmt
