"""Command-line conventions shared by every ExFairS CLI (`exfairs-sim`, `exfairs-live`,
`exfairs-calibrate`)."""

from __future__ import annotations

import argparse


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
