"""Labels follow the pixels through field ops too (elastic, grid, lens, chromatic aberration), alone and
between matrix ops, in every resize mode: the same scene and checks as test_augment's matrix ops."""

import pytest
import test_augment
from test_augment import AFFINE, CROP, PERSPECTIVE, ROT90, ROTATE

from edgeaug.ops.lens import Camera

ELASTIC = {"op": "elastic", "alpha": [0.005, 0.01], "sigma": [0.1, 0.15]}
GRID = {"op": "grid_distortion", "distort": [-0.3, 0.3]}
LENS = {"op": "lens_distortion", "k1": [-0.3, 0.3], "k2": [-0.05, 0.05], "p1": [-0.01, 0.01], "p2": [-0.01, 0.01]}
CHROMA = {"op": "chromatic_aberration", "red": [-0.01, 0.01], "blue": [-0.01, 0.01]}
FIELDS = {
    "elastic": [ELASTIC],
    "grid": [GRID],
    "lens": [LENS],
    "camera": [{"op": "camera", "profile": "rpi_camera_module_3_wide"}],
    "chromatic": [CHROMA],
    "mixed": [CROP, ROT90, {"op": "hflip"}, ROTATE, ELASTIC, AFFINE, GRID, PERSPECTIVE, LENS, CHROMA],
}
CASES = [(g, r, s) for g in FIELDS for r in ("squash", "letterbox", "center_crop") for s in (0, 1, 2)]


@pytest.mark.parametrize("geom,resize,seed", CASES)
def test_field_labels_match_pixels_within_one_pixel(geom, resize, seed, monkeypatch):
    monkeypatch.setitem(test_augment.GEOMETRY, geom, FIELDS[geom])
    # The camera's noise and JPEG would move the blob centroids on black; its lens is what is checked here.
    monkeypatch.setattr(Camera, "apply", lambda self, image, labels, params: (image, labels))
    test_augment.test_labels_match_pixels_within_one_pixel(geom, resize, seed)
