"""Field ops (elastic, grid, lens, chromatic aberration): labels against OpenCV, inverses, one resampling."""

import numpy as np
import pytest
from rgb_target import rgb_target as target

from edgeaug.builder.augment import Augmenter, Labels, record_rng
from edgeaug.config.recipe import parse_recipe

SRC = (640, 480)
DIST = [-0.28, 0.09, 0.004, -0.003, -0.01]


def lens_recipe(extra=()):
    fixed = {k: v for k, v in zip(("k1", "k2", "p1", "p2", "k3"), DIST)}
    return parse_recipe(
        {"resize": "squash", "min_visibility": 0.0, "ops": [{"op": "lens_distortion", **fixed, "focal": 0.9}, *extra]}
    )


def opencv_camera_matrix(size, focal):
    """The lens_distortion op's camera matrix in OpenCV's pixel indices (centres at integers)."""
    f = focal * np.hypot(*size) / 2
    return np.array([[f, 0, size[0] / 2 - 0.5], [0, f, size[1] / 2 - 0.5], [0, 0, 1]])


def project(k, dist, px):
    """Where cv2.projectPoints puts the rays through undistorted pixel indices ``px``."""
    import cv2

    rays = np.c_[(px[:, 0] - k[0, 2]) / k[0, 0], (px[:, 1] - k[1, 2]) / k[1, 1], np.ones(len(px))]
    out, _ = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), k, np.asarray(dist, np.float64))
    return out.reshape(-1, 2)


PIXELS = np.array([[100.0, 80.0], [320.0, 240.0], [560.0, 90.0], [50.0, 430.0], [600.0, 400.0], [250.0, 300.0]])


@pytest.mark.parametrize("out_size", [(640, 480), (320, 240)])
def test_lens_keypoints_land_where_projectpoints_puts_them(out_size):
    aug = Augmenter(lens_recipe(), target(*out_size))
    params = aug.sample(record_rng(0, (1,), 1), SRC)
    kps = np.c_[PIXELS + 0.5, np.full(len(PIXELS), 2.0)].astype(np.float32)  # pixel index -> continuous
    _, lab = aug.render(np.zeros((SRC[1], SRC[0], 3), np.uint8), Labels(keypoints=kps), params, SRC)
    want = (project(opencv_camera_matrix(SRC, 0.9), DIST, PIXELS) + 0.5) * (out_size[0] / SRC[0])
    assert np.abs(lab.keypoints[:, :2] - want).max() < 0.5
    assert (lab.keypoints[:, 2] == 2).all()


def test_lens_pixels_move_where_the_keypoints_go():
    """The backward (pixel) map inverts the forward (label) map: a drawn dot lands on its keypoint."""
    import cv2

    aug = Augmenter(lens_recipe(), target(*SRC))
    params = aug.sample(record_rng(0, (1,), 1), SRC)
    want = project(opencv_camera_matrix(SRC, 0.9), DIST, PIXELS)
    for (x, y), (u, v) in zip(PIXELS, want):
        img = np.zeros((SRC[1], SRC[0], 3), np.uint8)
        cv2.circle(img, (int(x), int(y)), 4, (255, 255, 255), -1)
        out, _ = aug.render(img, Labels(), params, SRC)
        w = out[..., 0].astype(np.float64)
        yy, xx = np.mgrid[0 : SRC[1], 0 : SRC[0]]
        c = np.array([(w * xx).sum(), (w * yy).sum()]) / w.sum()
        assert np.abs(c - [u, v]).max() < 0.5, (c, (u, v))


def test_camera_op_lens_matches_projectpoints_with_the_profile_matrix():
    from edgeaug.config.camera import load_camera

    prof = load_camera("rpi_camera_module_3_wide")
    k, dist = np.array(prof.camera_matrix), list(prof.distortion)
    # A frame of a quarter of the calibration size: the camera matrix scales with it.
    src = (prof.image_size[0] // 4, prof.image_size[1] // 4)
    aug = Augmenter(parse_recipe({"resize": "squash", "ops": [{"op": "camera", "profile": prof.name}]}), target(*src))
    params = aug.sample(record_rng(3, (1,), 1), src)
    px = np.array([[60.0, 50.0], [576.0, 324.0], [1100.0, 600.0], [900.0, 100.0]])
    _, lab = aug.render(
        np.zeros((src[1], src[0], 3), np.uint8),
        Labels(keypoints=np.c_[px + 0.5, np.ones(4)].astype(np.float32)),
        params,
        src,
    )
    ks = k.copy()
    ks[:2] *= 0.25
    ks[:2, 2] = (k[:2, 2] + 0.5) * 0.25 - 0.5  # continuous scaling of OpenCV's pixel-index centre
    want = project(ks, dist, px) + 0.5
    assert np.abs(lab.keypoints[:, :2] - want).max() < 0.5


def test_elastic_inverse_is_accurate():
    from edgeaug.ops.distort import Elastic

    op = Elastic(1.0, alpha=(0.01, 0.01), sigma=(0.1, 0.1))
    size = (320.0, 240.0)
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 1, (2000, 2)) * size
    for seed in range(5):
        p = {"alpha": 0.01, "sigma": 0.1, "seed": seed}  # the steepest field the recipe check allows
        src = op.backward(p, size, pts)
        assert np.abs(src - pts).max() > 2  # it does move things
        assert np.abs(op.forward(p, size, src) - pts).max() < 1e-4


def test_grid_distortion_inverse_is_exact():
    from edgeaug.ops.distort import GridDistortion

    op = GridDistortion(1.0, steps=5)
    p = op.sample(np.random.default_rng(1), (200.0, 100.0))
    pts = np.random.default_rng(2).uniform(-20, 220, (500, 2))
    back = op.backward(p, (200.0, 100.0), pts)
    np.testing.assert_allclose(op.forward(p, (200.0, 100.0), back), pts, atol=1e-9)
    corners = np.array([[0.0, 0.0], [200.0, 100.0]])
    np.testing.assert_allclose(op.backward(p, (200.0, 100.0), corners), corners, atol=1e-9)  # frame onto frame


