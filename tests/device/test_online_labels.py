"""Online flip and shift of the labels (edgeaug.device.online_labels): boxes, keypoints and masks follow the pixels."""

from __future__ import annotations

import numpy as np
import pytest
from online_reference import reference as _reference

from edgeaug.device.online import apply_online
from edgeaug.device.online_labels import (
    flip_permutation,
    transform_boxes,
    transform_keypoints,
    transform_mask,
    transform_record,
)

# --- labels ------------------------------------------------------------------------


def _paint_box(h, w, box):
    img = np.zeros((h, w, 1), np.uint8)
    _, x0, y0, x1, y1 = (int(v) for v in box)
    img[y0:y1, x0:x1] = 1
    return img


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("shift", [(0, 0), (3, -2), (-4, 5)])
def test_boxes_follow_the_pixels(flip, shift):
    h, w = 20, 24
    box = np.array([[2, 5, 3, 11, 9]], np.float32)
    img = _paint_box(h, w, box[0])
    apply_online(img[None], "NHWC", [flip], [shift], 0)
    out = transform_boxes(box, w, h, flip, shift)
    ys, xs = np.nonzero(img[..., 0])
    assert out.tolist() == [[2, xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]


def test_boxes_are_clipped_and_dropped_by_visibility():
    boxes = np.array([[0, 0, 0, 4, 4], [1, 10, 10, 14, 14]], np.float32)
    out = transform_boxes(boxes, 16, 16, False, (-3, 0), min_visibility=0.3)
    assert out.tolist() == [[1, 7, 10, 11, 14]]  # the first keeps 1/4 of its area < 0.3
    out = transform_boxes(boxes, 16, 16, False, (-3, 0), min_visibility=0.2)
    assert out.tolist() == [[0, 0, 0, 1, 4], [1, 7, 10, 11, 14]]
    assert transform_boxes(boxes, 16, 16, False, (-4, 0)).tolist() == [[1, 6, 10, 10, 14]]  # nothing left


@pytest.mark.parametrize("flip", [False, True])
def test_keypoints_follow_the_pixels_and_swap_sides(flip):
    h, w = 12, 16
    # keypoints at pixel centres: 0 = left eye, 1 = right eye, 2 = nose
    kp = np.array([[3.5, 4.5, 2], [10.5, 4.5, 2], [7.5, 8.5, 1]], np.float32)
    img = np.zeros((h, w, 1), np.uint8)
    for i, (x, y, _) in enumerate(kp):
        img[int(y), int(x)] = 10 + i
    shift = (2, -1)
    apply_online(img[None], "NHWC", [flip], [shift], 0)
    out = transform_keypoints(kp, w, h, flip, shift, flip_pairs=[(0, 1)])
    for i, (x, y, v) in enumerate(out):
        moved = img[int(y), int(x), 0]
        # The point now named i sits on the pixel of the point that was i (no flip) or its pair (flip).
        src = {0: 1, 1: 0, 2: 2}[i] if flip else i
        assert moved == 10 + src and v == kp[src, 2]


def test_keypoints_leaving_the_frame_become_invisible():
    kp = np.array([[1.0, 1.0, 2], [8.0, 8.0, 2]], np.float32)
    out = transform_keypoints(kp, 10, 10, False, (-2, 0))
    assert out.tolist() == [[-1.0, 1.0, 0.0], [6.0, 8.0, 2.0]]


def test_flip_permutation_accepts_pairs_and_yolo_flip_idx():
    assert flip_permutation([(0, 1), (3, 4)], 5).tolist() == [1, 0, 2, 4, 3]
    assert flip_permutation([1, 0, 2], 6).tolist() == [1, 0, 2, 4, 3, 5]  # two instances
    assert flip_permutation(None, 3).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="instances"):
        flip_permutation([1, 0, 2], 4)
    with pytest.raises(ValueError, match="permutation"):
        flip_permutation([0, 0, 2], 3)
    with pytest.raises(ValueError, match="outside"):
        flip_permutation([(0, 5)], 3)


@pytest.mark.parametrize("flip", [False, True])
def test_masks_follow_the_tensor_with_their_own_fill(flip):
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 5, (9, 11)).astype(np.uint8)
    img = mask[None, :, :, None].copy()
    apply_online(img, "NHWC", [flip], [(-3, 2)], np.uint8(255))
    out = transform_mask(mask, flip, (-3, 2), fill=255)
    assert np.array_equal(out, img[0, :, :, 0])
    assert transform_mask(None, flip, (1, 1)) is None


def test_transform_record_moves_tensor_and_labels_together():
    rec = {
        "x": np.arange(2 * 6 * 8, dtype=np.float32).reshape(2, 6, 8),  # NCHW
        "label": 3,
        "boxes": np.array([[0, 1, 1, 3, 3]], np.float32),
        "keypoints": np.array([[1.5, 1.5, 2], [5.5, 1.5, 2]], np.float32),
        "mask": np.eye(6, 8, dtype=np.uint8),
    }
    out = transform_record(rec, "NCHW", True, (1, 0), np.float32(-1), flip_pairs=[(0, 1)])
    assert np.array_equal(out["x"], _reference(rec["x"], "NCHW", True, 1, 0, np.float32(-1)))
    assert out["boxes"].tolist() == [[0, 6, 1, 8, 3]]
    assert out["keypoints"].tolist() == [[3.5, 1.5, 2], [7.5, 1.5, 2]]
    assert np.array_equal(out["mask"], transform_mask(rec["mask"], True, (1, 0)))
    assert out["label"] == 3 and rec["x"][0, 0, 0] == 0  # the input is not modified
