"""The package's shape: import-linter's contracts hold, package inits import nothing, every module imports alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "edgeaug"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imported(name: str, path: Path) -> Set[str]:
    """edgeaug modules that ``name`` imports anywhere in its file (functions included), resolved to modules."""
    out = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: List[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for t in targets:
            while t and t not in MODULES:  # "pkg.mod.Name" -> "pkg.mod"
                t = t.rpartition(".")[0]
            if t.startswith("edgeaug") and t != name:
                out.add(t)
    return out


GRAPH: Dict[str, Set[str]] = {n: imported(n, p) for n, p in MODULES.items()}


def test_import_contracts_hold():
    """The layers, the device boundary and acyclic siblings of pyproject's [tool.importlinter] (import-linter)."""
    lint = Path(sys.executable).with_name("lint-imports")
    r = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


def test_package_inits_import_nothing_of_ours():
    # Package __init__ files import nothing of ours, so a module's import of a sibling
    # never runs another module's code first.
    assert {n: sorted(GRAPH[n]) for n, p in MODULES.items() if p.name == "__init__.py" and GRAPH[n]} == {}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports_on_its_own(name):
    r = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_every_package_ships_in_the_wheel():
    """pyproject lists packages explicitly; a new subpackage left out would be missing from an installed edgeaug."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {module_name(p) for p in PKG.rglob("__init__.py")}
    assert packages <= listed, sorted(packages - listed)