def test_elastic_recipe_rejects_folding_fields():
    from edgeaug.config.fields import ConfigError

    with pytest.raises(ConfigError, match=r"r.toml: ops\[0\].alpha: .*could fold"):
        parse_recipe({"ops": [{"op": "elastic", "alpha": 0.02, "sigma": 0.1}]}, "r.toml")


def test_one_remap_per_image_and_none_without_fields(monkeypatch):
    import cv2

    calls = []

    def spy(name, real):
        def call(*a, **k):
            if a[0].dtype == np.uint8:  # pixels (the coarse map's float32 resize is no resampling of them)
                calls.append(name)
            return real(*a, **k)

        return call

    for name in ("warpAffine", "warpPerspective", "resize", "remap"):
        monkeypatch.setattr(cv2, name, spy(name, getattr(cv2, name)))
    ops = [
        {"op": "rotate", "degrees": [-20, 20]},
        {"op": "elastic"},
        {"op": "perspective", "distortion": 0.1},
        {"op": "grid_distortion"},
        {"op": "lens_distortion", "k1": -0.2},
        {"op": "affine"},
    ]
    aug = Augmenter(parse_recipe({"ops": ops}), target(96, 64))
    img = np.zeros((SRC[1], SRC[0], 3), np.uint8)
    mask = Labels(mask=np.zeros((SRC[1], SRC[0]), np.uint8))
    aug.render(img, mask, aug.sample(record_rng(0, (1,), 1), SRC), SRC)
    assert calls == ["remap", "remap"]  # image and mask: each resampled once, from the source
    calls.clear()
    aug = Augmenter(parse_recipe({"ops": [*ops, {"op": "chromatic_aberration", "red": 0.01}]}), target(96, 64))
    aug.render(img, mask, aug.sample(record_rng(0, (1,), 1), SRC), SRC)
    assert calls == ["remap"] * 4  # R, G, B each through its own map; the mask follows green
    calls.clear()
    aug = Augmenter(parse_recipe({"ops": [{"op": "rotate"}, {"op": "elastic", "alpha": 0}]}), target(96, 64))
    aug.render(img, mask, aug.sample(record_rng(0, (1,), 1), SRC), SRC)
    assert calls == ["warpAffine", "warpAffine"]  # a field that moves nothing keeps the matrix warp


def test_chromatic_aberration_moves_red_and_blue_only():
    img = np.zeros((SRC[1], SRC[0], 3), np.uint8)
    img[200:280, 40:120] = 255  # a white square left of centre
    aug = Augmenter(parse_recipe({"ops": [{"op": "chromatic_aberration", "red": 0.05, "blue": -0.05}]}), target(*SRC))
    out, _ = aug.render(img, Labels(), aug.sample(record_rng(0, (1,), 1), SRC), SRC)
    cols = [np.argwhere(out[240, :, c] > 127)[:, 0] for c in range(3)]
    assert (cols[1].min(), cols[1].max()) == (40, 119)  # green unchanged
    assert cols[0].min() < 40 - 5 and cols[2].min() > 40 + 5  # red magnified outwards, blue inwards


def test_vignette_darkens_corners_not_the_centre():
    aug = Augmenter(parse_recipe({"ops": [{"op": "vignette", "strength": 0.5}]}), target(64, 48))
    out, _ = aug.render(
        np.full((48, 64, 3), 200, np.uint8), Labels(), [{"op": "vignette", "on": True, "strength": 0.5}], (64, 48)
    )
    assert abs(int(out[24, 32, 0]) - 200) <= 1 and abs(int(out[0, 0, 0]) - 100) <= 4


def test_lens_beyond_the_fold_shows_the_fill_not_garbage():
    """A barrel so strong that the frame's corners have no undistorted preimage: they take the border fill."""
    import warnings

    recipe = parse_recipe({"fill": 7, "ops": [{"op": "lens_distortion", "k1": -0.5, "focal": 0.6}]})
    aug = Augmenter(recipe, target(*SRC))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or invalid-value warnings leak out
        out, _ = aug.render(
            np.full((SRC[1], SRC[0], 3), 200, np.uint8), Labels(), aug.sample(record_rng(0, (1,), 1), SRC), SRC
        )
    assert (out[0, 0] == 7).all() and (out[-1, -1] == 7).all()  # corners: beyond the fold
    assert (out[SRC[1] // 2, SRC[0] // 2] == 200).all()  # centre: the image


def test_camera_noise_and_white_balance_follow_the_sampled_params():
    from edgeaug.ops.lens import Camera

    op = Camera(1.0)
    img = np.full((200, 200, 3), 128, np.uint8)
    params = {"shot": 0.004, "read": 0.002, "wb": [1.1, 0.9], "quality": 0, "seed": 3}
    out, _ = op.apply(img, None, params)
    lin = (out.astype(np.float64) / 255) ** 2.2
    x = (128 / 255) ** 2.2
    want_sd = np.sqrt(0.004 * x + 0.002**2)
    assert lin[..., 1].std() == pytest.approx(want_sd, rel=0.1)  # Poisson-Gaussian, before rounding
    assert lin[..., 0].mean() / lin[..., 1].mean() == pytest.approx(1.1, rel=0.02)
    assert lin[..., 2].mean() / lin[..., 1].mean() == pytest.approx(0.9, rel=0.02)
    again, _ = op.apply(img, None, params)
    assert np.array_equal(out, again)  # the stored seed alone decides the noise
