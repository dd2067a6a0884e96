"""Every op from ONE table x several seeds: shape/dtype, zero magnitude = identity, determinism."""

import json

import numpy as np
import pytest
from rgb_target import rgb_target

from edgeaug.builder.augment import Augmenter, Labels, record_rng
from edgeaug.config.recipe import parse_recipe
from edgeaug.device.format import canonical_json
from edgeaug.ops.geometric import homography
from edgeaug.ops.photometric import motion_kernel
from edgeaug.ops.registry import OPS

SRC_W, SRC_H = 160, 120
TARGET = rgb_target(64, 48)
SEEDS = (0, 1, 2, 3)
CHILDREN = [{"op": "rotate", "degrees": [-30, 30]}, {"op": "brightness", "delta": [-0.3, 0.3]}, {"op": "vflip"}]
ZERO_CHILDREN = [
    {"op": "rotate", "degrees": 0},
    {"op": "brightness", "delta": 0},
    {"op": "perspective", "distortion": 0},
]

# op -> (parameters of a typical use, parameters of zero magnitude).  Ops with
# no magnitude (flips, grayscale, equalize, CLAHE, JPEG) have None: for them
# only p = 0 is a no-op, which every op is tested for as well.
TABLE = {
    "hflip": ({}, None),
    "vflip": ({}, None),
    "rot90": ({"k": [1, 3]}, {"k": 0}),
    "rotate": ({"degrees": [-40, 40]}, {"degrees": 0}),
    "affine": (
        {"scale": [0.7, 1.3], "translate": [-0.2, 0.2], "shear": [-15, 15]},
        {"scale": 1, "translate": 0, "shear": 0},
    ),
    "perspective": ({"distortion": [0.05, 0.2]}, {"distortion": 0}),
    "random_resized_crop": ({"scale": [0.2, 0.9]}, {"scale": 1, "ratio": SRC_W / SRC_H}),
    "brightness": ({"delta": [-0.3, 0.3]}, {"delta": 0}),
    "contrast": ({"factor": [0.5, 1.5]}, {"factor": 1}),
    "gamma": ({"gamma": [0.5, 2.0]}, {"gamma": 1}),
    "hue_saturation": ({"hue": [-40, 40], "saturation": [0.3, 1.7]}, {"hue": 0, "saturation": 1}),
    "grayscale": ({}, None),
    "equalize": ({}, None),
    "clahe": ({"clip_limit": [1, 4], "tile_grid": 4}, None),
    "gaussian_blur": ({"sigma": [0.5, 2.0]}, {"sigma": 0}),
    "motion_blur": ({"length": [3, 9], "angle": [0, 180]}, {"length": 0}),
    "gaussian_noise": ({"sigma": [0.02, 0.1]}, {"sigma": 0}),
    "jpeg": ({"quality": [10, 60]}, None),
    "cutout": ({"count": [1, 3], "size": [0.1, 0.3], "fill": [0, 255]}, {"count": 0}),
    # Sensor noise, blur and sharpness, colour, scene, auto policies (issue 24).
    "iso_noise": ({"color_shift": [0.02, 0.05], "intensity": [0.3, 0.6]}, {"intensity": 0}),
    "shot_noise": ({"scale": [0.005, 0.02], "read_noise": [0.0, 0.02]}, {"scale": 0, "read_noise": 0}),
    "salt_pepper": ({"amount": [0.02, 0.08]}, {"amount": 0}),
    "multiplicative_noise": ({"multiplier": [0.8, 1.2]}, {"multiplier": 1}),
    "median_blur": ({"ksize": [3, 7]}, {"ksize": 1}),
    "box_blur": ({"ksize": [3, 7]}, {"ksize": 1}),
    "defocus": ({"radius": [1, 3]}, {"radius": 0}),
    "zoom_blur": ({"max_factor": [1.1, 1.3]}, {"max_factor": 1}),
    "sharpen": ({"alpha": [0.3, 0.8]}, {"alpha": 0}),
    "unsharp_mask": ({"alpha": [0.5, 1.5], "threshold": [0, 5]}, {"alpha": 0}),
    "downscale": ({"scale": [0.25, 0.6]}, {"scale": 1}),
    "channel_shuffle": ({}, None),
    "rgb_shift": ({}, {"r_shift": 0, "g_shift": 0, "b_shift": 0}),
    "white_balance": ({"temperature": [2500, 12000]}, {"temperature": 6500}),
    "posterize": ({"bits": [2, 5]}, {"bits": 8}),
    "solarize": ({"threshold": [60, 200]}, {"threshold": 256}),
    "invert": ({}, None),
    "autocontrast": ({"cutoff": [1, 5]}, None),
    "tone_curve": ({"scale": [0.1, 0.2]}, {"scale": 0}),
    "shadow": ({"count": [1, 3]}, {"count": 0}),
    "fog": ({"fog_coef": [0.3, 0.8]}, {"fog_coef": 0}),
    "sun_flare": ({}, {"circles": 0, "src_radius": 0}),
    "rain": ({"density": [0.01, 0.03]}, {"density": 0}),
    "randaugment": ({"num_ops": [2, 3], "magnitude": [5, 15]}, {"num_ops": 0}),
    "trivial_augment": ({}, None),
    "augmix": ({}, None),
    # Non-affine geometry and the camera (issue 24).
    "elastic": ({"alpha": [0.005, 0.01], "sigma": [0.1, 0.15]}, {"alpha": 0}),
    "grid_distortion": ({"distort": [-0.4, 0.4], "steps": 4}, {"distort": 0}),
    "lens_distortion": ({"k1": [-0.3, 0.3], "k2": [-0.1, 0.1], "p1": [-0.01, 0.01], "p2": [-0.01, 0.01]}, {"k1": 0}),
    "chromatic_aberration": ({"red": [-0.03, 0.03], "blue": [-0.03, 0.03]}, {"red": 0, "blue": 0}),
    "vignette": ({"strength": [0.3, 0.8]}, {"strength": 0}),
    "camera": ({"profile": "rpi_camera_module_3_wide"}, None),
    "one_of": ({"ops": CHILDREN}, {"ops": ZERO_CHILDREN}),
    "some_of": ({"n": [1, 3], "ops": CHILDREN}, {"n": [1, 3], "ops": ZERO_CHILDREN}),
}
RANDOM_FREE = {"hflip", "vflip", "grayscale", "equalize", "invert"}  # same output whatever the seed


