"""The project's scripts that tests exercise or use (the Pi sandbox, the digits check, the training examples).

They live in ``scripts/``, where users run them; tests load them from there by path, explicitly, rather than
through a ``pythonpath`` entry that would make every script importable from every test.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load(name: str) -> ModuleType:
    """``scripts/NAME.py`` as module ``NAME`` (once per process: later calls return the same module)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: dataclasses and pickling look modules up by name
    if str(SCRIPTS) not in sys.path:  # as when run, a script imports its siblings (now or inside a function);
        sys.path.append(str(SCRIPTS))  # last, so no script shadows a real package
    spec.loader.exec_module(module)
    return module


def run_on_pi(arch: str, probe: str, cwd: Path, args=()):
    """Run the Python source ``probe`` under the emulated Pi ``arch`` with the repo importable; skip without one.

    Skips when ``EDGEAUG_SKIP_PI=1`` or the Pi roots are not built (``scripts/pisandbox.py setup`` builds them;
    tests never do).  Returns the completed process (stdout, stderr, returncode).
    """
    import os

    import pytest

    if os.environ.get("EDGEAUG_SKIP_PI") == "1":
        pytest.skip("EDGEAUG_SKIP_PI=1: emulated Pi tests skipped")
    pisandbox = load("pisandbox")
    try:
        pisandbox.ready_root(arch)
    except pisandbox.PiSandboxUnavailable as exc:
        pytest.skip(f"emulated Pi sandbox unavailable: {exc}")
    (cwd / "probe.py").write_text(probe)
    return pisandbox.run_python(arch, ["probe.py", *args], cwd=cwd, extra_path=[Path(__file__).resolve().parents[1]])
