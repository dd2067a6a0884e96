"""Online mosaic, mixup and cutmix (edgeaug.device.online_mix): exact pixels, labels, soft labels, determinism."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeaug.device import online_mix, online_mix_fit, online_mix_labels
from edgeaug.device.online_mix import MIX_LEVELS, mix_batch, mix_rng, mix_weights, plan_mix, soft_targets
from edgeaug.device.online_mix_labels import mix_labels

DTYPES = ("uint8", "int8", "float16", "float32")
LAYOUTS = ("NHWC", "NCHW")
H, W = 24, 32


def _batch(dtype: str, n=6, h=H, w=W, c=3, seed=0) -> np.ndarray:
    """An NHWC batch of random values spanning the dtype's range."""
    rng = np.random.default_rng(seed)
    if dtype in ("uint8", "int8"):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max + 1, (n, h, w, c)).astype(dtype)
    return rng.standard_normal((n, h, w, c)).astype(dtype)


def _as(x: np.ndarray, layout: str) -> np.ndarray:
    return np.ascontiguousarray(x if layout == "NHWC" else x.transpose(0, 3, 1, 2))


def _plan(n, seed=3, epoch=0, batch=0, h=H, w=W, **p):
    return plan_mix(mix_rng(seed, epoch, batch), n, h, w, **p)