def source_image():
    """Texture, gradients and an off-centre shape: every op visibly changes it."""
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:SRC_H, 0:SRC_W]
    img = np.stack([x * 255 / SRC_W, y * 255 / SRC_H, (x + y) % 64 * 4], -1)
    img = img + rng.normal(0, 12, img.shape)
    img[20:60, 30:90] = (250, 40, 40)
    return np.clip(img, 0, 255).astype(np.uint8)


def augmenter(op_tables, resize="squash"):
    return Augmenter(parse_recipe({"resize": resize, "border": "constant", "ops": op_tables}), TARGET)


def render(aug, seed, image=None, params=None):
    image = source_image() if image is None else image
    if params is None:
        params = aug.sample(record_rng(seed, (1, 2, 3, 4), 1), (SRC_W, SRC_H))
    out, _ = aug.render(image, Labels(), params, (SRC_W, SRC_H))
    return out, params


def resize_only(resize="squash"):
    return render(augmenter([], resize), 0, params=[])[0]


def test_table_covers_every_op():
    # Ops with a required option (e.g. the onnx op's model file) need fixtures of their own;
    # multi-image ops take several sources and have their own table (tests/ops/test_multi.py).
    plain = {
        n
        for n, c in OPS.items()
        if all(d is not None for _, d in c.OPTIONS.values()) and not getattr(c, "multi", False)
    }
    assert plain <= set(TABLE), f"ops missing from TABLE: {sorted(plain - set(TABLE))}"
    assert set(TABLE) <= set(OPS)


