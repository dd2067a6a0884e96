"""Box-aware mosaic windows (edgeaug.device.online_mix_fit): the best window by the rule, pixels and labels follow."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeaug.device.online_mix import mix_batch, mix_rng, plan_mix
from edgeaug.device.online_mix_fit import MAX_CANDIDATES, _best_window, fit_windows
from edgeaug.device.online_mix_labels import mix_labels

H, W = 24, 32


def _boxes(rng, n, h=H, w=W) -> np.ndarray:
    """``n`` random boxes ``[class, x0, y0, x1, y1]`` inside a ``w x h`` frame, some with fractional corners."""
    x0, y0 = rng.uniform(0, w - 2, n), rng.uniform(0, h - 2, n)
    x1 = np.minimum(x0 + rng.uniform(1, w / 2, n), w)
    y1 = np.minimum(y0 + rng.uniform(1, h / 2, n), h)
    b = np.stack([np.zeros(n), x0, y0, x1, y1], 1)
    b[::2, 1:] = np.round(b[::2, 1:])  # integer corners too (the edge cases of the window test)
    return b.astype(np.float32)


def _status(b: np.ndarray, sx: int, sy: int, qw: int, qh: int):
    """(cut, whole) counts of boxes ``(n, 4)`` for the window at (sx, sy): brute force, one box at a time."""
    cut = whole = 0
    for x0, y0, x1, y1 in b.tolist():
        inside = sx <= x0 and sx + qw >= x1 and sy <= y0 and sy + qh >= y1
        overlap = sx < x1 and sx + qw > x0 and sy < y1 and sy + qh > y0
        whole += inside
        cut += overlap and not inside
    return cut, whole


@pytest.mark.parametrize("seed", range(40))
def test_the_window_is_the_best_of_every_integer_position(seed):
    rng = np.random.default_rng(seed)
    boxes = _boxes(rng, int(rng.integers(1, 7)))[:, 1:].astype(np.float64)
    qw, qh = int(rng.integers(1, W)), int(rng.integers(1, H))
    sx, sy = _best_window(boxes, qw, qh, W, H)
    cx, cy = (W - qw) // 2, (H - qh) // 2
    best = min(
        (c, -wh, abs(x - cx) + abs(y - cy), y, x)
        for x, y in itertools.product(range(W - qw + 1), range(H - qh + 1))
        for c, wh in [_status(boxes, x, y, qw, qh)]
    )
    cut, whole = _status(boxes, sx, sy, qw, qh)
    assert (cut, -whole, abs(sx - cx) + abs(sy - cy), sy, sx) == best
    assert cut <= _status(boxes, cx, cy, qw, qh)[0]  # never cuts more than the central window


def test_without_boxes_the_window_is_the_central_one():
    assert _best_window(np.zeros((0, 4)), 10, 8, W, H) == ((W - 10) // 2, (H - 8) // 2)
    plan = fit_windows(plan_mix(mix_rng(1, 0, 0), 5, H, W, mosaic=1.0), [None] * 5)
    for j in range(5):
        for q, (x0, y0, x1, y1) in enumerate(plan.quadrant_rects(j)):
            assert tuple(plan.windows[j, q]) == ((W - (x1 - x0)) // 2, (H - (y1 - y0)) // 2)


def test_many_boxes_search_a_lattice_and_stay_in_the_frame():
    rng = np.random.default_rng(5)
    boxes = _boxes(rng, 40)[:, 1:].astype(np.float64)
    qw, qh = 13, 9
    sx, sy = _best_window(boxes, qw, qh, W, H)
    assert 0 <= sx <= W - qw and 0 <= sy <= H - qh
    lattice = np.rint(np.linspace(0.0, 1.0, MAX_CANDIDATES - 1) * (W - qw))
    cx = (W - qw) // 2
    assert sx in lattice or sx == cx  # the lattice plus the centre


def _scene(n, seed):
    """Records of solid disjoint rectangles whose pixel value is their class; their boxes and instance masks."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, H, W, 1), np.uint8)
    recs = []
    for j in range(n):
        boxes, inst = [], []
        for o in range(4):
            code = 4 * j + o + 1  # < 256 for up to 63 records
            x0, y0 = int(rng.integers(0, W - 4)), int(rng.integers(0, H - 4))
            x1, y1 = min(x0 + int(rng.integers(3, 9)), W), min(y0 + int(rng.integers(3, 9)), H)
            region = np.zeros((H, W), bool)
            region[y0:y1, x0:x1] = True
            if (x[j][region] != 0).any():
                continue
            x[j, region, 0] = code
            boxes.append([code, x0, y0, x1, y1])
            inst.append(region)
        recs.append(
            {
                "boxes": np.array(boxes, np.float32).reshape(-1, 5),
                "keypoints": np.zeros((0, 3), np.float32),
                "mask": None,
                "instances": np.array(inst, bool).reshape(-1, H, W),
            }
        )
    return x, recs


@pytest.mark.parametrize("seed", range(4))
def test_pixels_and_labels_follow_the_fitted_windows(seed):
    x, recs = _scene(12, seed)
    plan = plan_mix(mix_rng(seed, 0, 0), len(x), H, W, mosaic=1.0, cutmix=0.3)
    central = {(j, q): plan.window(j, q) for j in range(len(x)) for q in range(4)}
    fit_windows(plan, [r["boxes"] for r in recs])
    assert any(plan.window(j, q) != c for (j, q), c in central.items())  # some window moved
    out = mix_batch(x, "NHWC", plan)[..., 0]
    labels = mix_labels(recs, plan, min_visibility=0.0)
    for j in range(len(x)):
        for q, (r, (dx0, dy0, dx1, dy1), (sx0, sy0, sx1, sy1)) in enumerate(plan.quadrants(j)):
            assert (sx0, sy0) == tuple(plan.windows[j, q])
            if not plan.cutmix[j]:
                assert np.array_equal(out[j, dy0:dy1, dx0:dx1], x[r, sy0:sy1, sx0:sx1, 0])
        for b, m in zip(labels[j]["boxes"], labels[j]["instances"]):
            assert (out[j][m] == b[0]).all()  # each box's mask lies on its own object's pixels
            ys, xs = np.nonzero(m)
            assert b[1:].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        assert plan.explain(j)["mosaic"]["windows"] == plan.windows[j].tolist()


def test_fitted_mosaics_cut_fewer_objects_than_central_windows():
    x, recs = _scene(32, 7)
    area = {int(b[0]): (b[3] - b[1]) * (b[4] - b[2]) for r in recs for b in r["boxes"]}

    def fragments(fit: bool) -> int:
        plan = plan_mix(mix_rng(3, 0, 0), len(x), H, W, mosaic=1.0)
        if fit:
            fit_windows(plan, [r["boxes"] for r in recs])
        labs = mix_labels(recs, plan, min_visibility=0.0)
        return sum(int((b[3] - b[1]) * (b[4] - b[2]) < area[int(b[0])]) for lab in labs for b in lab["boxes"])

    assert fragments(True) < fragments(False)