# --- pixels ---------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_mosaic_pixels_are_copies_of_the_quadrants_central_windows(layout, dtype):
    x = _batch(dtype)
    plan = _plan(len(x), mosaic=1.0)
    out = mix_batch(_as(x, layout), layout, plan)
    hwc = out if layout == "NHWC" else out.transpose(0, 2, 3, 1)
    for j in range(len(x)):
        rows = set()
        for row, (dx0, dy0, dx1, dy1), (sx0, sy0, sx1, sy1) in plan.quadrants(j):
            rows.add(row)
            assert (sx0, sy0) == ((W - (dx1 - dx0)) // 2, (H - (dy1 - dy0)) // 2)  # the central window
            assert hwc[j, dy0:dy1, dx0:dx1].tobytes() == x[row, sy0:sy1, sx0:sx1].tobytes()
        assert j in rows and len(rows) == 4  # itself and three distinct partners of the same batch
        cx, cy = plan.centre[j]
        assert W // 4 <= cx <= 3 * W // 4 and H // 4 <= cy <= 3 * H // 4


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_layout_and_dtype_gives_the_same_result(layout, dtype):
    """NCHW output is the NHWC output transposed, for all ops at once (mosaic, mixup, cutmix)."""
    x = _batch(dtype, n=8)
    plan = _plan(len(x), mosaic=0.5, mixup=0.5, cutmix=0.5)
    assert plan.mosaic.any() and plan.mixup.any() and plan.cutmix.any()
    ref = mix_batch(x, "NHWC", plan)
    out = np.empty_like(_as(x, layout))
    out.reshape(-1).view(np.uint8)[:] = 0x5A  # a reused buffer's old contents do not show through
    got = mix_batch(_as(x, layout), layout, plan, out=out)
    assert got is out and got.dtype == x.dtype
    assert _as(ref, layout).tobytes() == got.tobytes()


SIZES = ((H, W), (160, 160))  # records blended all at once, and one by one (64 KB and more)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", ("uint8", "int8"))
def test_mixup_of_integer_codes_is_exact_rounded_half_up(dtype, size):
    x = _batch(dtype, n=5, h=size[0], w=size[1])
    plan = _plan(len(x), h=size[0], w=size[1], mixup=1.0)
    out = mix_batch(x, "NHWC", plan)
    for j in range(len(x)):
        wgt = int(round(plan.lam[j] * MIX_LEVELS))
        assert plan.lam[j] == wgt / MIX_LEVELS and 1 <= wgt < MIX_LEVELS
        a, b = x[j].astype(np.int64), x[plan.mix_partner[j]].astype(np.int64)
        ref = (wgt * a + (MIX_LEVELS - wgt) * b + MIX_LEVELS // 2) // MIX_LEVELS  # floor(l*a + (1-l)*b + 1/2)
        assert np.array_equal(out[j].astype(np.int64), ref)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", ("float16", "float32"))
def test_mixup_of_floats_is_the_float32_blend(dtype, size):
    x = _batch(dtype, n=5, h=size[0], w=size[1])
    plan = _plan(len(x), h=size[0], w=size[1], mixup=1.0, mixup_alpha=32.0)
    out = mix_batch(x, "NHWC", plan)
    for j in range(len(x)):
        a, b = x[j].astype(np.float32), x[plan.mix_partner[j]].astype(np.float32)
        ref = (b + np.float32(plan.lam[j]) * (a - b)).astype(dtype)
        assert out[j].tobytes() == ref.tobytes()
    assert abs(float(plan.lam.mean()) - 0.5) < 0.15  # Beta(32, 32) stays near 0.5


@pytest.mark.parametrize("layout", LAYOUTS)
def test_cutmix_pastes_the_partners_patch(layout):
    x = _batch("uint8", n=6)
    plan = _plan(len(x), cutmix=1.0)
    hwc = mix_batch(_as(x, layout), layout, plan)
    hwc = hwc if layout == "NHWC" else hwc.transpose(0, 2, 3, 1)
    for j in range(len(x)):
        x0, y0, x1, y1 = plan.rect[j]
        inside = np.zeros((H, W), bool)
        inside[y0:y1, x0:x1] = True
        assert np.array_equal(hwc[j][inside], x[plan.cut_partner[j]][inside])
        assert np.array_equal(hwc[j][~inside], x[j][~inside])
        assert plan.cut_partner[j] != j


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_probabilities_are_the_identity(layout, dtype):
    x = _as(_batch(dtype), layout)
    before = x.tobytes()
    plan = _plan(len(x))
    assert not plan.any
    assert mix_batch(x, layout, plan) is x  # nothing to do, nothing copied
    out = np.zeros_like(x)
    assert mix_batch(x, layout, plan, out=out).tobytes() == before
    y = np.arange(len(x)) % 4
    assert np.array_equal(soft_targets(y, plan, 4), np.eye(4, dtype=np.float32)[y])


def test_the_source_batch_is_never_written():
    x = _batch("int8", n=7)
    before = x.tobytes()
    mix_batch(x, "NHWC", _plan(len(x), mosaic=1.0, mixup=1.0, cutmix=1.0))
    assert x.tobytes() == before


def test_bad_arguments_are_clear_errors():
    x = _batch("uint8", n=4)
    plan = _plan(4, mosaic=1.0)
    with pytest.raises(ValueError, match="out"):
        mix_batch(x, "NHWC", plan, out=x)  # in place would read overwritten partners
    with pytest.raises(ValueError, match="plan for 4"):
        mix_batch(x[:3], "NHWC", plan)
    with pytest.raises(ValueError, match="mosaic 1.5"):
        _plan(4, mosaic=1.5)
    with pytest.raises(ValueError, match="batch -1"):
        mix_rng(1, 0, -1)
    with pytest.raises(ValueError, match="class ids"):
        soft_targets(np.array([0, 1, 2, 9]), plan, 5)


# --- determinism --------------------------------------------------------------------------


def test_plans_are_a_function_of_seed_epoch_and_batch():
    def draws(seed, epoch, batch, **p):
        pl = _plan(16, seed=seed, epoch=epoch, batch=batch, **p)
        return [pl.quads, pl.centre, pl.mix_partner, pl.lam, pl.cut_partner, pl.rect]

    x = _batch("uint8", n=16)
    same = [mix_batch(x, "NHWC", _plan(16, seed=5, epoch=2, batch=9, mosaic=0.5, mixup=0.5, cutmix=0.5)) for _ in "ab"]
    assert same[0].tobytes() == same[1].tobytes()
    base = draws(5, 2, 9)
    for other in (draws(5, 2, 10), draws(5, 3, 9), draws(6, 2, 9)):
        assert not np.array_equal(base[1], other[1]) and not np.array_equal(base[3], other[3])
    # Each probability only gates its op: the draws are the same whatever they are.
    for a, b in zip(base, draws(5, 2, 9, mosaic=1.0, mixup=0.3, cutmix=0.7)):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("n", (1, 2, 3, 4, 5))
def test_small_batches_use_their_own_rows(n):
    plan = _plan(n, mosaic=1.0, mixup=1.0, cutmix=1.0)
    assert plan.quads.min() >= 0 and plan.quads.max() < n
    assert (plan.mix_partner != np.arange(n)).all() or n == 1
    assert np.array_equal(plan.quads[np.arange(n), (plan.quads == np.arange(n)[:, None]).argmax(1)], np.arange(n))
    out = mix_batch(_batch("uint8", n=n), "NHWC", plan)
    assert out.shape == (n, H, W, 3)


# --- soft labels ---------------------------------------------------------------------------


def _row_images(n):
    """Record ``j`` is the constant image ``j``: every output pixel names the row it came from."""
    return np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, H, W, 1)).copy()


