"""One writer per output directory: an exclusive `flock` on a lock file inside it.

Two sweeps (or runs) writing into one directory at once could both decide a cell is missing and
both write it, and would delete each other's temporary files when cleaning up after a crash. The
second one is refused instead, with an InputError naming the directory and the holder's pid. The
lock belongs to the open file, so the kernel releases it when its holder dies, even by SIGKILL: a
stale lock file left behind is simply locked again by the next run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from exfairs.errors import InputError

#: Name of the lock file inside a locked directory (removed when the holder finishes cleanly).
LOCK_NAME = ".exfairs.lock"


def _holder(lock_path: Path) -> str:
    try:
        text = lock_path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return "unknown pid"
    return f"pid {text}" if text.isdigit() else "unknown pid"


@contextlib.contextmanager
def locked_dir(out_dir: Path, *, field: str = "--out") -> Iterator[Path]:
    """Create `out_dir` (with parents) and hold its lock for the body; yields the directory.

    InputError naming `field` when another process holds the lock (the message names its pid) or
    the directory cannot be created. The lock file is removed on the way out, while still locked,
    so a process that opened the old file before the removal sees it is stale and retries.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output directory: {exc.strerror or exc}",
                         field=field, value=str(out_dir)) from None
    lock_path = out_dir / LOCK_NAME
    fd = _acquire(lock_path, out_dir, field)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        yield out_dir
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        os.close(fd)


def _acquire(lock_path: Path, out_dir: Path, field: str) -> int:
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise InputError(f"cannot create the lock file {LOCK_NAME}: {exc.strerror or exc}",
                             field=field, value=str(out_dir)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise InputError(f"cannot lock the output directory: {exc.strerror or exc}",
                                 field=field, value=str(out_dir)) from None
            raise InputError(
                f"another exfairs process ({_holder(lock_path)}) is writing into this "
                "directory; wait for it to finish or choose another output directory",
                field=field, value=str(out_dir)) from None
        # The holder before us may have removed the file between our open and our lock: then
        # we hold a lock on a file nobody else will see. Retry on the file now at the path.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
