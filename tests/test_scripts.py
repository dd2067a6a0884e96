"""Every script in scripts/ starts: its --help works (or, for the helpers run or imported by other scripts, it imports).

Scripts are not exercised by the suite as a whole (benchmarks need root, minutes or PyTorch); this catches one
that no longer imports (a module or name it imports moved) or whose command line is broken.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
HELPERS = {"bench_decode", "study_detect"}  # run as children or imported by another script: no --help of their own
# The parts a script is split into by concern (the script is the entry point and re-exports their names).
HELPERS |= {"pisandbox_apt", "pisandbox_base", "pisandbox_qemu", "pisandbox_roots"}
HELPERS |= {"bench_device_cgroup", "bench_device_measure", "bench_device_report", "tflite_writer"}
HELPERS |= {"study_common", "study_cuts", "study_detector"}


@pytest.mark.parametrize("name", sorted(p.stem for p in SCRIPTS.glob("*.py")))
def test_script_starts(name):
    if name in HELPERS:
        code = f"import sys; sys.path.insert(0, {str(SCRIPTS)!r}); import {name}"
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    else:
        r = subprocess.run(
            [sys.executable, str(SCRIPTS / f"{name}.py"), "--help"], capture_output=True, text=True, timeout=120
        )
        assert "usage" in r.stdout.lower(), r.stdout[-2000:] + r.stderr[-2000:]
    assert r.returncode == 0, r.stderr[-2000:]
