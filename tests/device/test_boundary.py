"""The device boundary: each edgeaug.device module (and edgeaug.loader) imports only itself, numpy, lmdb and stdlib.

Measured as a diff of ``sys.modules`` around the import in a fresh interpreter: a
``.pth`` file in site-packages may import other packages (certifi) at startup,
which is not the module's doing.
"""

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import edgeaug.device

REPO = Path(__file__).resolve().parents[2]
DEVICE = sorted(f"edgeaug.device.{m.name}" for m in pkgutil.iter_modules(edgeaug.device.__path__))

CHILD = r"""
import json, sys
before = set(sys.modules)
import importlib
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def allowed(name: str) -> bool:
    top = name.split(".")[0]
    if name in ("edgeaug", "edgeaug.device") or name.startswith("edgeaug.device."):
        return True
    return top in ("numpy", "lmdb") or top in sys.stdlib_module_names or top.startswith("_")


def test_every_device_module_is_listed():
    assert {"edgeaug.device.format", "edgeaug.device.lmdbpure", "edgeaug.device.batchread"} <= set(DEVICE)
    assert {"edgeaug.device.loader", "edgeaug.device.pack", "edgeaug.device.backends"} <= set(DEVICE)
    # The bundle writer is a workstation tool: it lives outside the device package.
    assert "edgeaug.device.bundle" not in DEVICE


@pytest.mark.parametrize("module", [*DEVICE, "edgeaug.loader"])
def test_module_imports_only_device_numpy_lmdb_and_stdlib(module):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO)
    r = subprocess.run([sys.executable, "-c", CHILD, module], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    new = json.loads(r.stdout.strip().splitlines()[-1])
    assert module in new or module == "edgeaug.loader" and "edgeaug.device.loader" in new
    bad = [m for m in new if not allowed(m) and m != "edgeaug.loader"]  # the shim itself, when imported
    assert bad == [], f"{module} pulls in {bad}"
    assert "edgeaug.loader" not in new or module == "edgeaug.loader"