@pytest.mark.parametrize("ops", ({"mosaic": 1.0}, {"cutmix": 1.0}, {"mosaic": 1.0, "cutmix": 1.0}))
def test_weights_are_the_share_of_pixels_each_row_shows(ops):
    n = 8
    plan = _plan(n, **ops)
    out = mix_batch(_row_images(n), "NHWC", plan)
    sources, weights = mix_weights(plan)
    for j in range(n):
        counted = np.bincount(out[j].reshape(-1), minlength=n) / (H * W)
        from_weights = np.bincount(sources[j], weights[j], minlength=n)
        assert np.allclose(counted, from_weights, atol=1e-12)
    if "mosaic" not in ops:  # torchvision's rule: lambda reset to 1 - the patch's area
        area = (plan.rect[:, 2] - plan.rect[:, 0]) * (plan.rect[:, 3] - plan.rect[:, 1]) / (H * W)
        assert np.allclose(weights[:, 0], 1 - area) and np.allclose(weights[:, 5], area)


def test_soft_targets_sum_to_one_and_carry_lambda():
    n, classes = 10, 7
    y = np.array([0, 1, 2, 3, 4, 5, 6, 0, 1, 2])
    plan = _plan(n, mixup=1.0)
    t = soft_targets(y, plan, classes)
    assert t.dtype == np.float32 and t.shape == (n, classes)
    assert np.allclose(t.sum(axis=1), 1.0, atol=1e-6)
    for j in range(n):
        ref = np.zeros(classes)
        ref[y[j]] += plan.lam[j]
        ref[y[plan.mix_partner[j]]] += 1 - plan.lam[j]
        assert np.allclose(t[j], ref, atol=1e-6)
    everything = soft_targets(y, _plan(n, mosaic=1.0, mixup=1.0, cutmix=1.0), classes)
    assert np.allclose(everything.sum(axis=1), 1.0, atol=1e-6) and (everything >= 0).all()


# --- labels ------------------------------------------------------------------------------


