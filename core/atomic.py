"""Atomic file writes: a reader sees the old file or the complete new one, never a partial one.

Every temporary file is named ``.NAME.XXXXXXXX.tmp`` beside its destination NAME, so that a
process killed mid-write (SIGKILL, power loss) leaves only files `remove_stale_temps` recognises.
A write that the file system refuses raises InputError naming the destination, not a traceback.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from exfairs.errors import InputError

_FILE_MODE = 0o644
# mkstemp's random part is 8 characters of [a-z0-9_].
_TEMP_RE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def _write_error(dest: Path, exc: OSError) -> InputError:
    return InputError(f"cannot write: {exc.strerror or exc}", field="output file",
                      value=str(dest))


def _make_temp(dest: Path) -> tuple[int, str]:
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as exc:
        raise _write_error(dest, exc) from None
    # mkstemp creates 0600; results and profiles are meant to be shared like any output file.
    os.chmod(tmp, _FILE_MODE)
    return fd, tmp


def _commit(tmp: str, dest: Path) -> None:
    try:
        os.replace(tmp, dest)
    except OSError as exc:  # e.g. the destination is a directory
        raise _write_error(dest, exc) from None


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[IO[str]]:
    """Open a temporary text file (UTF-8) beside `path`; on a clean exit, flush, fsync and rename
    it over `path` (os.replace). On an exception the temporary file is removed and `path` is
    untouched. A refused write (no such folder, not writable, a directory at `path`, disk full)
    raises InputError naming `path`."""
    dest = Path(path)
    fd, tmp = _make_temp(dest)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            yield f
            try:
                f.flush()
                os.fsync(f.fileno())
            except OSError as exc:
                raise _write_error(dest, exc) from None
        _commit(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_writer(path) as f:
        f.write(text)


def atomic_temp_path(path: str | os.PathLike[str]) -> contextlib.AbstractContextManager[Path]:
    """A context manager yielding a temporary path beside `path` for writers that need a file name
    (e.g. matplotlib's savefig, told the format explicitly: the name ends in ``.tmp``); renamed
    over `path` on a clean exit, removed on an exception."""
    return _temp_path(Path(path))


@contextlib.contextmanager
def _temp_path(dest: Path) -> Iterator[Path]:
    fd, tmp = _make_temp(dest)
    os.close(fd)
    try:
        yield Path(tmp)
        _commit(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def is_temp_name(name: str) -> bool:
    """True for the name of a temporary file made by this module."""
    return _TEMP_RE.match(name) is not None


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove the temporary files of this module under `folder` (recursively), as left by a
    writer that was killed; returns what was removed. Call it only while holding the folder's
    lock (exfairs.dirlock), or a live writer's temporary file could be removed."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for p in sorted(folder.rglob(".*.tmp")):
        if is_temp_name(p.name) and p.is_file() and not p.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed
