"""The built wheel, installed alone into a fresh venv, finds its shipped targets and recipes.

Slow-ish (about 10-20 s: a wheel build and a venv); offline: the wheel is built
with the running venv's setuptools (--no-build-isolation) and installed with
--no-deps --no-index into a venv under tmp_path that borrows the running venv's
packages (numpy, lmdb, typer, OpenCV) through a .pth file, never the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SETUPTOOLS = version("setuptools")


def _run(args, cwd, **kw):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, **kw)


def _build_wheel(tmp: Path) -> Path:
    """pyproject + package + targets copied aside (a build writes build/ and *.egg-info next to pyproject)."""
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("edgeaug", "targets"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp / "dist"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist)]
    r = _run(cmd + [str(src)], tmp)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (wheel,) = dist.glob("edgeaug-*.whl")
    return wheel


def _fresh_venv(tmp: Path, wheel: Path) -> Path:
    venv = tmp / "venv"
    r = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp)
    assert r.returncode == 0, r.stderr
    py = venv / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp).stdout.strip())
    # The running interpreter's site folders (numpy, lmdb, typer...), appended after the venv's own
    # site-packages; their .pth files (the editable edgeaug) are not run from a folder a .pth line adds.
    borrowed = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")]
    (site / "borrowed.pth").write_text("".join(f"{p}\n" for p in borrowed))
    r = _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", str(wheel)], tmp)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # Another distribution's top-level targets/ in site-packages must not shadow the shipped profiles.
    (site / "targets").mkdir()
    (site / "targets" / "rpi4.toml").write_text("not a profile\n")
    return venv


@pytest.mark.skipif(
    tuple(int(x) for x in SETUPTOOLS.split(".")[:2]) < (77, 0),
    reason=f"building the wheel offline needs setuptools>=77 in this venv (it has {SETUPTOOLS}): "
    "pip install -e '.[dev]' installs it",
)
def test_the_wheel_alone_lists_targets_and_builds_for_rpi4(tmp_path):
    from edgeaug.demo import make_dataset

    venv = _fresh_venv(tmp_path, _build_wheel(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    where = _run([str(venv / "bin" / "python"), "-c", "import edgeaug; print(edgeaug.__file__)"], empty)
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr  # the wheel, not the checkout
    edgeaug = str(venv / "bin" / "edgeaug")
    r = _run([edgeaug, "targets"], empty)
    assert r.returncode == 0, r.stderr
    assert "rpi4 " in r.stdout and "Raspberry Pi 4" in r.stdout, r.stdout
    r = _run([edgeaug, "recipes"], empty)
    assert r.returncode == 0 and "default" in r.stdout and "detection" in r.stdout, r.stdout + r.stderr
    data = make_dataset(tmp_path / "data", per_class=2, seed=1)
    r = _run([edgeaug, "build", str(data), "-o", "p.lmdb", "--target", "rpi4", "-k", "1", "-w", "1", "-q"], empty)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "wrote p.lmdb" in r.stdout and (empty / "p.lmdb").is_file()
