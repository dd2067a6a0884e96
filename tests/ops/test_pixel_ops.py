"""The issue-24 pixel-level ops and auto policies, driven by one table x several seeds.

test_ops.TABLE already runs every op through the Augmenter (shape, determinism, zero
magnitude, p = 0).  Here: ``apply`` uses no RNG (global numpy state perturbed),
pixel ops leave labels alone, policy members move labels with the image, recipe
bounds, and a CLI build with every new op is byte-identical for 1 and 2 workers.
"""

import hashlib
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeaug.builder.augment import Labels
from edgeaug.cli import app
from edgeaug.config.fields import ConfigError
from edgeaug.config.recipe import parse_recipe
from edgeaug.ops.auto import AUGMIX, RANDAUGMENT, TRIVIAL, member
from edgeaug.ops.color import planckian_gains
from edgeaug.ops.policy_ops import GEOMETRIC, apply_member
from edgeaug.ops.registry import OPS

# op -> recipe fields of a strong use (every new op; policies last).
NEW = {
    "iso_noise": {"intensity": [0.3, 0.6]},
    "shot_noise": {"scale": [0.005, 0.02], "read_noise": [0.0, 0.02]},
    "salt_pepper": {"amount": [0.02, 0.08]},
    "multiplicative_noise": {"multiplier": [0.8, 1.2]},
    "median_blur": {},
    "box_blur": {},
    "defocus": {},
    "zoom_blur": {},
    "sharpen": {},
    "unsharp_mask": {"threshold": [0, 5]},
    "downscale": {},
    "channel_shuffle": {},
    "rgb_shift": {},
    "white_balance": {},
    "posterize": {"bits": [2, 5]},
    "solarize": {},
    "invert": {},
    "autocontrast": {"cutoff": [1, 5]},
    "tone_curve": {},
    "shadow": {},
    "fog": {},
    "sun_flare": {},
    "rain": {},
    "randaugment": {"magnitude": [5, 15]},
    "trivial_augment": {},
    "augmix": {},
}
POLICIES = {"randaugment", "trivial_augment", "augmix"}
SEEDS = (0, 1, 2, 3, 4)


def photo(h=48, w=64):
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 / w, y * 255 / h, (x + y) % 32 * 8], -1) + rng.normal(0, 10, (h, w, 3))
    img[10:30, 20:40] = (240, 30, 30)
    return np.clip(img, 0, 255).astype(np.uint8)


def some_labels(h=48, w=64):
    mask = np.zeros((h, w), np.uint8)
    mask[10:30, 20:40] = 1
    boxes = np.array([[0, 20, 10, 40, 30]], np.float32)
    return Labels(boxes, np.array([[30.5, 20.5, 2]], np.float32), mask)


def build_op(name, **extra):
    spec = parse_recipe({"ops": [{"op": name, **NEW[name], **extra}]}).ops[0]
    return spec.build()


def test_the_table_holds_every_op_of_the_new_modules():
    modules = {"edgeaug.ops." + m for m in ("noise", "blur", "color", "scene", "auto")}
    assert {n for n, c in OPS.items() if c.__module__ in modules} == set(NEW)


@pytest.mark.parametrize("name", sorted(NEW))
def test_apply_uses_only_its_params(name):
    op, img = build_op(name), photo()
    outs = set()
    for seed in SEEDS:
        params = json.loads(json.dumps(op.sample(np.random.default_rng(seed), (64.0, 48.0))))
        np.random.seed(seed)  # a global generator in a known state...
        a, _ = op.apply(img.copy(), None, params)
        np.random.seed(seed + 1000)  # ...and in another one: apply must not read either
        np.random.random(17)
        b, _ = op.apply(img.copy(), None, params)
        assert a.shape == img.shape and a.dtype == np.uint8
        assert a.tobytes() == b.tobytes()
        outs.add(a.tobytes())
    assert img.tobytes() not in outs or len(outs) > 1, "the op never changed the image"


@pytest.mark.parametrize("name", sorted(set(NEW) - POLICIES))
def test_pixel_ops_leave_labels_alone(name):
    op, img = build_op(name), photo()
    for seed in SEEDS:
        labels = some_labels()
        params = op.sample(np.random.default_rng(seed), (64.0, 48.0))
        _, out = op.apply(img, labels, params)
        assert out is labels
        ref = some_labels()
        assert np.array_equal(out.boxes, ref.boxes) and np.array_equal(out.keypoints, ref.keypoints)
        assert np.array_equal(out.mask, ref.mask)


