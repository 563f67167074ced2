"""Errors that carry enough context for a one-paragraph message to the user.

Every error caused by user input (a scenario, sweep, profile or trace file, a CLI argument or a
config value) is an `InputError` naming where the bad value was found, the field and the value, so
the CLIs can print it and exit with code 2 instead of showing a traceback.
"""

from __future__ import annotations

from typing import Any


class InputError(ValueError):
    """Bad user input: names the source (file or argument), the field and the offending value."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        value: Any = None,
        source: str | None = None,
    ) -> None:
        self.field = field
        self.value = value
        self.source = source
        self.detail = message
        super().__init__(self._format())

    def _format(self) -> str:
        parts: list[str] = []
        if self.source:
            parts.append(f"{self.source}:")
        if self.field is not None:
            parts.append(f"field '{self.field}' = {self.value!r}:")
        parts.append(self.detail)
        return one_line(" ".join(parts))

    def with_source(self, source: str) -> InputError:
        """A copy of this error that also names the file or argument it came from."""
        return InputError(self.detail, field=self.field, value=self.value, source=source)


class ConfigError(InputError):
    """A configuration object was built with an invalid value (raised by `__post_init__`)."""


def one_line(text: str) -> str:
    """`text` with newlines and other control characters escaped (``\\n``), so that a message
    stays one line."""
    # Field names and values come from user files and may hold newlines or control characters;
    # escaped, every CLI's message stays one paragraph on one line.
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
