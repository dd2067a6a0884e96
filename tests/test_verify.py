"""Workstation verify: digests, regeneration, and how mismatches are reported."""

import numpy as np

from edgeaug.builder.pipeline import build
from edgeaug.config.recipe import parse_recipe
from edgeaug.ops import geometric, photometric
from edgeaug.verify import verify_pack

RECIPE = parse_recipe(
    {
        "variants": 2,
        "ops": [{"op": "rotate", "p": 1.0, "degrees": [-10, 10]}, {"op": "brightness", "p": 1.0, "delta": [0.05, 0.1]}],
    }
)


def test_clean_pack_regenerates_byte_identical(shapes_dir, tmp_path):
    out = tmp_path / "p.lmdb"
    build(shapes_dir, out, "rpi4", RECIPE, seed=2, workers=1)
    rep = verify_pack(out, source=shapes_dir)
    assert rep.ok and rep.regenerated == rep.records == 24 * 3
    rep = verify_pack(out, source=shapes_dir, sample=5)
    assert rep.ok and rep.regenerated == 5


def test_pixel_mismatch_names_record_op_and_difference(shapes_dir, tmp_path, monkeypatch):
    out = tmp_path / "p.lmdb"
    build(shapes_dir, out, "rpi4", RECIPE, seed=2, workers=1)
    # Simulate a different OpenCV/numpy: brightness now renders 3 levels brighter.
    orig = photometric.Brightness.curve
    monkeypatch.setattr(photometric.Brightness, "curve", lambda self, x, p: orig(self, x, p) + 3)
    rep = verify_pack(out, source=shapes_dir)
    # Every augmented record (brightness p=1) differs; originals (variant 0) have no ops.
    assert not rep.ok and len(rep.mismatches) == 24 * 2
    assert {m.variant for m in rep.mismatches} == {1, 2}
    m = rep.mismatches[0]
    assert "pixels differ after ops rotate, brightness" in m.op
    assert 1 <= m.max_abs_diff <= 3
    assert f"record {m.record}" in str(m)


def test_param_mismatch_names_the_op(shapes_dir, tmp_path, monkeypatch):
    out = tmp_path / "p.lmdb"
    build(shapes_dir, out, "rpi4", RECIPE, seed=2, workers=1)
    orig = geometric.Rotate.sample
    monkeypatch.setattr(
        geometric.Rotate, "sample", lambda self, rng, size: {"degrees": orig(self, rng, size)["degrees"] + 1}
    )
    rep = verify_pack(out, source=shapes_dir)
    assert rep.mismatches and all("params of op 0 (rotate) differ" in m.op for m in rep.mismatches)
    assert {m.variant for m in rep.mismatches} == {1, 2}
    assert np.isfinite([m.max_abs_diff for m in rep.mismatches]).all()


def test_verify_reports_progress_per_regenerated_record(shapes_dir, tmp_path):
    out = tmp_path / "p.lmdb"
    build(shapes_dir, out, "rpi4", RECIPE, seed=2, workers=1)
    seen = []
    rep = verify_pack(out, source=shapes_dir, sample=7, progress=lambda done, total: seen.append((done, total)))
    assert rep.ok and seen[-1] == (7, 7)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and {t for _, t in seen} == {7}


def test_verify_refuses_a_changed_mask_through_the_builds_path(tmp_path):
    import cv2

    root = tmp_path / "seg"
    for grey, name in ((100, "a"), (150, "b")):
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(exist_ok=True)
        cv2.imwrite(str(root / "images" / f"{name}.png"), np.full((40, 60, 3), grey, np.uint8))
        cv2.imwrite(str(root / "masks" / f"{name}.png"), np.ones((40, 60), np.uint8))
    out = tmp_path / "p.lmdb"
    build(root, out, "rpi4", variants=1, seed=0, workers=1)
    assert verify_pack(out, source=root).ok
    cv2.imwrite(str(root / "masks" / "b.png"), np.ones((10, 10), np.uint8))  # the image is unchanged
    rep = verify_pack(out, source=root)
    # the build's own checks: the mask's sha256 where the pack records it, else its size against the image's
    assert not rep.ok and len(rep.source_problems) == 1
    assert rep.source_problems[0] in (
        "images/b.png: mask: content differs from the build's",
        "images/b.png: mask: size (10, 10) differs from the image's (60, 40)",
    )


def test_verify_names_a_source_read_as_another_kind(tmp_path):
    import json

    import cv2

    (tmp_path / "c" / "images").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "c" / "images" / "a.png"), np.full((40, 60, 3), 100, np.uint8))
    json_path = tmp_path / "c" / "instances.json"
    coco = {
        "images": [{"id": 1, "file_name": "a.png"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [5, 5, 20, 20]}],
        "categories": [{"id": 3, "name": "cat"}],
    }
    json_path.write_text(json.dumps(coco))
    out = tmp_path / "p.lmdb"
    build(json_path, out, "rpi4", variants=1, seed=0, workers=1)
    assert verify_pack(out, source=tmp_path / "c").ok  # the folder reads as the same COCO set
    json_path.rename(tmp_path / "c" / "instances.bak")
    rep = verify_pack(out, source=tmp_path / "c")
    assert not rep.ok and rep.source_problems == [
        f"{tmp_path / 'c'}: reads as a folders dataset, but the pack was built from a coco dataset"
    ]


def test_label_mismatch_says_which_labels_and_that_pixels_match(shapes_dir, tmp_path, monkeypatch):
    from edgeaug.builder import render

    out = tmp_path / "p.lmdb"
    build(shapes_dir, out, "rpi4", RECIPE, seed=2, workers=1)
    orig = render.source_labels

    def with_a_box(source, size=None):
        lab = orig(source, size)
        lab.boxes = np.array([[0, 1, 1, 30, 30]], np.float32)
        return lab

    monkeypatch.setattr(render, "source_labels", with_a_box)
    rep = verify_pack(out, source=shapes_dir, sample=3)
    assert len(rep.mismatches) == 3
    assert all("boxes: stored 0, regenerated 1); the pixels are identical" in m.op for m in rep.mismatches)
    assert "max |diff|" not in str(rep.mismatches[0])


def test_verify_reads_the_pack_through_its_public_api():
    import ast
    from pathlib import Path

    import edgeaug.verify as v

    tree = ast.parse(Path(v.__file__).read_text())
    private = [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr.startswith("_")]
    assert private == [], private