def _white_dot(h=48, w=64, x=30, y=20):
    img = np.zeros((h, w, 3), np.uint8)
    img[y, x] = 255
    return img


@pytest.mark.parametrize("name", GEOMETRIC)
@pytest.mark.parametrize("magnitude", [-0.25, 0.2])
def test_policy_geometry_moves_labels_with_the_image(name, magnitude):
    """A one-pixel dot, a keypoint at its centre, a mask pixel and a box around it all land together."""
    mag = {"Rotate": magnitude * 100, "ShearX": magnitude, "ShearY": magnitude}.get(name, magnitude)
    entry = {"name": name, "magnitude": mag, "unit": "frac"}
    img = _white_dot()
    mask = (img[..., 0] > 0).astype(np.uint8)
    labels = Labels(np.array([[3, 29, 19, 32, 22]], np.float32), np.array([[30.5, 20.5, 2]], np.float32), mask)
    out, moved = apply_member(img, labels, entry, fill=0, min_vis=0.0)
    ys, xs = np.nonzero(out[..., 0])
    assert len(xs) == 1, "nearest neighbour keeps the dot one pixel"
    kx, ky, vis = moved.keypoints[0]
    assert vis == 2 and abs(kx - (xs[0] + 0.5)) <= 1.0 and abs(ky - (ys[0] + 0.5)) <= 1.0
    assert np.array_equal(np.nonzero(moved.mask), (ys, xs))
    c, x0, y0, x1, y1 = moved.boxes[0]
    assert c == 3 and x0 <= xs[0] + 0.5 <= x1 and y0 <= ys[0] + 0.5 <= y1
    assert (x0, y0, x1, y1) != (29, 19, 32, 22)


def test_policy_translation_drops_what_leaves_the_frame():
    labels = some_labels()
    entry = {"name": "TranslateX", "magnitude": 0.9, "unit": "frac"}  # 57 px right: the box leaves
    out, moved = apply_member(photo(), labels, entry, fill=7, min_vis=0.3)
    assert len(moved.boxes) == 0 and moved.keypoints[0, 2] == 0
    assert (out[:, :57] == 7).all() and moved.mask.sum() == 0


def test_pixel_members_leave_labels_alone():
    labels = some_labels()
    for name in ("Brightness", "Color", "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize"):
        _, out = apply_member(photo(), labels, {"name": name, "magnitude": 3.0}, 0, 0.3)
        assert out is labels, name


def test_magnitudes_are_torchvisions():
    rng = np.random.default_rng(0)

    def mag(space, name, index, bins):
        return abs(member(rng, space, name, index, bins, "frac").get("magnitude", 0.0))

    # RandAugment, magnitude 9 of 31 bins: linspace(0, top, 31)[9].
    assert mag(RANDAUGMENT, "Rotate", 9, 31) == pytest.approx(9.0)
    assert mag(RANDAUGMENT, "ShearX", 9, 31) == pytest.approx(0.09)
    assert mag(RANDAUGMENT, "TranslateY", 30, 31) == pytest.approx(150 / 331)
    assert mag(RANDAUGMENT, "Solarize", 9, 31) == pytest.approx(255 - 255 * 9 / 30)
    assert mag(RANDAUGMENT, "Posterize", 9, 31) == 7  # 8 - round(9 / 7.5)
    assert mag(TRIVIAL, "Posterize", 30, 31) == 2 and mag(TRIVIAL, "Rotate", 30, 31) == pytest.approx(135)
    assert mag(AUGMIX, "Posterize", 2, 10) == 3 and mag(AUGMIX, "TranslateX", 9, 10) == pytest.approx(1 / 3)
    signs = {np.sign(member(rng, RANDAUGMENT, "Rotate", 9, 31, "frac")["magnitude"]) for _ in range(40)}
    assert signs == {-1.0, 1.0}
    assert "unit" not in member(rng, RANDAUGMENT, "Rotate", 9, 31, "frac")


def test_policies_record_their_choices():
    ra = build_op("randaugment", num_ops=3)
    p = ra.sample(np.random.default_rng(1), (64.0, 48.0))
    assert len(p["chain"]) == 3 and all(e["name"] in RANDAUGMENT for e in p["chain"])
    am = build_op("augmix", mixture_width=4, all_ops=False)
    for seed in SEEDS:
        p = am.sample(np.random.default_rng(seed), (64.0, 48.0))
        assert len(p["chains"]) == 4 and all(1 <= len(c) <= 3 for c in p["chains"])
        assert p["mix"] + sum(p["weights"]) == pytest.approx(1.0)
        assert all(e["name"] in AUGMIX for c in p["chains"] for e in c)


