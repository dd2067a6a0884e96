"""Field-op maps: computed on a coarse grid (or per axis), within 0.05 px of the dense float64 map."""

import numpy as np
import pytest
from rgb_target import rgb_target as target

from edgeaug.builder import remap
from edgeaug.builder.augment import Augmenter, record_rng
from edgeaug.config.recipe import parse_recipe
from edgeaug.ops.lens import FAR

SRC = (640, 480)
CHAINS = {
    "elastic_finest": [{"op": "rotate", "degrees": [-20, 20]}, {"op": "elastic", "alpha": 0.005, "sigma": 0.05}],
    "elastic": [{"op": "elastic", "alpha": 0.01, "sigma": [0.1, 0.2]}, {"op": "hflip", "p": 0.5}],
    "elastic_then_rotate": [{"op": "elastic", "alpha": 0.01, "sigma": 0.1}, {"op": "rotate", "degrees": [5, 30]}],
    "lens_barrel_fold": [{"op": "lens_distortion", "k1": -0.28, "k2": 0.09, "p1": 0.004, "p2": -0.003, "focal": 0.9}],
    "lens_pincushion": [{"op": "lens_distortion", "k1": [0.1, 0.3], "k2": [-0.1, 0.1]}, {"op": "perspective"}],
    "camera_wide": [{"op": "camera", "profile": "rpi_camera_module_3_wide"}, {"op": "rotate"}],
    "grid": [{"op": "grid_distortion", "distort": [-0.6, 0.6], "steps": 7}],
    "grid_rotated": [{"op": "grid_distortion", "distort": [-0.4, 0.4]}, {"op": "rotate", "degrees": [5, 30]}],
    "chromatic": [{"op": "chromatic_aberration", "red": [-0.05, 0.05], "blue": [-0.05, 0.05]}],
    "everything": [
        {"op": "random_resized_crop", "scale": [0.3, 1.0]},
        {"op": "elastic"},
        {"op": "grid_distortion"},
        {"op": "lens_distortion"},
        {"op": "chromatic_aberration", "red": 0.02},
    ],
}


def dense(stages, size, channel):
    """The reference: the chain walked at every pixel centre in float64."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    pts = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5], 1)
    src = remap.backward(stages, pts, channel) - 0.5
    return src[:, 0].reshape(h, w), src[:, 1].reshape(h, w)


@pytest.mark.parametrize("name", sorted(CHAINS))
@pytest.mark.parametrize("out", [(224, 224), (320, 240), (97, 61)])
def test_maps_are_within_005_px_of_the_dense_map(name, out):
    aug = Augmenter(parse_recipe({"resize": "squash", "ops": CHAINS[name]}), target(*out))
    worst = 0.0
    for v in range(6):
        params = aug.sample(record_rng(7, (1,), v), SRC)
        stages = aug.stages(params, SRC)
        if len(stages) == 1:
            continue
        for channel in (0, 1, 2) if any(p["op"] == "chromatic_aberration" for p in params) else (None,):
            mx, my = remap.maps(stages, np.eye(3), out, channel)
            dx, dy = dense(stages, out, channel)
            # Where the dense map leaves the source by more than a pixel the border fill shows either way.
            seen = (dx > -1.5) & (dx < SRC[0] + 0.5) & (dy > -1.5) & (dy < SRC[1] + 0.5)
            seen |= (mx > -1.5) & (mx < SRC[0] + 0.5) & (my > -1.5) & (my < SRC[1] + 0.5)
            assert not np.isnan(mx).any() and mx.dtype == np.float32
            err = np.maximum(np.abs(mx - dx), np.abs(my - dy))[seen & (dx > FAR / 2)]
            worst = max(worst, float(err.max()) if err.size else 0.0)
            assert not ((dx <= FAR / 2) & seen & (mx > -1.5)).any(), "a pixel without a preimage sampled the image"
    assert worst < 0.05, worst


def test_a_smooth_field_is_computed_at_a_fraction_of_the_pixels():
    aug = Augmenter(parse_recipe({"resize": "squash", "ops": [{"op": "lens_distortion", "k1": 0.1}]}), target(224, 224))
    params = aug.sample(record_rng(0, (1,), 1), SRC)
    stages = aug.stages(params, SRC)
    seen = []
    op, p, size = stages[1]
    real = op.backward

    def counting(params, size, pts, channel=None):
        seen.append(len(pts))
        return real(params, size, pts, channel)

    op.backward = counting
    remap.maps(stages, np.eye(3), (224, 224), None)
    assert sum(seen) < 224 * 224 / 4, seen


def test_separable_chains_walk_one_row_and_one_column():
    aug = Augmenter(parse_recipe({"resize": "squash", "ops": [{"op": "grid_distortion"}]}), target(224, 160))
    stages = aug.stages(aug.sample(record_rng(0, (1,), 1), SRC), SRC)
    op = stages[1][0]
    seen = []
    real = op.backward
    op.backward = lambda params, size, pts, channel=None: seen.append(len(pts)) or real(params, size, pts, channel)
    mx, my = remap.maps(stages, np.eye(3), (224, 160), None)
    assert seen == [224, 160]
    dx, dy = dense(stages, (224, 160), None)
    assert np.abs(mx - dx).max() < 1e-3 and np.abs(my - dy).max() < 1e-3