def _scene(n, seed=0):
    """Records of solid, disjoint rectangles: pixel value (and semantic mask) = the object's code = its class.

    Each object also has a keypoint at its centre pixel and an instance mask.
    """
    rng = np.random.default_rng(seed)
    x = np.zeros((n, H, W, 1), np.uint8)
    recs = []
    for j in range(n):
        boxes, kps, inst = [], [], []
        for o in range(3):
            code = 16 * j + o + 1
            x0, y0 = int(rng.integers(0, W - 6)), int(rng.integers(0, H - 6))
            x1, y1 = x0 + int(rng.integers(3, 10)), y0 + int(rng.integers(3, 10))
            x1, y1 = min(x1, W), min(y1, H)
            region = np.zeros((H, W), bool)
            region[y0:y1, x0:x1] = True
            if (x[j][region] != 0).any():  # solid rectangles that do not overlap: area = pixel count
                continue
            x[j, region, 0] = code
            ys, xs = np.nonzero(region)
            boxes.append([code, xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            kps.append([xs[len(xs) // 2] + 0.5, ys[len(ys) // 2] + 0.5, 2])
            inst.append(region)
        recs.append(
            {
                "boxes": np.array(boxes, np.float32).reshape(-1, 5),
                "keypoints": np.array(kps, np.float32).reshape(-1, 3),
                "mask": x[j, :, :, 0].copy(),
                "instances": np.array(inst, bool).reshape(-1, H, W),
            }
        )
    return x, recs


@pytest.mark.parametrize("min_vis", (0.0, 0.1, 0.5))
@pytest.mark.parametrize("ops", ({"mosaic": 1.0}, {"cutmix": 1.0}, {"mosaic": 1.0, "cutmix": 1.0}))
def test_labels_follow_the_pixels_exactly(ops, min_vis):
    n = 9
    x, recs = _scene(n)
    area0 = {int(b[0]): int(r["instances"][i].sum()) for r in recs for i, b in enumerate(r["boxes"])}
    plan = _plan(n, seed=11, **ops)
    out = mix_batch(x, "NHWC", plan)[..., 0]
    labels = mix_labels(recs, plan, min_visibility=min_vis)
    for j, lab in enumerate(labels):
        assert np.array_equal(lab["mask"], out[j])  # the semantic mask is composed like the image
        # Every object shown, per region it shows in (a quadrant, the cutmix patch): its pixels there.
        expected = []
        for region in _regions(plan, j):
            shown = out[j] * region
            for c in np.unique(shown[shown > 0]).tolist():
                if (shown == c).sum() >= min_vis * area0[c]:  # filtered by visibility
                    expected.append((c, int((shown == c).sum())))
        got = [(int(b[0]), int(m.sum())) for b, m in zip(lab["boxes"], lab["instances"])]
        assert sorted(got) == sorted(expected)
        for b, m in zip(lab["boxes"], lab["instances"]):
            assert (out[j][m] == b[0]).all()  # the instance mask lies on its object's visible pixels
            ys, xs = np.nonzero(m)
            assert b[1:].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]  # box = mask's bbox
        # One keypoint per object: each record's keypoints, in the order of the rows shown, never dropped.
        codes = np.concatenate([recs[r]["boxes"][:, 0] for r in _shown_rows(plan, j)])
        assert len(codes) == len(lab["keypoints"])
        for (kx, ky, v), code in zip(lab["keypoints"], codes):
            if v:
                assert out[j, int(ky), int(kx)] == code  # a visible keypoint still lies on its own object
            else:
                assert kx == ky == 0  # the others are (0, 0, 0)


def _regions(plan, j):
    """Boolean (H, W) maps of the parts of output ``j`` that each show one record."""
    rects = [d for _, d, _ in plan.quadrants(j)] if plan.mosaic[j] else [(0, 0, W, H)]
    patch = np.zeros((H, W), bool)
    if plan.cutmix[j]:
        x0, y0, x1, y1 = plan.rect[j]
        patch[y0:y1, x0:x1] = True
    out = []
    for x0, y0, x1, y1 in rects:
        r = np.zeros((H, W), bool)
        r[y0:y1, x0:x1] = True
        out.append(r & ~patch)
    return out + [patch] * bool(plan.cutmix[j])


def _shown_rows(plan, j):
    rows = [r for r, _, _ in plan.quadrants(j)] if plan.mosaic[j] else [j]
    return rows + [int(plan.cut_partner[j])] * bool(plan.cutmix[j])


def test_mosaic_keypoints_move_with_their_quadrant_or_become_zero():
    x, recs = _scene(9)
    for rec in recs:
        rec["keypoints"][::2, 2] = 1  # COCO's "labeled, not visible" is kept as it is
    plan = _plan(9, seed=11, mosaic=1.0)
    for j, lab in enumerate(mix_labels(recs, plan, 0.0)):
        expected = []
        for r, d, s in plan.quadrants(j):
            k = recs[r]["keypoints"].copy()
            k[:, 0] += d[0] - s[0]
            k[:, 1] += d[1] - s[1]
            inside = (k[:, 0] >= d[0]) & (k[:, 0] < d[2]) & (k[:, 1] >= d[1]) & (k[:, 1] < d[3])
            k[~inside] = 0
            expected.append(k)
        assert np.array_equal(lab["keypoints"], np.concatenate(expected))
        assert 0 < (lab["keypoints"][:, 2] > 0).sum() < len(lab["keypoints"])  # some kept, some zeroed


def test_mixup_labels_are_both_records_and_the_heavier_mask():
    x, recs = _scene(6)
    plan = _plan(6, mixup=1.0, mixup_alpha=0.5)
    assert (plan.lam < 0.5).any() and (plan.lam > 0.5).any()
    for j, lab in enumerate(mix_labels(recs, plan)):
        k = int(plan.mix_partner[j])
        assert np.array_equal(lab["boxes"], np.concatenate([recs[j]["boxes"], recs[k]["boxes"]]))
        assert np.array_equal(lab["instances"], np.concatenate([recs[j]["instances"], recs[k]["instances"]]))
        assert np.array_equal(lab["mask"], recs[j if plan.lam[j] >= 0.5 else k]["mask"])


def test_cutmix_shrinks_a_box_the_patch_spans_and_drops_a_hidden_one():
    plan = _plan(2, cutmix=1.0)
    plan.rect[:] = [[0, 0, W, 10], [0, 0, W, 10]]  # a full-width band over the top 10 rows
    recs = [{"boxes": np.array([[1, 4, 4, 12, 16], [2, 20, 2, 30, 9]], np.float32)}, {"boxes": np.zeros((0, 5))}]
    lab = mix_labels(recs, plan, min_visibility=0.1)
    assert lab[0]["boxes"].tolist() == [[1, 4, 10, 12, 16]]  # cut to its visible part; box 2 is hidden
    # The partner's boxes clipped to the patch (box 2 lies inside it).
    assert lab[1]["boxes"].tolist() == [[1, 4, 4, 12, 10], [2, 20, 2, 30, 9]]
    assert mix_labels(recs, plan, min_visibility=0.6)[0]["boxes"].shape == (0, 5)  # 6/12 of its rows left


def test_instance_masks_cut_their_boxes_and_drop_them_when_emptied():
    plan = _plan(2, cutmix=1.0)
    plan.rect[:] = [[0, 0, 5, H], [0, 0, 21, H]]  # full-height bands on the left
    ell = np.zeros((H, W), bool)
    ell[2:5, 2:14] = ell[2:14, 2:5] = True  # an L: its box is [2, 2, 14, 14]
    sliver = np.zeros((H, W), bool)
    sliver[10:20, 10:20] = True  # its box reaches 0.6 px further than its pixels
    rec = {
        "boxes": np.array([[1, 2, 2, 14, 14], [2, 10, 10, 20.6, 20]], np.float32),
        "instances": np.stack([ell, sliver]),
    }
    empty = {"boxes": np.zeros((0, 5), np.float32), "instances": np.zeros((0, H, W), bool)}
    first = mix_labels([rec, empty], plan, min_visibility=0.0)[0]
    # The patch took the L's stem and its top bar's left end: the box is what is left of the mask;
    # every box of a changed output is cut to its mask's pixels.
    assert first["boxes"].tolist() == [[1, 5, 2, 14, 5], [2, 10, 10, 20, 20]]
    assert np.array_equal(first["instances"][0], ell & (np.arange(W) >= 5))
    plan.rect[:] = [[0, 0, 21, H], [0, 0, 21, H]]
    out = mix_labels([empty, rec], plan, min_visibility=0.0)[0]
    assert out["boxes"].tolist() == [[1, 2, 2, 14, 14], [2, 10, 10, 20, 20]]  # the partner's, inside the patch
    plan.rect[:] = [[0, 0, 20, H], [0, 0, 20, H]]
    kept = mix_labels([rec, empty], plan, min_visibility=0.0)[0]
    assert kept["boxes"].shape == (0, 5)  # the sliver's 0.6 px of box are left, but none of its pixels


def test_untouched_outputs_keep_their_labels_exactly():
    x, recs = _scene(5)
    for lab, rec in zip(mix_labels(recs, _plan(5)), recs):
        for key in ("boxes", "keypoints", "mask", "instances"):
            assert np.array_equal(lab[key], rec[key])
            assert lab[key] is not rec[key]


def test_label_errors_name_the_record_and_field():
    plan = _plan(2, mosaic=1.0)
    with pytest.raises(ValueError, match="record 1: mask"):
        mix_labels([{"mask": np.zeros((H, W), np.uint8)}, {"mask": np.zeros((3, 3), np.uint8)}], plan)
    with pytest.raises(ValueError, match="record 0: instances"):
        mix_labels([{"boxes": np.zeros((1, 5)), "instances": np.zeros((2, H, W), bool)}, {}], plan)


# --- device rules ----------------------------------------------------------------------


@pytest.mark.parametrize("module", (online_mix, online_mix_labels, online_mix_fit))
def test_imports_only_numpy_and_the_standard_library(module):
    tree = ast.parse(Path(module.__file__).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots.add(node.module.split(".")[0])
    assert roots <= {"numpy", "__future__", "typing"} | set(sys.stdlib_module_names)


def test_top_level_names_do_not_clash_with_the_other_device_modules():
    """So both files can join the single-file loader bundle (which refuses duplicate names)."""

    def names(path):
        tree = ast.parse(path.read_text())
        out = set()
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                out.add(node.name)
            elif isinstance(node, ast.Assign):
                out.update(t.id for t in node.targets if isinstance(t, ast.Name))
        return out - {"__all__"}

    device = Path(online_mix.__file__).parent
    mine = [device / "online_mix.py", device / "online_mix_labels.py"]
    others = set().union(*(names(p) for p in device.glob("*.py") if p not in mine and p.name != "__init__.py"))
    assert not (names(mine[0]) & names(mine[1]))
    assert not ((names(mine[0]) | names(mine[1])) & others)


def test_bundles_into_the_single_file_loader(tmp_path):
    """Both files are in bundle.SOURCES (after online_labels.py): the bundle builds and mixes alike."""
    import importlib.util

    from edgeaug import bundle

    at = bundle.SOURCES.index("online_labels.py")
    assert bundle.SOURCES[at + 1 : at + 3] == ("online_mix.py", "online_mix_labels.py")
    out = bundle.write_bundle(tmp_path / "edgeaug_loader_mix.py")
    spec = importlib.util.spec_from_file_location("edgeaug_loader_mix", out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    x, recs = _scene(6)
    plan = mod.plan_mix(mod.mix_rng(4, 1, 2), 6, H, W, mosaic=0.5, mixup=0.5, cutmix=0.5)
    ref = _plan(6, seed=4, epoch=1, batch=2, mosaic=0.5, mixup=0.5, cutmix=0.5)
    assert mod.mix_batch(x, "NHWC", plan).tobytes() == mix_batch(x, "NHWC", ref).tobytes()
    for a, b in zip(mod.mix_labels(recs, plan), mix_labels(recs, ref)):
        assert np.array_equal(a["boxes"], b["boxes"]) and np.array_equal(a["keypoints"], b["keypoints"])