@pytest.mark.parametrize("name", sorted(TABLE))
def test_shape_dtype_determinism_and_json_params(name):
    aug = augmenter([{"op": name, "p": 1.0, **TABLE[name][0]}])
    outs = []
    for seed in SEEDS:
        out, params = render(aug, seed)
        assert out.shape == (TARGET.height, TARGET.width, 3) and out.dtype == np.uint8
        t = aug.tensor(out)
        assert t.shape == TARGET.shape and t.dtype == np.uint8
        again, params2 = render(aug, seed)
        assert params2 == params and again.tobytes() == out.tobytes()  # same seed, same bytes
        # Stored parameters are plain JSON and alone determine the output: no hidden RNG.
        stored = json.loads(canonical_json(params))
        assert render(aug, 99, params=stored)[0].tobytes() == out.tobytes()
        outs.append(out.tobytes())
    assert any(o != resize_only().tobytes() for o in outs), "the op never changed the image"
    if name not in RANDOM_FREE:
        assert len(set(outs)) > 1, "different seeds gave identical outputs"


@pytest.mark.parametrize("name", sorted(TABLE))
@pytest.mark.parametrize("resize", ["squash", "letterbox"])
def test_zero_magnitude_and_p0_are_the_identity(name, resize):
    base = resize_only(resize).tobytes()
    zero = TABLE[name][1]
    tables = [{"op": name, "p": 0.0, **TABLE[name][0]}]
    if zero is not None:
        tables.append({"op": name, "p": 1.0, **zero})
    for table in tables:
        aug = augmenter([table], resize)
        for seed in SEEDS:
            out, params = render(aug, seed)
            assert out.tobytes() == base, (table, params)


def test_composites_choose_as_documented():
    one = augmenter([{"op": "one_of", "ops": CHILDREN}])
    some = augmenter([{"op": "some_of", "n": [2, 2], "ops": CHILDREN}])
    for seed in range(20):
        p1 = one.sample(record_rng(seed, (0,), 1), (SRC_W, SRC_H))[0]
        assert [c["op"] for c in p1["ops"]] == ["rotate", "brightness", "vflip"]
        assert sum(c["on"] for c in p1["ops"]) == 1
        p2 = some.sample(record_rng(seed, (0,), 1), (SRC_W, SRC_H))[0]
        assert sum(c["on"] for c in p2["ops"]) == 2
    # Children's p are selection weights: a p=0 child is never chosen.
    w = augmenter([{"op": "one_of", "ops": [{"op": "hflip", "p": 0}, {"op": "vflip", "p": 1}]}])
    for seed in range(10):
        kids = w.sample(record_rng(seed, (0,), 1), (SRC_W, SRC_H))[0]["ops"]
        assert not kids[0]["on"] and kids[1]["on"]


