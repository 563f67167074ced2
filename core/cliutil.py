"""What every ExFairS command line shares: one way of turning failures into exit codes, and the
flags every CLI spells the same way (`add_version_flag`, `add_plot_format_flag`).

`run_command` calls a command's body and maps what escapes it to one line on stderr and an exit
code: bad input (InputError) 2, Ctrl-C 130, an I/O failure the up-front checks could not foresee
(a disk filling up mid-run) or memory running out 1. Programming errors keep their traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping

from exfairs.errors import InputError, one_line

#: Exit codes shared by the CLIs.
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def error_line(prog: str, message: object) -> None:
    """Write ``PROG: error: MESSAGE`` as one line on stderr."""
    sys.stderr.write(f"{prog}: error: {one_line(str(message))}\n")


def run_command(
    prog: str,
    body: Callable[[], int],
    *,
    interrupted: str = "interrupted",
    also: Mapping[type[BaseException], int] | None = None,
) -> int:
    """`body()`'s exit code, or the code for what it raised (see the module docstring).

    `interrupted` is said on Ctrl-C (e.g. what was kept); `also` maps further exception types
    (checked after InputError, in order) to exit codes, each reported as one error line.
    """
    extra = dict(also or {})
    try:
        return body()
    except InputError as exc:
        error_line(prog, exc)
        return EXIT_BAD_INPUT
    except tuple(extra) as exc:
        error_line(prog, exc)
        return next(code for kind, code in extra.items() if isinstance(exc, kind))
    except MemoryError:
        error_line(prog, "out of memory: the run needs more memory than this machine has; "
                         "use fewer clients, a shorter duration or fewer parallel jobs")
        return EXIT_FAILED
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        error_line(prog, f"{exc.strerror or exc}{where}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        sys.stderr.write(f"\n{prog}: {one_line(interrupted)}\n")
        return EXIT_INTERRUPTED

def add_version_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--version``: prints ``<prog> <package version>`` and exits 0."""
    from exfairs import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")


def _formats(text: str) -> tuple[str, ...]:
    from exfairs.plots import check_formats

    try:
        return check_formats([f for f in text.split(",") if f.strip()])
    except ValueError as exc:  # InputError: argparse reports it as a usage error (exit 2)
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_plot_format_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--plot-format png,svg,pdf`` (dest ``plot_formats``; None = the plots' default)."""
    parser.add_argument("--plot-format", dest="plot_formats", type=_formats, default=None,
                        metavar="FMT[,FMT]",
                        help="figure formats, comma-separated, from png, svg, pdf "
                             "(default png,svg)")