def test_augmix_refuses_geometry_with_labels_and_mixes_pixels_without():
    am = build_op("augmix")
    params = am.sample(np.random.default_rng(0), (64.0, 48.0))
    with pytest.raises(ValueError, match="geometric = false"):
        am.apply(photo(), some_labels(), params)
    flat = build_op("augmix", geometric=False)
    for seed in SEEDS:
        params = flat.sample(np.random.default_rng(seed), (64.0, 48.0))
        assert not any(e["name"] in GEOMETRIC for c in params["chains"] for e in c)
        labels = some_labels()
        assert flat.apply(photo(), labels, params)[1] is labels


def test_white_balance_coefficients():
    assert planckian_gains(6500.0) == (1.0, 1.0, 1.0)
    warm, cool = planckian_gains(3000.0), planckian_gains(10000.0)
    assert warm[0] > 1.5 and warm[2] < 0.5 and cool[0] < 1 < cool[2]  # tungsten is orange, shade is blue
    reds = [planckian_gains(float(t))[0] for t in range(2000, 15001, 500)]
    assert all(a > b for a, b in zip(reds, reds[1:]))  # red falls as the light gets hotter


@pytest.mark.parametrize(
    "table,message",
    [
        ({"op": "median_blur", "ksize": [2, 2]}, "ops[0].ksize: [2.0, 2.0] contains no odd integer"),
        ({"op": "downscale", "down": "bicubic"}, "ops[0].down: 'bicubic' is not one of"),
        ({"op": "white_balance", "temperature": 100}, "ops[0].temperature: 100 is below"),
        ({"op": "randaugment", "magnitude": 31}, "ops[0].magnitude: 31.0 is not below num_magnitude_bins"),
        ({"op": "augmix", "severity": 11}, "ops[0].severity: 11 is outside 1..10"),
        ({"op": "rain", "drop_grey": 300}, "ops[0].drop_grey: 300 is outside 0..255"),
        ({"op": "trivial_augment", "fill": -1}, "ops[0].fill: -1 is outside 0..255"),
        ({"op": "posterize", "bits": 9}, "ops[0].bits: 9 is above"),
        ({"op": "salt_pepper", "amount": [0.5, 0.1]}, "ops[0].amount: low 0.5 is greater than high 0.1"),
    ],
)
def test_recipe_bounds_name_the_field(table, message):
    with pytest.raises(ConfigError) as e:
        parse_recipe({"ops": [table]}, "r.toml")
    assert str(e.value).startswith(f"r.toml: {message}")


def _recipe_text(names, extra=""):
    lines = ['variants = 2\nresize = "squash"\n']
    for n in names:
        lines.append(f'[[ops]]\nop = "{n}"\np = 0.5\n')
    return "".join(lines) + extra


def _build(src, out, recipe, workers):
    return CliRunner().invoke(
        app,
        [
            "build",
            str(src),
            "-o",
            str(out),
            "-t",
            "rpi4",
            "-r",
            str(recipe),
            "-s",
            "9",
            "--workers",
            str(workers),
            "-q",
        ],
    )


def test_cli_build_with_every_new_op_is_identical_for_one_and_two_workers(tmp_path):
    from edgeaug.demo import make_dataset

    src = make_dataset(tmp_path / "shapes", per_class=1, seed=2)
    recipe = tmp_path / "all.toml"
    recipe.write_text(_recipe_text(sorted(NEW)))
    packs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}.lmdb"
        r = _build(src, out, recipe, workers)
        assert r.exit_code == 0, r.output
        packs.append(hashlib.sha256(out.read_bytes()).hexdigest())
    assert packs[0] == packs[1]
    # verify regenerates every record in this process (OpenCV's default threads, unlike the build's one)
    r = CliRunner().invoke(app, ["verify", str(tmp_path / "w1.lmdb"), "--source", str(src)])
    assert r.exit_code == 0 and "12/12 regenerated records byte-identical" in r.output, r.output


