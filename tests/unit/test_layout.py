"""The imports run one way: model -> configs -> components -> the program and tools. A module may import
from its own layer and the layers below it, never from one above (README: How it is built)."""

from __future__ import annotations

import ast
import gc
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = {
    "model",
    "configs",
    "components",
    "policy",
    "tools",
    "harness",
    "e2e",
    "backup",
    "scaler",
    "cron",
    "tests",
}
# What each layer may import of the project (besides itself). configs may read the backup tool's own
# config model, which it renders a file for, and the scaler's policy, which the Kubernetes target's
# cron triggers reproduce.
MAY_IMPORT = {
    "model": set(),
    "configs": {"model", "backup", "scaler"},
    "components": {"model", "configs"},
}


def parse(path: Path) -> ast.Module:
    """ast.parse with the cyclic collector paused. A collection inside it may finalise a future that an
    earlier test's failed Pulumi run left behind; the future logs its unretrieved exception, Python 3.11
    lays out that traceback with ast.parse, and the nested parse breaks the outer one (SystemError: AST
    constructor recursion depth mismatch)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(path.read_text(), filename=str(path))
    finally:
        if collecting:
            gc.enable()


def project_imports(path: Path) -> set[str]:
    tree = parse(path)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {name.split(".")[0] for name in names} & PROJECT_PACKAGES


@pytest.mark.parametrize("layer", sorted(MAY_IMPORT))
def test_a_layer_imports_only_from_below(layer: str) -> None:
    modules = sorted((ROOT / layer).rglob("*.py"))
    assert modules
    for module in modules:
        upward = project_imports(module) - MAY_IMPORT[layer] - {layer}
        assert not upward, f"{module.relative_to(ROOT)} imports {sorted(upward)}"
