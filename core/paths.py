"""Checks on the files a command reads and the places it writes, made before any work starts.

Input files are read only when they are regular files, and at most `MAX_INPUT_BYTES`: a device
(``/dev/zero``), a FIFO or a runaway file gives an InputError instead of a read without end.
Output places are refused, with an InputError naming the field and the path, when they are a
file, lie under a file, sit on a kernel pseudo file system (``/proc``, ``/sys``, ``/dev``) or
cannot be written (probed by creating and removing a file, which also catches read-only mounts
and works for root, whom permission bits do not stop).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from exfairs.errors import InputError

#: Largest scenario, sweep, profile or measurements file read (bytes). Real ones are kilobytes
#: (a scenario of 10,000 clients is about 1 MB); the bound only stops endless or absurd reads.
MAX_INPUT_BYTES = 64 * 2**20

# Kernel pseudo file systems: nothing a run writes belongs there, and writes either fail
# confusingly or (as root, for /dev) replace device nodes.
_PSEUDO_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))


def read_input_bytes(path: str | os.PathLike[str], *, field: str, what: str,
                     limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them.

    InputError naming `field` and the path when it is missing, not a regular file (a directory,
    device, FIFO or socket: those are never opened, as opening a FIFO can block), larger than
    `limit`, or unreadable. `what` names the kind of file in the message ("scenario file").
    """
    p = os.fspath(path)
    check_input_file(p, field=field, what=what, limit=limit)
    try:
        with open(p, "rb") as f:
            # One byte more than the limit: a file that grows (or reports size 0, as /proc files
            # do) is still caught.
            data = f.read(limit + 1)
    except OSError as exc:
        raise InputError(f"cannot read {what}: {exc.strerror or exc}", field=field,
                         value=p) from None
    if len(data) > limit:
        raise InputError(f"{what} is over the limit of {limit} bytes", field=field, value=p)
    return data


def check_input_file(path: str | os.PathLike[str], *, field: str, what: str,
                     limit: int = MAX_INPUT_BYTES) -> None:
    """The checks of `read_input_bytes` that need no reading: `path` exists, is a regular file
    and is at most `limit` bytes; InputError naming `field` and the path otherwise."""
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise InputError(f"no such {what}", field=field, value=p) from None
    except OSError as exc:
        raise InputError(f"cannot read {what}: {exc.strerror or exc}", field=field,
                         value=p) from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"is a directory, not a {what}", field=field, value=p)
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"not a regular file (a device, FIFO or socket); give a {what}",
                         field=field, value=p)
    if st.st_size > limit:
        raise InputError(f"{what} is {st.st_size} bytes, over the limit of {limit} bytes",
                         field=field, value=p)


def _under_pseudo_fs(p: Path) -> Path | None:
    real = p.resolve(strict=False)
    for root in _PSEUDO_ROOTS:
        if real == root or root in real.parents:
            return root
    return None


def _nearest_existing(p: Path) -> Path:
    cur = p
    while not os.path.lexists(cur) and cur != cur.parent:
        cur = cur.parent
    return cur


def check_output_dir(path: str | os.PathLike[str], *, field: str = "--out") -> Path:
    """`path` as an absolute Path, after checking that a directory can be created or written there.

    Nothing is created: the nearest existing ancestor must be a directory that accepts a new file
    (a probe file is created in it and removed at once). InputError naming `field` and the path
    when it is a file, lies under a file, is under /proc, /sys or /dev, or cannot be written.
    """
    p = Path(os.path.abspath(os.fspath(path)))
    root = _under_pseudo_fs(p)
    if root is not None:
        raise InputError(f"is under {root}, a kernel pseudo file system; choose a directory on "
                         "a real disk", field=field, value=str(path))
    existing = _nearest_existing(p)
    if not existing.is_dir():
        if existing == p:
            raise InputError("exists and is not a directory", field=field, value=str(path))
        raise InputError(f"the path goes through {existing}, which is not a directory",
                         field=field, value=str(path))
    try:
        fd, probe = tempfile.mkstemp(prefix=".exfairs-probe.", dir=existing)
    except OSError as exc:
        raise InputError(f"cannot write in {existing}: {exc.strerror or exc}", field=field,
                         value=str(path)) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return p


def check_output_file(path: str | os.PathLike[str], *, field: str) -> Path:
    """`path` as an absolute Path, after checking that a file can be written there atomically.

    InputError naming `field` and the path when it is a directory or another non-regular file
    (writing would replace it), or when its folder fails `check_output_dir`.
    """
    p = Path(os.path.abspath(os.fspath(path)))
    try:
        check_output_dir(p.parent, field=field)
    except InputError as exc:  # name the file given, not its folder
        raise InputError(exc.detail, field=field, value=str(path)) from None
    if os.path.lexists(p):
        if p.is_dir():
            raise InputError("is a directory; give a file path", field=field, value=str(path))
        if not p.is_file():
            raise InputError("exists and is not a regular file (writing would replace it)",
                             field=field, value=str(path))
    return p



def check_results_dir(path: str | os.PathLike[str], *, field: str = "--out",
                      files: tuple[str, ...] = ("summary.csv",),
                      dirs: tuple[str, ...] = ("plots",)) -> Path:
    """`check_output_dir` for a results directory, plus the `files` and `dirs` a command will
    write inside it (a ``summary.csv`` that is a directory, a ``plots`` that is a file)."""
    p = check_output_dir(path, field=field)
    for name in files:
        check_output_file(p / name, field=field)
    for name in dirs:
        check_output_dir(p / name, field=field)
    return p


def check_named_input(name: str, *, suffix: str, field: str, what: str) -> None:
    """For an argument that is a bundled name or a file path (a profile: ``a100-llama2-7b`` or
    ``my.json``): when it is a path (ends in `suffix` or exists), `check_input_file` it."""
    if name.endswith(suffix) or os.path.lexists(name):
        check_input_file(name, field=field, what=what)
