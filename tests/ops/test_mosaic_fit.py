"""The mosaic's box-aware windows (edgeaug.ops.mosaic_fit, ``windows = "boxes"``): the best window, fewer cuts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgeaug.ops.instances_geom import InstanceLabels
from edgeaug.ops.mosaic_fit import best_window
from edgeaug.ops.multi import Mosaic

TILE, VIEW = (40.0, 30.0), (17.5, 12.25)


def _status(boxes, sx, sy, view):
    x0, y0, x1, y1 = boxes.T
    inside = (sx <= x0) & (sx + view[0] >= x1) & (sy <= y0) & (sy + view[1] >= y1)
    overlap = (sx < x1) & (sx + view[0] > x0) & (sy < y1) & (sy + view[1] > y0)
    return int((overlap & ~inside).sum()), int(inside.sum())


@pytest.mark.parametrize("seed", range(30))
def test_no_window_on_a_fine_grid_beats_the_pick(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 7))
    xy = rng.uniform(0, [TILE[0] - 3, TILE[1] - 3], (n, 2))
    boxes = np.concatenate([xy, np.minimum(xy + rng.uniform(1, 12, (n, 2)), TILE)], 1)
    default = (float(rng.uniform(0, TILE[0] - VIEW[0])), float(rng.uniform(0, TILE[1] - VIEW[1])))
    sx, sy = best_window(boxes, TILE, VIEW, default)
    assert 0 <= sx <= TILE[0] - VIEW[0] and 0 <= sy <= TILE[1] - VIEW[1]
    cut, whole = _status(boxes, sx, sy, VIEW)
    grid = itertools.product(np.arange(0, TILE[0] - VIEW[0], 0.25), np.arange(0, TILE[1] - VIEW[1], 0.25))
    best = min((c, -w) for x, y in grid for c, w in [_status(boxes, x, y, VIEW)])
    assert (cut, -whole) <= best  # the candidates hold every position where a box's status changes
    c0, w0 = _status(boxes, *default, VIEW)
    assert (cut, -whole) <= (c0, -w0)  # never worse than Ultralytics' corner


def test_without_boxes_or_room_the_window_stays_at_the_corner():
    assert best_window(np.zeros((0, 4)), TILE, VIEW, (3.5, 2.0)) == (3.5, 2.0)
    boxes = np.array([[1.0, 1.0, 5.0, 5.0]])
    assert best_window(boxes, TILE, (50.0, 40.0), (-2.0, -3.0)) == (-2.0, -3.0)  # the view is larger than the tile


def _images(seed, n=4):
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(n):
        w, h = int(rng.integers(120, 200)), int(rng.integers(100, 180))
        img = np.full((h, w, 3), 40 + 40 * i, np.uint8)
        boxes = []
        for k in range(4):
            x0, y0 = rng.uniform(0, w - 30), rng.uniform(0, h - 30)
            x1, y1 = x0 + rng.uniform(10, 30), y0 + rng.uniform(10, 30)
            img[int(y0) : int(y1), int(x0) : int(x1)] = 200
            boxes.append([4 * i + k, int(x0), int(y0), int(x1), int(y1)])
        images.append(img)
        labels.append(InstanceLabels(np.array(boxes, np.float32)))
    return images, labels


def _fragments(windows: str) -> int:
    """Boxes the mosaic keeps at less than their full size, over 20 seeded mosaics."""
    op = Mosaic(1.0, windows=windows, scale=[1.0, 1.0], translate=[0.0, 0.0])
    cut = 0
    for seed in range(20):
        images, labels = _images(seed)
        params = op.sample(np.random.default_rng(seed), (96, 96), n_candidates=3)
        params["partners"] = [0, 1, 2]
        _, lab = op.apply(images, labels, params, (96, 96), 114, 0.0, "letterbox")
        full = {int(b[0]): b for lb in labels for b in lb.boxes}
        for b in lab.boxes:
            src = full[int(b[0])]
            r = min(96 / images[int(b[0]) // 4].shape[1], 96 / images[int(b[0]) // 4].shape[0])
            cut += (b[3] - b[1]) * (b[4] - b[2]) < 0.99 * r * r * (src[3] - src[1]) * (src[4] - src[2])
    return cut


def test_box_windows_cut_fewer_objects_than_ultralytics_corners():
    assert _fragments("boxes") < 0.5 * _fragments("corner")


def test_without_boxes_the_output_is_ultralytics_mosaic():
    op_b, op_c = Mosaic(1.0, windows="boxes"), Mosaic(1.0)
    images, _ = _images(3)
    empty = [InstanceLabels() for _ in images]
    params = op_c.sample(np.random.default_rng(5), (96, 96), n_candidates=3)
    params["partners"] = [0, 1, 2]
    a, _ = op_b.apply(images, empty, params, (96, 96), 114, 0.1, "letterbox")
    b, _ = op_c.apply(images, empty, params, (96, 96), 114, 0.1, "letterbox")
    assert a.tobytes() == b.tobytes()
