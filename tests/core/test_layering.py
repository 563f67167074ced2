"""The core (`exfairs`, folder core/) imports neither the simulator, the live backend nor
calibration: those build on the core, never the other way (issue 13, item 4)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "core"
FORBIDDEN = ("exfairs.sim", "exfairs.live", "exfairs.calibration", "exfairs.policies")
# identity.py hashes a third-party policy's own source file for cache keys; it needs the policy
# registry to find that file (a lazy import inside source_identity).
ALLOWED = {("identity.py", "exfairs.policies.registry")}


def _imports(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            # `from exfairs import sim` names the subpackage as an imported name.
            names.extend(f"{node.module}.{a.name}" for a in node.names)
    return names


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_imports_no_upper_layer(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    rel = str(path.relative_to(CORE))
    bad = [n for n in _imports(tree) if _forbidden(n)
           and not any(rel == r and (n == m or n.startswith(m + ".")) for r, m in ALLOWED)]
    assert not bad, f"core/{rel} imports {bad}: move the code to sim/, live/ or calibration/"


def test_the_check_catches_a_forbidden_import() -> None:
    tree = ast.parse("def f():\n    from exfairs.sim.runner import simulate\n")
    assert [n for n in _imports(tree) if _forbidden(n)]