def test_only_mosaic_outputs_move_and_errors_are_clear():
    x, recs = _scene(6, 1)
    plan = plan_mix(mix_rng(2, 0, 0), 6, H, W, mosaic=0.5)
    fit_windows(plan, [r["boxes"] for r in recs])
    for j in np.flatnonzero(~plan.mosaic).tolist():
        for q, (x0, y0, x1, y1) in enumerate(plan.quadrant_rects(j)):
            assert tuple(plan.windows[j, q]) == ((W - (x1 - x0)) // 2, (H - (y1 - y0)) // 2)
    with pytest.raises(ValueError, match="boxes of 5 records for a plan of 6"):
        fit_windows(plan, [r["boxes"] for r in recs[:5]])
    with pytest.raises(ValueError, match=r"record 2: boxes \(3, 4\) must be \(n, 5\)"):
        fit_windows(plan, [r["boxes"] for r in recs[:2]] + [np.zeros((3, 4))] + [None] * 3)


def test_fitted_windows_are_a_function_of_the_plan_and_boxes():
    x, recs = _scene(8, 3)
    a = fit_windows(plan_mix(mix_rng(4, 1, 2), 8, H, W, mosaic=1.0), [r["boxes"] for r in recs])
    b = fit_windows(plan_mix(mix_rng(4, 1, 2), 8, H, W, mosaic=1.0), [r["boxes"].copy() for r in recs])
    assert np.array_equal(a.windows, b.windows)
    assert mix_batch(x, "NHWC", a).tobytes() == mix_batch(x, "NHWC", b).tobytes()


def test_a_crowded_record_does_not_change_the_others_windows():
    """Quadrants are searched together, padded to the batch's most boxes: the few-box ones stay exact."""
    rng = np.random.default_rng(9)
    boxes = [_boxes(rng, 40 if r == 0 else int(rng.integers(0, 5))) for r in range(8)]
    plan = fit_windows(plan_mix(mix_rng(6, 0, 0), 8, H, W, mosaic=1.0), boxes)
    checked = 0
    for j in range(8):
        for q, (x0, y0, x1, y1) in enumerate(plan.quadrant_rects(j)):
            r = int(plan.quads[j, q])
            if r:  # record 0 is the crowded one (searched on a lattice)
                assert tuple(plan.windows[j, q]) == _best_window(boxes[r][:, 1:], x1 - x0, y1 - y0, W, H)
                checked += 1
    assert checked


FIT_PROBE = r"""
import json
import numpy as np
from edgeaug.device.online_mix import mix_rng, plan_mix
from edgeaug.device.online_mix_fit import fit_windows
out = []
for seed in range(6):
    rng = np.random.default_rng(seed)
    boxes = []
    for r in range(12):
        n = int(rng.integers(0, 12))  # past 7 boxes: the lattice
        x0, y0 = rng.uniform(0, 200, n), rng.uniform(0, 150, n)
        b = np.stack([np.zeros(n), x0, y0, x0 + rng.uniform(2, 60, n), y0 + rng.uniform(2, 60, n)], 1)
        boxes.append(np.clip(b, 0, [0, 224, 160, 224, 160]).astype(np.float32))
    plan = fit_windows(plan_mix(mix_rng(seed, 1, 2), 12, 160, 224, mosaic=0.8), boxes)
    out.append(plan.windows.tolist())
print(json.dumps(out))
"""


@pytest.mark.parametrize("arch", ["arm64", "armhf"])
def test_windows_are_the_same_on_emulated_pis(arch, tmp_path):
    """32-bit intp, another numpy and BLAS: the same windows (the search's sums are small exact integers)."""
    from scripts_under_test import run_on_pi

    repo = Path(__file__).resolve().parents[2]
    here = subprocess.run(
        [sys.executable, "-c", FIT_PROBE], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )  # fmt: skip
    proc = run_on_pi(arch, FIT_PROBE, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == json.loads(here.stdout)


def test_crowded_or_non_finite_boxes_keep_the_search_bounded():
    """A crafted pack's labels: past MAX_BOXES a record keeps its central window; NaN and inf boxes are ignored."""
    from edgeaug.device.online_mix_fit import MAX_BOXES

    rng = np.random.default_rng(4)
    crowd = _boxes(rng, MAX_BOXES + 1)
    odd = np.array([[0, np.nan, 1, 5, 5], [0, 2, 2, np.inf, 9], [0, -np.inf, 0, 3, 3]], np.float32)
    boxes = [crowd, odd] + [None] * 6
    plan = fit_windows(plan_mix(mix_rng(8, 0, 0), 8, H, W, mosaic=1.0), boxes)
    for j in range(8):
        for q, (x0, y0, x1, y1) in enumerate(plan.quadrant_rects(j)):
            if int(plan.quads[j, q]) in (0, 1):  # both behave as records without boxes
                assert tuple(plan.windows[j, q]) == ((W - (x1 - x0)) // 2, (H - (y1 - y0)) // 2)
