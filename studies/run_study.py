"""Run the ExFairS study (issue #8) and write its report: docs/results.md and docs/figures/*.png.

    python studies/run_study.py [--jobs N] [--out DIR] [--force] [--seeds S ...]

Two sweeps run through `exfairs.sim.sweep.run_sweep` (one results file per cell, resumable: a rerun
into the same --out reuses finished cells): the study itself (studies/exfairs-study.toml) and the
"before" sweep (studies/exfairs-before.toml: ExFairS with the parameters that reproduce the rule
as it was before the study's changes). Cells are keyed by their configuration and the package
version, not by the source code: after changing a policy or the simulator, pass --force (or a
fresh --out) so no stale cell is reused.

Every number in the document is computed from the results files by `exfairs.sim.study` (this
script only supplies the repository's paths and the hand-written paragraphs of prose.py, which
state none). Same seeds give the same document, byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from exfairs.sim.study.cli import load_beside
from exfairs.sim.study.cli import main as study_main
from exfairs.sim.study.document import Prose

ROOT = Path(__file__).resolve().parent.parent


def load_prose() -> Prose:
    """The hand-written paragraphs, from prose.py beside this script."""
    prose = load_beside(__file__, "prose.py", "exfairs_study_prose")
    return Prose(setup=prose.SETUP, explanation=prose.EXPLANATION, changes=prose.CHANGES,
                 target=prose.TARGET)


def main(argv: Sequence[str] | None = None) -> int:
    return study_main(argv, root=ROOT, prose_loader=load_prose)


if __name__ == "__main__":
    raise SystemExit(main())
