"""The resume index of a sweep directory: what a rerun needs to know about finished cells without
opening their results files.

``resume-index.jsonl`` holds one JSON line per finished cell: its results file's name, the size
and modification time (ns) of the JSON and of the Parquet records, and the result without records
or policy samples (what the summary needs). A rerun trusts an entry only while both files still
have exactly that size and time; anything else (an edited, truncated or replaced file, a missing
entry, a torn last line after a crash) falls back to reading the file. Only the process that holds
the directory's lock writes it (entries are appended as cells finish; `rewrite` compacts it).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from exfairs.atomic import atomic_write_text
from exfairs.errors import InputError
from exfairs.results import RunResult, decode_run, encode_run, records_path

_log = logging.getLogger(__name__)

INDEX_NAME = "resume-index.jsonl"


def _stat(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


class ResumeIndex:
    """The index of one sweep directory (load it with `ResumeIndex.load`)."""

    def __init__(self, out_dir: Path, entries: dict[str, dict[str, Any]]) -> None:
        self.out_dir = out_dir
        self._entries = entries

    @classmethod
    def load(cls, out_dir: Path) -> ResumeIndex:
        """The index of `out_dir` (empty when there is none; unreadable lines are skipped)."""
        entries: dict[str, dict[str, Any]] = {}
        try:
            text = (out_dir / INDEX_NAME).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return cls(out_dir, entries)
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line torn by a crash: that cell is checked the slow way
            if isinstance(entry, dict) and isinstance(entry.get("file"), str):
                entries[entry["file"]] = entry
        return cls(out_dir, entries)

    def lookup(self, path: Path) -> RunResult | None:
        """The light result (no records, no policy samples) of the results file `path` when the
        index vouches for it, else None."""
        entry = self._entries.get(path.name)
        if entry is None:
            return None
        if entry.get("json") != _stat(path) or entry.get("parquet") != _stat(records_path(path)):
            return None
        try:
            return decode_run(entry.get("run"), f"{self.out_dir / INDEX_NAME}:{path.name}")
        except InputError:
            return None

    def _entry(self, path: Path, light: RunResult) -> dict[str, Any] | None:
        js, pq = _stat(path), _stat(records_path(path))
        if js is None or pq is None:
            return None
        return {"file": path.name, "json": js, "parquet": pq, "run": encode_run(light)}

    def record(self, path: Path, light: RunResult) -> None:
        """Add (append) the entry of a results file just written or verified."""
        entry = self._entry(path, light)
        if entry is None:
            return
        self._entries[path.name] = entry
        try:
            with (self.out_dir / INDEX_NAME).open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry, separators=(",", ":"), allow_nan=False) + "\n")
        except OSError as exc:  # the index is an optimisation: the sweep goes on without it
            _log.warning("cannot update %s: %s", self.out_dir / INDEX_NAME, exc)

    def rewrite(self, names: Iterable[str]) -> None:
        """Rewrite the index atomically with the entries of `names` only (drops stale ones)."""
        keep = [self._entries[n] for n in names if n in self._entries]
        text = "".join(json.dumps(e, separators=(",", ":"), allow_nan=False) + "\n"
                       for e in keep)
        try:
            atomic_write_text(self.out_dir / INDEX_NAME, text)
        except (OSError, InputError) as exc:
            _log.warning("cannot rewrite %s: %s", self.out_dir / INDEX_NAME, exc)


def index_path(out_dir: str | os.PathLike[str]) -> Path:
    """Where the resume index of `out_dir` lives."""
    return Path(out_dir) / INDEX_NAME
