"""Multi-image ops from one table: solid shapes of distinct colours with known masks, through every op and chains.

For every output: each instance's mask covers the pixels drawn in its colour
(IoU >= 0.9), each box is its mask's bounding box (within 1 px), no two
instances overlap after copy-paste, visible keypoints land on their object and
invisible ones are exactly (0, 0, 0); soft labels sum to 1 with the blend factor
or the patch area as weights; same params give the same bytes, and sampling
depends only on the generator.
"""

import re
from functools import lru_cache

import numpy as np
import pytest

from edgeaug.device.format import canonical_json
from edgeaug.ops.base import OPS
from edgeaug.ops.instances_geom import InstanceLabels, fit_matrix, shrink_box
from edgeaug.ops.multi import MultiOp
from edgeaug.ops.multi_paste import CutMix  # noqa: F401  (registers cutmix and copy_paste)

OUT = (160, 128)
FILL = 114
MIN_VIS = 0.2
BACKGROUNDS = [(40, 40, 40), (220, 220, 220), (60, 30, 90), (20, 90, 60), (200, 160, 40)] * 2
OBJECTS = [tuple(int(v) for v in np.random.default_rng(100 + i).integers(0, 256, 3)) for i in range(30)]
SIZES = [(200, 160), (180, 200), (240, 150), (160, 160), (210, 170), (190, 150), (230, 180), (170, 170), (200, 200)]
MULTI = ["mosaic", "mixup", "cutmix", "copy_paste", "scale_jitter"]


