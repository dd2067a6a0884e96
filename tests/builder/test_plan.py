"""The plan: OpenCV's version (read without loading OpenCV where its wheel states it), the val split over
usable sources, the flip_idx rule for mirroring pose sets, and the no-op recipe warning."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
import types

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgeaug.builder import plan
from edgeaug.builder.pipeline import build
from edgeaug.cli import app
from edgeaug.device.loader import Pack


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


# --- the val split counts usable sources; a pose set that mirrors needs flip_idx; a no-op recipe warns ---

runner = CliRunner()


def _rank(seed, rels):
    return sorted(rels, key=lambda r: hashlib.sha256(f"{seed}\0{r}".encode()).digest())


def _folders_with_bad_first_ranked(root, seed, n_per_class=30, bad=6):
    """Two classes of small distinct PNGs; in class a, the ``bad`` sources that rank first for val are broken."""
    rng = np.random.default_rng(1)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(n_per_class):
            cv2.imwrite(str(root / c / f"{i:02d}.png"), rng.integers(0, 256, (12, 16, 3)).astype(np.uint8))
    broken = _rank(seed, [f"a/{i:02d}.png" for i in range(n_per_class)])[:bad]
    for rel in broken:
        (root / rel).write_bytes(b"not an image")
    return broken


def test_val_holds_the_asked_count_of_usable_sources_per_class(tmp_path):
    seed = 4
    broken = _folders_with_bad_first_ranked(tmp_path / "src", seed)
    out = tmp_path / "p.lmdb"
    res = build(tmp_path / "src", out, "rpi4", variants=1, seed=seed, workers=1, val=0.2)
    assert sorted(s["path"] for s in res.skipped) == sorted(broken)
    with Pack(str(out)) as p:
        entries = p.manifest["sources"]
    val = {c: [e["path"] for e in entries if e["split"] == "val" and e["path"][0] == c] for c in "ab"}
    assert len(val["a"]) == len(val["b"]) == round(0.2 * 30) == 6
    ranked_a = _rank(seed, [e["path"] for e in entries if e["path"][0] == "a"])
    assert sorted(val["a"]) == sorted(ranked_a[6:12])  # the ranking is kept: the next-ranked usable sources
    assert all("skipped" not in e for e in entries if e["split"] == "val")
    assert all(e["split"] == "train" for e in entries if e["path"] in broken)  # skipped from train, by name
    assert res.splits == {"train": 2 * (30 - 12 + 30 - 6), "val": 12}


def test_the_split_with_broken_sources_is_the_same_pack_for_any_worker_count(tmp_path):
    _folders_with_bad_first_ranked(tmp_path / "src", 4, n_per_class=10, bad=3)
    build(tmp_path / "src", tmp_path / "one.lmdb", "rpi4", variants=1, seed=4, workers=1, val=0.3)
    build(tmp_path / "src", tmp_path / "two.lmdb", "rpi4", variants=1, seed=4, workers=2, val=0.3)
    assert (tmp_path / "one.lmdb").read_bytes() == (tmp_path / "two.lmdb").read_bytes()


def _pose_yolo(root, yaml_extra=""):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    cv2.imwrite(str(root / "images" / "f.png"), np.full((60, 80, 3), 90, np.uint8))
    (root / "labels" / "f.txt").write_text("0 0.5 0.5 0.5 0.5 0.5 0.4 2 0.6 0.45 2 0.4 0.45 2\n")
    (root / "data.yaml").write_text("names: [face]\nkpt_shape: [3, 3]\n" + yaml_extra)
    return root


def _recipe(path, ops):
    path.write_text("variants = 2\n" + "".join(f'[[ops]]\nop = "{o}"\np = {p}\n' for o, p in ops))
    return path


@pytest.mark.parametrize("ops", [[("hflip", 0.5)], [("rotate", 1.0), ("vflip", 1.0)]])
def test_a_pose_set_without_flip_idx_and_a_mirroring_recipe_is_refused(tmp_path, ops):
    src = _pose_yolo(tmp_path / "y")
    rcp = _recipe(tmp_path / "r.toml", ops)
    r = runner.invoke(app, ["build", str(src), "-o", str(tmp_path / "p.lmdb"), "-t", "rpi4", "-r", str(rcp)])
    assert r.exit_code != 0
    msg = " ".join(r.output.split())
    assert f"{src / 'data.yaml'}: flip_idx: missing, and the recipe mirrors images ({ops[-1][0]})" in msg
    assert "Add flip_idx" in msg and "remove the mirroring ops from the recipe" in msg
    assert not (tmp_path / "p.lmdb").exists()


@pytest.mark.parametrize(
    "yaml_extra,ops",
    [
        ("flip_idx: [0, 2, 1]\n", [("hflip", 0.5)]),  # pairs declared
        ("flip_idx: [0, 1, 2]\n", [("hflip", 0.5)]),  # the explicit opt-out: no left/right pairs
        ("", [("rotate", 1.0), ("hflip", 0.0)]),  # nothing mirrors
    ],
)
def test_a_pose_set_builds_when_mirroring_is_declared_or_absent(tmp_path, yaml_extra, ops):
    src = _pose_yolo(tmp_path / "y", yaml_extra)
    rcp = _recipe(tmp_path / "r.toml", ops)
    r = runner.invoke(app, ["build", str(src), "-o", str(tmp_path / "p.lmdb"), "-t", "rpi4", "-r", str(rcp), "-q"])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize(
    "ops,why", [([], "has no ops"), ([("hflip", 0.0), ("brightness", 0.0)], "has no op that can fire (every p is 0)")]
)
def test_a_recipe_that_changes_nothing_warns_by_file_name(shapes_dir, tmp_path, ops, why):
    rcp = _recipe(tmp_path / "noop.toml", ops)
    args = ["build", str(shapes_dir), "-o", str(tmp_path / "p.lmdb"), "-t", "rpi4", "-r", str(rcp), "-w", "1", "-q"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert (
        f"warning: recipe {rcp} {why}: each source's 3 records are identical copies; "
        "use --variants 0 to store each image once"
    ) in " ".join(r.output.split())
    r = runner.invoke(app, args[:-3] + ["-k", "0", "-w", "1", "-q"])
    assert r.exit_code == 0 and "identical copies" not in r.output


def test_a_recipe_whose_ops_can_fire_gives_no_such_warning(shapes_dir, tmp_path):
    rcp = _recipe(tmp_path / "r.toml", [("hflip", 0.0), ("brightness", 0.5)])
    r = runner.invoke(app, ["build", str(shapes_dir), "-o", str(tmp_path / "p.lmdb"), "-t", "rpi4", "-r", str(rcp)])
    assert r.exit_code == 0 and "identical copies" not in r.output
