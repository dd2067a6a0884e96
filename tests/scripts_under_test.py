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
