"""Labels follow the pixels: boxes, masks and keypoints drawn into an image stay on it
through every geometric op and resize mode; one warp per image; fused tone curves."""

import numpy as np
import pytest
from rgb_target import rgb_target

from edgeaug.builder.augment import Augmenter, Labels, record_rng
from edgeaug.config.recipe import parse_recipe

W, H = 160, 120
TARGET = rgb_target(96, 64)
BOX = (40.0, 30.0, 100.0, 80.0)  # continuous coords: pixels 40..99 x 30..79
KEYPOINTS = [(50.5, 40.5), (110.25, 85.75), (80.0, 60.0), (25.0, 95.0)]

ROTATE = {"op": "rotate", "degrees": [-35, 35]}
AFFINE = {"op": "affine", "scale": [0.8, 1.2], "translate": [-0.1, 0.1], "shear": [-15, 15]}
PERSPECTIVE = {"op": "perspective", "distortion": [0.05, 0.12]}
ROT90 = {"op": "rot90", "k": [1, 3]}
CROP = {"op": "random_resized_crop", "scale": [0.5, 1.0]}
GEOMETRY = {
    "rotate": [ROTATE],
    "affine": [AFFINE],
    "perspective": [PERSPECTIVE],
    "rot90": [ROT90],
    "flips": [{"op": "hflip"}, {"op": "vflip"}],
    "crop": [CROP],
    "everything": [CROP, ROT90, {"op": "hflip"}, ROTATE, AFFINE, PERSPECTIVE],
    "one_of": [{"op": "one_of", "ops": [ROTATE, PERSPECTIVE, ROT90, {"op": "vflip"}]}],
}


def scene():
    """Rectangle (red), the same rectangle plus a disc as a class-id mask (blue), keypoint blobs."""
    import cv2

    rect = np.zeros((H, W, 3), np.uint8)
    x0, y0, x1, y1 = (int(v) for v in BOX)
    rect[y0:y1, x0:x1, 0] = 255
    mask = np.zeros((H, W), np.uint8)
    mask[y0:y1, x0:x1] = 3
    cv2.circle(mask, (125, 30), 15, 5, -1)
    rect[..., 2] = np.where(mask > 0, 255, 0)
    yy, xx = np.mgrid[0:H, 0:W] + 0.5  # pixel centres in continuous coordinates
    blobs = [
        np.repeat((255 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 8.0))[..., None], 3, 2).round().astype(np.uint8)
        for x, y in KEYPOINTS
    ]
    labels = Labels(np.array([[7, *BOX]], np.float32), np.array([[x, y, 2] for x, y in KEYPOINTS], np.float32), mask)
    return rect, blobs, labels


def run(ops, resize, seed):
    aug = Augmenter(parse_recipe({"resize": resize, "border": "constant", "min_visibility": 0.0, "ops": ops}), TARGET)
    params = aug.sample(record_rng(seed, (9, 9, 9, 9), 1), (W, H))
    rect, blobs, labels = scene()
    img, lab = aug.render(rect, labels, params, (W, H))
    return img, [aug.render(b, Labels(), params, (W, H))[0] for b in blobs], lab


