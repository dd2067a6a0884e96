"""docs/op-gallery.md: a preview image for every registered op (a new op without one fails here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scripts_under_test import load

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_every_op_has_a_small_preview_and_a_row():
    import cv2

    gallery = load("make_op_gallery")
    page = (DOCS / "op-gallery.md").read_text(encoding="utf-8")
    missing = [n for n in gallery.gallery_ops() if not (DOCS / "images" / "ops" / f"{n}.jpg").is_file()]
    assert not missing, f"no preview for {missing}: run python scripts/make_op_gallery.py"
    for name in gallery.gallery_ops():
        path = DOCS / "images" / "ops" / f"{name}.jpg"
        assert path.stat().st_size < 10_000, path
        assert cv2.imread(str(path)).shape == (120, 160, 3), path
        assert f"| ![{name}](images/ops/{name}.jpg) | `{name}` |" in page, name


def test_the_gallery_skips_only_composite_and_multi_image_ops():
    from edgeaug.ops.registry import OPS

    shown = set(load("make_op_gallery").gallery_ops())
    skipped = {n for n, c in OPS.items() if getattr(c, "composite", False) or getattr(c, "multi", False)}
    assert shown | skipped == set(OPS) and not shown & skipped


def test_geometric_previews_carry_the_labels(tmp_path):
    """The drawn labels come from the render: rotated boxes and keypoints move with the house."""
    gallery = load("make_op_gallery")
    ref = tmp_path / "captures"
    gallery.write_references(ref)
    plain, _ = gallery.render("brightness", tmp_path)
    turned, _ = gallery.render("hflip", tmp_path)
    magenta = lambda img: np.argwhere((img[..., 0] > 200) & (img[..., 1] < 60) & (img[..., 2] > 200))  # noqa: E731
    a, b = magenta(plain), magenta(turned)
    assert len(a) and len(b)
    assert abs((a[:, 1].mean() + b[:, 1].mean()) - (gallery.W - 1)) < 3  # mirrored about the centre
