"""Run the widened ExFairS study (issue 15, items 5-6) and write docs/results-widened.md.

    python studies/run_widened.py [--jobs N] [--out DIR] [--force] [--seeds S ...]

The spec is studies/exfairs-widened.toml (format: `exfairs.sim.study.widened`): the five seed
scenarios plus a noisy neighbour, heavy-tailed outputs and the Azure trace on 16 tenants, each
with the profile's own engine knobs and the capped sequence limit, loads 0.6-1.2, five seeds;
baselines without admission, ExFairS with and without SLO-aware admission, the closest baselines
with the same admission, and an ExFairS score ablation. Every cell is a sweep cell (one results
file each, resumable). Every number in the document is computed from the results files by
`exfairs.sim.study.widened_doc`; the paragraph of widened_prose.py states none. Same seeds give
the same document, byte for byte. docs/results.md (studies/run_study.py) links to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from exfairs.sim.study.cli import load_beside
from exfairs.sim.study.widened_cli import main as widened_main

ROOT = Path(__file__).resolve().parent.parent


def load_explanation() -> str:
    """The hand-written paragraph, from widened_prose.py beside this script."""
    prose = load_beside(__file__, "widened_prose.py", "exfairs_widened_prose")
    return str(prose.EXPLANATION)


def main(argv: Sequence[str] | None = None) -> int:
    return widened_main(argv, root=ROOT, explanation=load_explanation())


if __name__ == "__main__":
    raise SystemExit(main())