def _dilate(a):
    import cv2

    return cv2.dilate(a.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0


CASES = [(g, r, s) for g in GEOMETRY for r in ("squash", "letterbox", "center_crop") for s in (0, 1, 2)]


@pytest.mark.parametrize("geom,resize,seed", CASES)
def test_labels_match_pixels_within_one_pixel(geom, resize, seed):
    img, blobs, lab = run(GEOMETRY[geom], resize, seed)
    # Box: the bounding box of the red pixels.  Pixels at least a quarter covered count:
    # at 50% the anti-aliased tip of a sharp rotated corner would read as background.
    red = np.argwhere(img[..., 0] > 63)
    if len(red) == 0:
        assert len(lab.boxes) == 0 or min(lab.boxes[0, 3] - lab.boxes[0, 1], lab.boxes[0, 4] - lab.boxes[0, 2]) < 1.5
    else:
        assert len(lab.boxes) == 1 and lab.boxes[0, 0] == 7
        seen = np.array([red[:, 1].min(), red[:, 0].min(), red[:, 1].max() + 1, red[:, 0].max() + 1])
        assert np.abs(seen - lab.boxes[0, 1:]).max() <= 1.0, (seen, lab.boxes)
    # Mask: nearest-neighbour class ids cover the same pixels as the drawn shapes.
    assert lab.mask.shape == (TARGET.height, TARGET.width)
    assert set(np.unique(lab.mask)) <= {0, 3, 5}
    drawn, ids = img[..., 2] > 127, lab.mask > 0
    assert not (ids & ~_dilate(drawn)).any() and not (drawn & ~_dilate(ids)).any()
    assert not ((lab.mask == 3) & ~_dilate(img[..., 0] > 127)).any()
    # Keypoints: the centroid of each blob.
    for (x, y, v), blob in zip(lab.keypoints, blobs):
        inside = 6 <= x <= TARGET.width - 6 and 6 <= y <= TARGET.height - 6
        if not (0 <= x < TARGET.width and 0 <= y < TARGET.height):
            assert v == 0
        if v > 0 and inside:
            w = blob[..., 1].astype(np.float64)
            yy, xx = np.mgrid[0 : TARGET.height, 0 : TARGET.width] + 0.5
            c = np.array([(w * xx).sum(), (w * yy).sum()]) / w.sum()
            assert np.abs(c - [x, y]).max() <= 1.0, (c, (x, y))


def test_one_warp_for_all_geometry(monkeypatch):
    import cv2

    calls = []
    for name in ("warpAffine", "warpPerspective", "resize", "remap"):
        real = getattr(cv2, name)
        monkeypatch.setattr(cv2, name, lambda *a, _r=real, _n=name, **k: calls.append(_n) or _r(*a, **k))
    run(GEOMETRY["everything"], "letterbox", 0)
    # scene(): 1 image + 1 mask, then 4 keypoint images: one projective warp each, nothing else.
    assert calls == ["warpPerspective"] * 6
    calls.clear()
    run([CROP, ROT90, ROTATE, AFFINE], "squash", 0)
    assert calls == ["warpAffine"] * 6


def test_boxes_clip_and_drop_below_min_visibility():
    img = np.zeros((H, W, 3), np.uint8)
    box = Labels(np.array([[1, 120, 40, 160, 80]], np.float32))
    # translate by +20 px in x and +15 in y: half of the box leaves the frame.
    ops = [{"op": "affine", "scale": 1, "translate": 0.125, "shear": 0}]
    for mv, kept in ((0.6, False), (0.4, True)):
        aug = Augmenter(parse_recipe({"min_visibility": mv, "ops": ops}), TARGET)
        params = aug.sample(record_rng(0, (1,), 1), (W, H))
        _, lab = aug.render(img, box, params, (W, H))
        assert (len(lab.boxes) == 1) == kept
    sx, sy = TARGET.width / W, TARGET.height / H
    np.testing.assert_allclose(lab.boxes[0], [1, 140 * sx, 55 * sy, 160 * sx, 95 * sy], atol=1e-4)


def test_tone_curves_fuse_into_one_table():
    ops = [{"op": "brightness", "delta": 0.1}, {"op": "contrast", "factor": 1.3}, {"op": "gamma", "gamma": 0.7}]
    aug = Augmenter(parse_recipe({"ops": ops}), TARGET)
    img = np.arange(TARGET.height * TARGET.width * 3).reshape(TARGET.height, TARGET.width, 3).astype(np.uint8)
    params = aug.sample(record_rng(0, (1,), 1), (TARGET.width, TARGET.height))
    out, _ = aug.render(img, Labels(), params, (TARGET.width, TARGET.height))
    x = np.arange(256.0)
    x = np.clip(x + 25.5, 0, 255)
    x = np.clip((x - 127.5) * 1.3 + 127.5, 0, 255)
    x = 255 * (x / 255) ** 0.7
    np.testing.assert_array_equal(out, np.rint(x).astype(np.uint8)[img])  # one rounding


def test_rot90_swaps_the_frame_for_later_ops():
    aug = Augmenter(parse_recipe({"ops": [{"op": "rot90", "k": 1}, {"op": "random_resized_crop"}]}), TARGET)
    for seed in range(10):
        rrc = aug.sample(record_rng(seed, (1,), 1), (W, H))[1]
        assert rrc["x"] + rrc["w"] <= H + 1e-9 and rrc["y"] + rrc["h"] <= W + 1e-9


def test_fast_tensor_path_equals_quantize_for_every_target():
    from edgeaug.config.targets import list_targets, load_target, quantize

    for path in list_targets():
        t = load_target(path)
        aug = Augmenter(parse_recipe({}), t)
        img = np.random.default_rng(1).integers(0, 256, (t.height, t.width, 3), dtype=np.uint8)
        fast, ref = aug.tensor(img), quantize(img, t)
        assert fast.dtype == ref.dtype and fast.shape == ref.shape == t.shape, path.stem
        assert fast.tobytes() == ref.tobytes() and fast.flags.c_contiguous, path.stem


# Left/right keypoint pairs swap exactly when the composed geometry mirrors (negative determinant).
MIRROR = {
    "hflip": ([{"op": "hflip"}], True),
    "vflip": ([{"op": "vflip"}], True),
    "hflip+rot90": ([{"op": "hflip"}, {"op": "rot90", "k": 1}], True),
    "rot90+vflip": ([{"op": "rot90", "k": 3}, {"op": "vflip"}], True),
    "rot180": ([{"op": "rot90", "k": 2}], False),
    "hflip+vflip": ([{"op": "hflip"}, {"op": "vflip"}], False),
    "rotate": ([ROTATE], False),
    "crop+hflip+affine": ([CROP, {"op": "hflip"}, AFFINE], True),
}


@pytest.mark.parametrize("name", sorted(MIRROR))
def test_keypoint_pairs_swap_when_the_geometry_mirrors(name):
    ops, mirrored = MIRROR[name]
    aug = Augmenter(parse_recipe({"resize": "squash", "min_visibility": 0.0, "ops": ops}), TARGET)
    params = aug.sample(record_rng(0, (1, 2, 3, 4), 1), (W, H))
    rect, _, labels = scene()
    plain = aug.render(rect, labels, params, (W, H))[1].keypoints
    labels.flip = np.array([1, 0, 2, 3])  # keypoints 0 and 1 are a left/right pair
    paired = aug.render(rect, labels, params, (W, H))[1].keypoints
    want = plain[[1, 0, 2, 3]] if mirrored else plain
    assert np.array_equal(paired, want)
