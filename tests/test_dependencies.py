"""Every dependency ./scripts/test installs is importable: a missing one fails here instead of skipping tests.

Tests of optional features (ONNX, LiteRT, scikit-learn) use ``pytest.importorskip`` so that the suite runs in
a smaller environment too; in the project's own environment (``.[build,onnx,dev]``, what CI uses) such a skip
would hide a broken install, so this test names the missing distribution.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
EXTRAS = ("build", "onnx", "dev")  # what scripts/_venv.sh installs


def requirements():
    for req in PROJECT["dependencies"] + [r for e in EXTRAS for r in PROJECT["optional-dependencies"][e]]:
        name, _, marker = req.partition(";")
        if "python_version < '3.11'" in marker:
            continue
        yield re.match(r"[A-Za-z0-9_.-]+", name.strip()).group(0)


@pytest.mark.parametrize("dist", sorted(set(requirements())))
def test_declared_dependency_is_installed(dist):
    try:
        metadata.version(dist)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{dist} is declared in pyproject.toml but not installed: run ./scripts/test (it installs it)")
