"""Workstation verify: digests, regeneration, and how mismatches are reported."""

import numpy as np

from edgeaug.build.builder import build
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