def test_geometric_helpers():
    src = np.array([[0, 0], [10, 0], [10, 8], [0, 8]], float)
    dst = src + np.array([[1, -1], [0, 2], [-1, 0], [2, 1]])
    h = homography(src, dst)
    p = np.c_[src, np.ones(4)] @ h.T
    np.testing.assert_allclose(p[:, :2] / p[:, 2:], dst, atol=1e-9)
    k = motion_kernel(5.0, 0.0)
    assert abs(k.sum() - 1) < 1e-6 and k[k.shape[0] // 2].sum() > 0.99  # horizontal line
    rot90 = OPS["rot90"]()
    m, size = rot90.matrix({"k": 1}, (160.0, 120.0))
    assert size == (120.0, 160.0)
    np.testing.assert_allclose(m @ [160, 0, 1], [0, 0, 1])  # top-right corner -> top-left


@pytest.mark.parametrize(
    "table,field",
    [
        ({"op": "rot90", "k": [1.2, 1.8]}, "ops[0].k: [1.2, 1.8] contains no integer"),
        ({"op": "clahe", "tile_grid": 0}, "ops[0].tile_grid: 0 is outside"),
        ({"op": "one_of"}, "ops[0].ops: missing required field"),
        ({"op": "one_of", "ops": []}, "ops[0].ops: expected a non-empty array"),
        (
            {"op": "some_of", "ops": [{"op": "rotate"}, {"op": "one_of", "ops": [{"op": "rotate", "degrees": 999}]}]},
            "ops[0].ops[1].ops[0].degrees: 999 is above",
        ),
        ({"op": "one_of", "ops": [{"op": "twirl"}]}, "ops[0].ops[0].op: unknown op"),
        ({"op": "hflip", "ops": [{"op": "vflip"}]}, "ops[0].ops: unknown field"),
    ],
)
def test_nested_recipe_errors_name_the_path(table, field):
    from edgeaug.config.fields import ConfigError

    with pytest.raises(ConfigError) as e:
        parse_recipe({"ops": [table]}, "r.toml")
    assert str(e.value).startswith(f"r.toml: {field}")


def test_nested_recipe_round_trips():
    r = parse_recipe(
        {
            "ops": [
                {
                    "op": "some_of",
                    "n": [1, 2],
                    "ops": [
                        {"op": "one_of", "p": 0.3, "ops": [{"op": "jpeg"}, {"op": "motion_blur"}]},
                        {"op": "rot90"},
                    ],
                }
            ]
        }
    )
    d = r.to_dict()
    assert parse_recipe(json.loads(canonical_json(d))).to_dict() == d
    assert d["ops"][0]["ops"][0]["ops"][1]["length"] == [3.0, 9.0]


def test_shipped_recipes_parse():
    from pathlib import Path

    from edgeaug.config.recipe import DEFAULT_RECIPE, load_recipe

    for p in sorted(Path(DEFAULT_RECIPE).parent.glob("*.toml")):
        r = load_recipe(p)
        assert r.ops and parse_recipe(r.to_dict()).to_dict() == r.to_dict(), p.name


def test_noise_depends_only_on_its_stored_seed():
    import cv2

    aug = augmenter([{"op": "gaussian_noise", "sigma": 0.05}])
    out, params = render(aug, 0)
    cv2.setRNGSeed(777)
    cv2.randu(np.empty((50, 50), np.float32), 0, 1)  # someone else uses OpenCV's generator
    assert render(aug, 5, params=params)[0].tobytes() == out.tobytes()
    diff = out.astype(float) - resize_only().astype(float)
    assert 0.03 * 255 < diff[(resize_only() > 30) & (resize_only() < 225)].std() < 0.07 * 255
    assert abs(diff.mean()) < 1.0


def test_gaussian_noise_has_the_requested_spread_and_only_depends_on_its_seed():
    from edgeaug.ops.photometric import GaussianNoise

    img = np.full((128, 128, 3), 128, np.uint8)
    op = GaussianNoise(1.0, sigma=(0.05, 0.05))
    out, _ = op.apply(img, None, {"sigma": 0.05, "seed": 7})
    d = out.astype(np.float64) - 128
    assert abs(d.mean()) < 0.2
    assert d.std() == pytest.approx(0.05 * 255, rel=0.05)  # 256-quantile normal, +-2.66 sigma
    again, _ = op.apply(img, None, {"sigma": 0.05, "seed": 7})
    other, _ = op.apply(img, None, {"sigma": 0.05, "seed": 8})
    assert np.array_equal(out, again) and not np.array_equal(out, other)
    sat, _ = op.apply(np.full((8, 8, 1), 250, np.uint8), None, {"sigma": 1.0, "seed": 1})
    assert sat.shape == (8, 8, 1) and sat.min() >= 0 and sat.max() == 255  # saturates, never wraps