def scene(idx, instances=True, only=None):
    """Source ``idx``: a rectangle, an ellipse and a rectangle, classes 3*idx .. 3*idx+2.

    Keypoints: each object's centre, then one on the background near the top-left
    corner.  ``only = c``: the isolation render's source, object ``c`` white and
    everything else black.
    """
    w, h = SIZES[idx]
    img = np.empty((h, w, 3), np.uint8)
    img[:] = BACKGROUNDS[idx] if only is None else 0
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    shapes = [
        (xx >= 0.08 * w) & (xx < 0.45 * w) & (yy >= 0.1 * h) & (yy < 0.5 * h),
        ((xx - 0.68 * w) / (0.2 * w)) ** 2 + ((yy - 0.35 * h) / (0.25 * h)) ** 2 < 1,
        (xx >= 0.3 * w) & (xx < 0.85 * w) & (yy >= 0.65 * h) & (yy < 0.93 * h),
    ]
    boxes, kps = [], []
    for k, m in enumerate(shapes):
        cls = 3 * idx + k
        img[m] = OBJECTS[cls] if only is None else (255 if cls == only else 0)
        ys, xs = np.nonzero(m)
        boxes.append([cls, xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        kps.append([xs.mean() + 0.5, ys.mean() + 0.5, 2])
    kps.append([0.02 * w, 0.02 * h, 2])
    lab = InstanceLabels(
        np.array(boxes, np.float32),
        np.array(kps, np.float32),
        instances=np.array(shapes) if instances else None,
        label=idx,
    )
    return img, lab


def scenes(ids, instances=True, only=None):
    pairs = [scene(i, instances, only) for i in ids]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def isolation(render_fn):
    """``drawn(c)``: the output pixels of object ``c``, from the same render of white-on-black sources.

    Every other object and background is black, so occluders hide ``c`` exactly
    as in the real render; pixels over half white count as drawn.
    """

    @lru_cache(maxsize=None)
    def drawn(c):
        return render_fn(c)[0][..., 0] > 127

    return drawn


def check_labels(img, lab, drawn, kp_scenes=()):
    """The table's invariants on one output; ``kp_scenes``: the scene of each group of 4 keypoints."""
    assert img.shape == (OUT[1], OUT[0], 3) and img.dtype == np.uint8
    assert lab.boxes.dtype == np.float32 and lab.boxes.shape[1] == 5
    if lab.instances is not None:
        assert lab.instances.shape == (len(lab.boxes), OUT[1], OUT[0])
        for box, m in zip(lab.boxes, lab.instances):
            ys, xs = np.nonzero(m)
            assert len(xs) > 0
            assert np.abs(box[1:] - [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).max() <= 1
            d = drawn(int(box[0]))
            iou = (m & d).sum() / (m | d).sum()
            inner = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
            # IoU >= 0.9; a sliver under 150 px may differ only along its outline
            assert iou >= 0.9 or (m.sum() < 150 and (m ^ d).sum() <= m.sum() - inner.sum()), (box, iou)
    else:
        for box in lab.boxes:
            ys, xs = np.nonzero(drawn(int(box[0])))
            assert len(xs) > 0
            seen = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            if box[0] % 3 == 1:  # an ellipse's clipped box may be larger than what is left of it: contains it
                assert (box[1:3] <= seen[:2] + 1).all() and (box[3:] >= seen[2:] - 1).all(), box
            else:
                assert np.abs(box[1:] - seen).max() <= 1.01, box
    for j, (x, y, v) in enumerate(lab.keypoints):
        if v == 0:
            assert x == 0 and y == 0  # never piled on a border
            continue
        assert 0 <= x < OUT[0] and 0 <= y < OUT[1]
        if v == 2 and j % 4 < 3 and j // 4 < len(kp_scenes):
            assert drawn(3 * kp_scenes[j // 4] + j % 4)[int(y), int(x)], (j, x, y)


def make(name, **kw):
    return OPS[name](1.0, **kw)


def render(name, kw, seed, ids, instances=True):
    """Sample with the table's seed; partners are the given distinct scenes (colours stay unique)."""
    o = make(name, **kw)
    images, labels = scenes(ids, instances)
    params = o.sample(np.random.default_rng(seed), images[0].shape[1::-1], n_candidates=len(ids) - 1)
    params["partners"] = list(range(o.partners))
    return o, params, images[: o.partners + 1], labels[: o.partners + 1]


CASES = [
    ("mosaic", {}),
    ("mosaic", {"grid": 3}),
    ("mosaic", {"scale": [0.4, 0.6], "translate": [-0.3, 0.3]}),
    ("mosaic", {"windows": "boxes"}),
    ("mosaic", {"windows": "boxes", "scale": [0.4, 1.6], "translate": [-0.3, 0.3]}),
    ("mixup", {}),
    ("cutmix", {}),
    ("copy_paste", {}),
    ("copy_paste", {"mode": "lsj", "fraction": [1.0, 1.0]}),
    ("scale_jitter", {}),
]


@pytest.mark.parametrize("instances", [True, False], ids=["instances", "boxes"])
@pytest.mark.parametrize("name, kw", CASES, ids=[f"{n}{kw}" for n, kw in CASES])
@pytest.mark.parametrize("seed", range(4))
def test_labels_follow_the_pixels(name, kw, seed, instances):
    if name == "copy_paste" and not instances:
        pytest.skip("copy_paste needs instances; its no-op is tested below")
    o, params, images, labels = render(name, kw, seed, range(9), instances)
    n = len(images)
    # mixup: each side is checked on a pure render (lam 1 or 0); its labels do not depend on lam
    sides = [({**params, "lam": 1.0}, 0), ({**params, "lam": 0.0}, 1)] if name == "mixup" else [(params, None)]
    for prm, side in sides:

        def one(only, prm=prm):
            ims, labs = scenes(range(n), instances, only)
            return o.apply(ims, labs, prm, OUT, 0 if only is not None else FILL, MIN_VIS)

        img, lab = one(None)
        if side is not None:
            mine = (lab.boxes[:, 0] >= 3 * side) & (lab.boxes[:, 0] < 3 * side + 3)
            inst = None if lab.instances is None else lab.instances[mine]
            lab = InstanceLabels(lab.boxes[mine], lab.keypoints[4 * side : 4 * side + 4], instances=inst)
        check_labels(img, lab, isolation(one), kp_scenes=[side] if side is not None else range(n))
    assert len(lab.boxes) > 0
    if name == "copy_paste":
        assert lab.instances.sum(0).max() <= 1  # no two instances share a pixel
        assert (lab.boxes[:, 0] >= 3).any() or lab.note  # something was pasted, or it says why not


CHAINS = ["mosaic>copy_paste", "mosaic+mosaic>mixup", "scale_jitter>copy_paste", "mosaic>cutmix", "mosaic>scale_jitter"]


def run_chain(chain, seed, only=None, lam=None):
    """Ops in a row: the first's outputs are the second's sources (what the builder would pass).

    Scenes 0-3 feed the record's side, 4-7 its partner's (a mosaic when the chain names one op first).
    """
    rng = np.random.default_rng(seed)
    firsts, second = chain.split(">")
    firsts = firsts.split("+")
    fill = FILL if only is None else 0
    outs = []
    for op_name, ids in zip(firsts + ["mosaic"] * (2 - len(firsts)), (range(0, 4), range(4, 8))):
        o = make(op_name)
        params = o.sample(rng, SIZES[ids[0]], n_candidates=3)
        params["partners"] = list(range(o.partners))
        images, labels = scenes(ids, only=only)
        outs.append(o.apply(images[: o.partners + 1], labels[: o.partners + 1], params, OUT, fill, MIN_VIS))
    o = make(second, **({"fraction": [1.0, 1.0]} if second == "copy_paste" else {}))
    params = o.sample(rng, OUT, n_candidates=1)
    if lam is not None:
        params["lam"] = lam
    return o.apply([outs[0][0], outs[1][0]], [outs[0][1], outs[1][1]], params, OUT, fill, MIN_VIS)


@pytest.mark.parametrize("chain", CHAINS)
@pytest.mark.parametrize("seed", range(2))
def test_chains(chain, seed):
    for lam, side in ((1.0, 0), (0.0, 1)) if chain.endswith("mixup") else ((None, None),):
        img, lab = run_chain(chain, seed, lam=lam)
        if side is not None:
            mine = (lab.boxes[:, 0] >= 12 * side) & (lab.boxes[:, 0] < 12 * side + 12)
            lab = InstanceLabels(lab.boxes[mine], instances=lab.instances[mine])
        check_labels(img, lab, isolation(lambda c, lam=lam: run_chain(chain, seed, c, lam)))
        assert len(lab.boxes) > 0
    if "copy_paste" in chain:
        assert lab.instances.sum(0).max() <= 1


@pytest.mark.parametrize("name", MULTI)
def test_sample_is_deterministic_json(name):
    o = make(name)
    a = o.sample(np.random.default_rng(7), (200, 160), n_candidates=50)
    b = o.sample(np.random.default_rng(7), (200, 160), n_candidates=50)
    c = o.sample(np.random.default_rng(8), (200, 160), n_candidates=50)
    assert canonical_json(a) == canonical_json(b) != canonical_json(c)
    assert len(a.get("partners", [])) == o.partners and all(0 <= i < 50 for i in a.get("partners", []))
    none = o.sample(np.random.default_rng(7), (200, 160), n_candidates=0)
    assert none.get("partners", []) == []
    assert o.multi and isinstance(o, MultiOp)


@pytest.mark.parametrize("name", MULTI)
def test_apply_is_pure(name):
    o, params, images, labels = render(name, {}, 3, range(5))
    copies = [i.copy() for i in images]
    np.random.seed(11)
    a = o.apply(images, labels, params, OUT, FILL, MIN_VIS)
    after = np.random.random()
    np.random.seed(11)
    b = o.apply(images, labels, params, OUT, FILL, MIN_VIS)
    assert np.random.random() == after  # no global RNG draw either way
    assert a[0].tobytes() == b[0].tobytes() and a[1].boxes.tobytes() == b[1].boxes.tobytes()
    assert a[1].keypoints.tobytes() == b[1].keypoints.tobytes()
    assert np.array_equal(a[1].instances, b[1].instances)
    assert all(np.array_equal(x, y) for x, y in zip(images, copies))  # inputs untouched


def test_mosaic_keypoint_outside_the_canvas_is_zeroed():
    """Centre at 0.5 W: the top-left tile's left half falls off the canvas; its keypoints become (0, 0, 0)."""
    o = make("mosaic")
    images, labels = scenes(range(4))
    params = {"partners": [0, 1, 2], "cx": 0.5, "cy": 1.0, "scale": 0.5, "tx": 0.0, "ty": 0.0}
    img, lab = o.apply(images, labels, params, OUT, FILL, 0.0)
    k = lab.keypoints[:4]  # the record's: its left rectangle's centre and the corner point are off the canvas
    assert k[0].tolist() == [0, 0, 0] and k[3].tolist() == [0, 0, 0]
    assert k[1, 2] == 2 and k[2, 2] == 2
    drawn = isolation(lambda c: o.apply(*scenes(range(4), only=c), params, OUT, 0, 0.0))
    check_labels(img, lab, drawn, kp_scenes=range(4))
    # the same tile without the cut: all visible
    img, lab = o.apply(images, labels, {**params, "cx": 1.5}, OUT, FILL, 0.0)
    assert (lab.keypoints[:4, 2] == 2).all()


def test_mixup_soft_label_and_blend():
    o = make("mixup")
    images, labels = scenes(range(2), instances=False)
    img, lab = o.apply(images, labels, {"partners": [0], "lam": 0.3}, OUT, FILL, MIN_VIS)
    assert lab.mix == [(0, 0.3), (1, pytest.approx(0.7))] and sum(w for _, w in lab.mix) == pytest.approx(1)
    want = np.rint(0.3 * np.array(BACKGROUNDS[0]) + 0.7 * np.array(BACKGROUNDS[1]))
    assert img[1, 1].tolist() == want.tolist()  # both backgrounds near the top-left corner
    assert len(lab.boxes) == 6
    labels[1].label = 0
    _, lab = o.apply(images, labels, {"partners": [0], "lam": 0.3}, OUT, FILL, MIN_VIS)
    assert lab.mix == [(0, pytest.approx(1.0))]


@pytest.mark.parametrize("seed", range(5))
def test_cutmix_soft_label_is_the_patch_area(seed):
    o = make("cutmix")
    images, labels = scenes(range(2))
    params = o.sample(np.random.default_rng(seed), SIZES[0], n_candidates=1)
    img, lab = o.apply(images, labels, params, OUT, FILL, MIN_VIS)
    alone, _ = make("scale_jitter").apply(images, labels, {"scale": 1.0, "ox": 0, "oy": 0}, OUT, FILL)
    changed = (img != alone).any(2).sum() / (OUT[0] * OUT[1])
    x0, y0, x1, y1 = CutMix.patch(params, OUT)
    area = (x1 - x0) * (y1 - y0) / (OUT[0] * OUT[1])
    assert changed == pytest.approx(area, abs=0.01)  # the partner's pixels are where the patch is
    weights = dict(lab.mix)
    assert sum(weights.values()) == pytest.approx(1) and weights.get(1, 0.0) == pytest.approx(area)


def test_copy_paste_updates_occluded_instances():
    """A partner object over most of an own object drops it; a partly covered one shrinks to what is left."""
    img0 = np.full((100, 100, 3), BACKGROUNDS[0], np.uint8)
    own = np.zeros((2, 100, 100), bool)
    own[0, 10:30, 10:30] = True  # will be 100% covered
    own[1, 50:90, 50:90] = True  # left half covered
    for k, m in enumerate(own):
        img0[m] = OBJECTS[k]
    img1 = np.full((100, 100, 3), BACKGROUNDS[1], np.uint8)
    theirs = np.zeros((2, 100, 100), bool)
    theirs[0, 5:35, 5:35] = True
    theirs[1, 40:95, 40:70] = True
    for k, m in enumerate(theirs):
        img1[m] = OBJECTS[3 + k]
    boxes = [np.array([[k + off, 0, 0, 1, 1] for k in range(2)], np.float32) for off in (0, 3)]
    labs = [InstanceLabels(boxes[0], instances=own), InstanceLabels(boxes[1], instances=theirs)]
    params = {"partners": [0], "flip": False, "scale": 1.0, "ox": 0.0, "oy": 0.0, "select": "3"}
    img, lab = make("copy_paste").apply([img0, img1], labs, params, (100, 100), FILL, 0.3)
    assert lab.boxes[:, 0].tolist() == [1, 3, 4]  # own object 0 is gone: 0% visible
    assert lab.boxes[0, 1:].tolist() == [70, 50, 90, 90]
    assert lab.instances.sum(0).max() == 1 and (img[lab.instances[1]] == OBJECTS[3]).all()
    params["select"] = "0"
    img, lab = make("copy_paste").apply([img0, img1], labs, params, (100, 100), FILL, 0.3)
    assert lab.note and lab.boxes[:, 0].tolist() == [0, 1] and np.array_equal(img, img0)


def test_copy_paste_without_partner_instances_is_a_recorded_noop():
    images, labels = scenes(range(2))
    labels[1].instances = None
    o = make("copy_paste")
    params = o.sample(np.random.default_rng(0), SIZES[0], n_candidates=1)
    img, lab = o.apply(images, labels, params, OUT, FILL, MIN_VIS)
    same = {"scale": 1.0, "ox": 0, "oy": 0}
    alone, ref = make("scale_jitter").apply(images[:1], labels[:1], same, OUT, FILL, MIN_VIS)
    assert "no instance" in lab.note and np.array_equal(img, alone) and np.array_equal(lab.boxes, ref.boxes)


def test_cutmix_shrinks_a_box_the_patch_spans():
    assert shrink_box(np.array([0, 10, 10, 50, 30]), (0, 0, 20, 40)).tolist() == [0, 20, 10, 50, 30]
    assert shrink_box(np.array([0, 10, 10, 50, 30]), (40, 5, 60, 35)).tolist() == [0, 10, 10, 40, 30]
    assert shrink_box(np.array([0, 10, 10, 50, 30]), (20, 0, 30, 40)).tolist() == [0, 10, 10, 50, 30]  # middle strip
    assert shrink_box(np.array([0, 10, 10, 50, 30]), (0, 0, 60, 20)).tolist() == [0, 10, 20, 50, 30]


def test_scale_jitter_pads_and_crops():
    images, labels = scenes(range(1))
    o = make("scale_jitter")
    img, lab = o.apply(images, labels, {"scale": 0.5, "ox": 0.0, "oy": 1.0}, OUT, FILL)
    assert (img[: OUT[1] // 2 - 1] == FILL).all() and (img[:, OUT[0] // 2 + 1 :] == FILL).all()
    m = fit_matrix(SIZES[0], OUT, "squash")
    want_x = labels[0].boxes[:, [1, 3]] * m[0, 0] / 2  # ox = 0: x only scales
    want_y = labels[0].boxes[:, [2, 4]] * m[1, 1] / 2 + OUT[1] / 2  # oy = 1: pushed to the bottom
    assert np.abs(lab.boxes[:, [1, 3]] - want_x).max() <= 1 and np.abs(lab.boxes[:, [2, 4]] - want_y).max() <= 1
    img, lab = o.apply(images, labels, {"scale": 2.0, "ox": 1.0, "oy": 1.0}, OUT, FILL, 0.5)
    assert lab.boxes[:, 0].tolist() == [2]  # only the bottom-right rectangle keeps half its area


def test_pasted_instances_that_overlap_are_made_disjoint_later_on_top():
    img0 = np.full((60, 60, 3), BACKGROUNDS[0], np.uint8)
    img1 = np.full((60, 60, 3), BACKGROUNDS[1], np.uint8)
    theirs = np.zeros((2, 60, 60), bool)
    theirs[0, 10:40, 10:40] = True
    theirs[1, 20:50, 20:50] = True  # overlaps the first: it is drawn on top
    img1[theirs[0]], img1[theirs[1]] = OBJECTS[0], OBJECTS[1]
    labs = [
        InstanceLabels(np.zeros((0, 5), np.float32), instances=np.zeros((0, 60, 60), bool)),
        InstanceLabels(np.array([[0, 10, 10, 40, 40], [1, 20, 20, 50, 50]], np.float32), instances=theirs),
    ]
    params = {"partners": [0], "flip": False, "scale": 1.0, "ox": 0.0, "oy": 0.0, "select": "3"}
    img, lab = make("copy_paste").apply([img0, img1], labs, params, (60, 60), FILL, 0.3)
    assert lab.instances.sum(0).max() == 1
    assert lab.instances[0].sum() == 30 * 30 - 20 * 20 and lab.instances[1].sum() == 30 * 30
    assert (img[lab.instances[0]] == OBJECTS[0]).all() and (img[lab.instances[1]] == OBJECTS[1]).all()


def test_warp_follows_continuous_coordinates():
    """A source column [10, 11) scaled by 2 covers [20, 22): its warped profile is symmetric about x = 21."""
    from edgeaug.ops.base import scale, translate
    from edgeaug.ops.instances_geom import warp_into, warp_masks

    src = np.zeros((4, 30, 3), np.uint8)
    src[:, 10] = 200
    dst = np.zeros((4, 60, 3), np.uint8)
    warp_into(dst, src, scale(2, 1), (0, 0, 60, 4), 0, linear=True)
    row = dst[1, :, 0].astype(float)
    assert row[19] == row[22] and row[20] == row[21] and row.sum() == pytest.approx(400, abs=2)
    m = np.zeros((1, 4, 30), bool)
    m[0, :, 10] = True
    assert np.nonzero(warp_masks(m, translate(0.4, 0) @ scale(2, 1), (0, 0, 60, 4), (60, 4))[0, 1])[0].tolist() == [
        20,
        21,
    ]  # [20.4, 22.4): pixel centres 20.5 and 21.5


@pytest.mark.parametrize(
    "table, want",
    [
        ({"op": "mosaic", "grid": 3}, {"partners": 8}),
        ({"op": "mixup", "alpha": 32}, {"ranges": {"alpha": (32, 32)}}),
        ({"op": "cutmix"}, {"ranges": {"alpha": (1.0, 1.0)}}),
        ({"op": "copy_paste", "mode": "lsj", "fraction": 1}, {"options": {"mode": "lsj"}}),
        ({"op": "scale_jitter", "scale": [0.5, 1.5]}, {"partners": 0}),
    ],
)
def test_recipes_validate_multi_ops(table, want):
    from edgeaug.config.recipe import parse_op

    o = parse_op(table, "recipe.toml", "ops[0]").build()
    for key, value in want.items():
        got = getattr(o, key)
        assert got == value if not isinstance(value, dict) else all(got[k] == v for k, v in value.items())


@pytest.mark.parametrize(
    "table, field",
    [
        ({"op": "mosaic", "grid": 4}, "ops[0].grid: expected 2 or 3"),
        ({"op": "mosaic", "windows": "middle"}, "ops[0].windows: expected 'corner' or 'boxes'"),
        ({"op": "mosaic", "grid": 3, "windows": "boxes"}, "ops[0].windows: 'boxes' needs grid = 2"),
        ({"op": "copy_paste", "mode": "random"}, "ops[0].mode: expected 'flip' or 'lsj'"),
        ({"op": "mixup", "alpha": 0}, "ops[0].alpha"),
        ({"op": "copy_paste", "fraction": 0}, "ops[0].fraction"),
    ],
)
def test_recipes_refuse_bad_multi_ops(table, field):
    from edgeaug.config.recipe import ConfigError, parse_op

    with pytest.raises(ConfigError, match=re.escape(field)):
        parse_op(table, "recipe.toml", "ops[0]")


def test_warp_masks_general_matrix_path_matches_rot90():
    """Non-axis-aligned matrices go through OpenCV with bit-packed planes (here 11 masks: 2 bytes)."""
    from edgeaug.ops.instances_geom import warp_masks

    rng = np.random.default_rng(2)
    m = rng.random((11, 7, 9)) < 0.5
    quarter = np.array([[0, 1, 0], [-1, 0, 9], [0, 0, 1]], np.float64)  # (x, y) -> (y, 9 - x)
    out = warp_masks(m, quarter, (0, 0, 7, 9), (7, 9))
    assert np.array_equal(out, np.rot90(m, 1, axes=(1, 2)))
