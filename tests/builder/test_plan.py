"""OpenCV's version for the plan and the manifest, read without loading OpenCV where its wheel states it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import types

from edgeaug.builder import plan


def test_opencv_version_is_cv2s_own_and_the_planning_process_does_not_load_opencv():
    code = "import sys; from edgeaug.builder.plan import opencv_version as v; print(v(), 'cv2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    import cv2

    assert out == [cv2.__version__, "False"]


def _fake_cv2(tmp_path, monkeypatch, version_py):
    pkg = tmp_path / "cv2"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    if version_py is not None:
        (pkg / "version.py").write_text(version_py)
    spec = importlib.util.spec_from_file_location("cv2", pkg / "__init__.py")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec if name == "cv2" else None)
    monkeypatch.setitem(sys.modules, "cv2", types.SimpleNamespace(__version__="9.9.9-dev"))


def test_an_official_wheels_version_file_is_read(tmp_path, monkeypatch):
    text = 'opencv_version = "4.10.0.84"\ncontrib = False\nheadless = True\nrolling = False\n'
    _fake_cv2(tmp_path, monkeypatch, text)
    assert plan.opencv_version() == "4.10.0"


def test_rolling_and_source_builds_ask_opencv_itself(tmp_path, monkeypatch):
    _fake_cv2(tmp_path, monkeypatch, 'opencv_version = "4.10.0.20240612"\nrolling = True\n')
    assert plan.opencv_version() == "9.9.9-dev"


def test_without_a_version_file_opencv_is_asked(tmp_path, monkeypatch):
    _fake_cv2(tmp_path, monkeypatch, None)
    assert plan.opencv_version() == "9.9.9-dev"
