"""DESIGN.md's layering rule: a package imports only packages to its left in LAYERS."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "mcuflow"
LAYERS = ["errors", "outputs", "ir", "frontends", "examples", "passes", "quant", "ref", "hw",
          "analysis", "memory", "codegen", "toolchain", "bias_correction", "ptq", "agreement",
          "planning",
          "measure", "advisor", "validation", "api", "cli", "nas", "__main__"]
"""DESIGN.md's order, with the top-level modules placed: `examples` builds fixtures with the
frontends, `ptq` and `bias_correction` wire quant and ref together below `api`; `planning`
(a graph planned and analysed for a board), `measure` (a patch stage's overhead on QEMU) and
`advisor` (the fit advisor) wire memory, codegen and toolchain together below `api`;
`validation` (verify over the user's data) runs the toolchain, the reference and LiteRT."""


def _imports(path: Path) -> set[str]:
    """The mcuflow packages and top-level modules `path` imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "mcuflow":
            names = [f"mcuflow.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(name.split(".")[1] for name in names
                     if name.startswith("mcuflow."))
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"
                 or p.parent != PACKAGE)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_one_way(path: Path) -> None:
    layer = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    assert layer in LAYERS, f"place {layer} in LAYERS"
    rank = LAYERS.index(layer)
    wrong = {name for name in _imports(path) - {layer} if LAYERS.index(name) > rank}
    assert not wrong, f"{layer} imports {sorted(wrong)}, which sit above it"