def test_cli_build_with_policies_on_boxes_and_keypoints(tmp_path):
    """randaugment and trivial_augment build a labelled dataset; augmix with geometry says what to change."""
    import cv2

    (tmp_path / "images").mkdir()
    rows = []
    for i in range(3):
        cv2.imwrite(str(tmp_path / "images" / f"{i}.png"), photo(120, 160))
        rows.append(
            {"path": f"images/{i}.png", "label": "x", "boxes": [[0, 50, 25, 100, 75]], "keypoints": [[75, 50, 2]]}
        )
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = tmp_path / "p.toml"
    recipe.write_text('variants = 2\n[[ops]]\nop = "randaugment"\n[[ops]]\nop = "trivial_augment"\n')
    r = _build(tmp_path / "m.jsonl", tmp_path / "ok.lmdb", recipe, 1)
    assert r.exit_code == 0, r.output
    recipe.write_text('variants = 2\n[[ops]]\nop = "augmix"\n')
    r = _build(tmp_path / "m.jsonl", tmp_path / "bad.lmdb", recipe, 1)
    assert r.exit_code != 0 and "geometric = false" in r.output
    recipe.write_text('variants = 2\n[[ops]]\nop = "augmix"\ngeometric = false\n')
    assert _build(tmp_path / "m.jsonl", tmp_path / "flat.lmdb", recipe, 1).exit_code == 0


@pytest.mark.parametrize("name", ["posterize", "solarize", "invert", "tone_curve"])
def test_tone_ops_fast_apply_matches_their_fused_curve(name):
    """The pipeline fuses tone ops through ``curve``; a lone op's faster ``apply`` gives the same bytes."""
    from edgeaug.ops.photometric import ToneOp

    op, img = build_op(name), photo()
    assert isinstance(op, ToneOp)
    for seed in SEEDS:
        params = op.sample(np.random.default_rng(seed), (64.0, 48.0))
        assert op.apply(img, None, params)[0].tobytes() == ToneOp.apply(op, img, None, params)[0].tobytes()
    extremes = {"solarize": "threshold", "posterize": "bits"}
    for v in {"threshold": (0.0, 0.5, 127.5, 128.0, 255.0, 256.0), "bits": range(1, 9)}.get(extremes.get(name), ()):
        p = {extremes[name]: v}  # integer and fractional thresholds, every bit depth
        assert op.apply(img, None, p)[0].tobytes() == ToneOp.apply(op, img, None, p)[0].tobytes(), p


def test_autocontrast_stretches_each_channel_to_full_range():
    img = np.zeros((8, 8, 3), np.uint8)
    img[..., 0] = np.linspace(50, 150, 64).reshape(8, 8).astype(np.uint8)
    img[..., 1] = 77  # flat: left alone
    img[..., 2] = np.linspace(0, 255, 64).reshape(8, 8).astype(np.uint8)
    out, _ = build_op("autocontrast").apply(img, None, {"cutoff": 0.0})
    assert out[..., 0].min() == 0 and out[..., 0].max() == 255
    assert (out[..., 1] == 77).all() and np.array_equal(out[..., 2], img[..., 2])


@pytest.mark.parametrize("name", sorted(NEW))
def test_output_does_not_depend_on_opencvs_thread_count(name):
    """Builds run OpenCV on one thread, `verify` may not: both must render the same bytes."""
    import cv2

    op, img = build_op(name), photo(96, 128)
    before = cv2.getNumThreads()
    try:
        for seed in SEEDS:
            params = op.sample(np.random.default_rng(seed), (128.0, 96.0))
            outs = set()
            for threads in (1, 2, 4):
                cv2.setNumThreads(threads)
                outs.add(op.apply(img, None, params)[0].tobytes())
            assert len(outs) == 1, params
    finally:
        cv2.setNumThreads(before)


@pytest.mark.parametrize("name", GEOMETRIC)
def test_policy_geometry_does_not_depend_on_opencvs_thread_count(name):
    """OpenCV's nearest-neighbour warpAffine rounds ties by thread stripe (ShearX -1/15 at 224 px did)."""
    import cv2

    img = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    before = cv2.getNumThreads()
    try:
        for mag in (-0.3, -1 / 15, 1 / 30, 0.1, 0.99):
            entry = {"name": name, "magnitude": mag * (100 if name == "Rotate" else 1), "unit": "frac"}
            outs = set()
            for threads in (1, 2, 4):
                cv2.setNumThreads(threads)
                outs.add(apply_member(img, None, entry, 0, 0.3)[0].tobytes())
            assert len(outs) == 1, entry
    finally:
        cv2.setNumThreads(before)
