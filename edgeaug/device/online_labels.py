"""Labels under the online flip and shift: boxes, keypoints (left/right pairs swapped), masks and instances.

Coordinates follow the builder: boxes ``[class, x0, y0, x1, y1]`` and
keypoints ``[x, y, visible]`` in pixels of the tensor, pixel ``i`` spanning
``[i, i + 1)``, so a mirror maps ``x`` to ``W - x``.  numpy and stdlib only.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from .instances import instance_boxes  # bundle: drop
from .online import apply_online, fill_online  # bundle: drop


def transform_boxes(
    boxes: np.ndarray, width: int, height: int, flip: bool, shift, min_visibility: float = 0.0
) -> np.ndarray:
    """Boxes ``(n, 5) [class, x0, y0, x1, y1]`` after the record's flip and shift.

    Boxes are clipped to the frame; a box is dropped when nothing of it is
    left, or less than ``min_visibility`` of its area (the builder's rule).
    """
    b, keep = _moved_boxes(boxes, width, height, flip, shift, min_visibility)
    return b[keep]


def _moved_boxes(boxes, width: int, height: int, flip: bool, shift, min_visibility: float):
    """Every box moved and clipped, and which of them stay (see :func:`transform_boxes`)."""
    b = np.array(boxes, np.float32).reshape(-1, 5)
    dx, dy = (int(v) for v in shift)
    if flip:
        b[:, [1, 3]] = width - b[:, [3, 1]]
    b[:, [1, 3]] += dx
    b[:, [2, 4]] += dy
    area = (b[:, 3] - b[:, 1]) * (b[:, 4] - b[:, 2])
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, width)
    b[:, [2, 4]] = np.clip(b[:, [2, 4]], 0, height)
    kept = (b[:, 3] - b[:, 1]) * (b[:, 4] - b[:, 2])
    return b, (kept > 0) & (kept >= min_visibility * np.maximum(area, 1e-12))


def transform_instances(
    boxes: np.ndarray, instances: np.ndarray, flip: bool, shift, min_visibility: float = 0.0
) -> Tuple[np.ndarray, np.ndarray]:
    """Boxes ``(n, 5)`` and their instance masks ``(n, H, W)`` after the flip and shift, still row-aligned.

    Each mask moves like the semantic mask (exposed border empty).  A box is
    kept by :func:`transform_boxes`'s rule, then cut to its mask's remaining
    pixels and dropped with an empty mask (as the online mix does).
    """
    inst = np.asarray(instances, bool)
    n, height, width = inst.shape
    b, keep = _moved_boxes(boxes, width, height, flip, shift, min_visibility)
    moved = np.zeros_like(inst)
    for k in np.flatnonzero(keep):
        moved[k] = transform_mask(inst[k].view(np.uint8), flip, shift).view(bool)
    nonempty = moved.any(axis=(1, 2)) if n else np.zeros(0, bool)
    keep &= nonempty
    bounds = instance_boxes(moved[keep])
    b = b[keep]
    b[:, 1:3] = np.maximum(b[:, 1:3], bounds[:, :2])  # the box cut to its mask's remaining pixels
    b[:, 3:5] = np.minimum(b[:, 3:5], bounds[:, 2:])
    return b, moved[keep]


def flip_permutation(flip_pairs, n: int) -> np.ndarray:
    """Index array ``p`` with ``mirrored[i] = keypoints[p[i]]`` for ``n`` keypoints.

    ``flip_pairs`` is either a list of ``(a, b)`` pairs (indices into one
    instance) or YOLO pose's ``flip_idx`` (a permutation of one instance's
    keypoints).  Instances of K keypoints repeat: ``n`` must be a multiple
    of K, where K is ``len(flip_idx)`` (or ``n`` for pairs).
    """
    if flip_pairs is None or not len(flip_pairs):
        return np.arange(n)
    first = flip_pairs[0]
    if np.ndim(first) == 1:  # pairs
        k = n
        p = np.arange(k)
        for a, b in flip_pairs:
            if not (0 <= int(a) < k and 0 <= int(b) < k):
                raise ValueError(f"flip pair ({a}, {b}) outside {k} keypoints")
            p[int(a)], p[int(b)] = int(b), int(a)
    else:
        p = np.asarray(flip_pairs, np.int64)
        k = len(p)
        if sorted(p.tolist()) != list(range(k)):
            raise ValueError(f"flip_idx {p.tolist()} is not a permutation of 0..{k - 1}")
    if k == 0 or n % k:
        raise ValueError(f"{n} keypoints are not whole instances of {k}")
    return (np.arange(0, n, k)[:, None] + p[None, :]).reshape(-1)


def transform_keypoints(
    keypoints: np.ndarray, width: int, height: int, flip: bool, shift, flip_pairs: Optional[Sequence] = None
) -> np.ndarray:
    """Keypoints ``(n, 3) [x, y, visible]`` after the flip and shift.

    On a mirror the left/right pairs swap places (``flip_pairs``, see
    :func:`flip_permutation`); points that leave the frame keep their
    coordinates with ``visible`` set to 0, as the builder does.
    """
    k = np.array(keypoints, np.float32).reshape(-1, 3)
    dx, dy = (int(v) for v in shift)
    if flip:
        k[:, 0] = width - k[:, 0]
        k = k[flip_permutation(flip_pairs, len(k))]
    k[:, 0] += dx
    k[:, 1] += dy
    inside = (k[:, 0] >= 0) & (k[:, 0] < width) & (k[:, 1] >= 0) & (k[:, 1] < height)
    k[:, 2] = np.where(inside, k[:, 2], 0)
    return k


def transform_mask(mask: Optional[np.ndarray], flip: bool, shift, fill: int = 0) -> Optional[np.ndarray]:
    """A new (H, W) mask after the flip and shift; the exposed border is ``fill`` (0 or an ignore value)."""
    if mask is None:
        return None
    m = np.ascontiguousarray(mask)
    out = np.empty_like(m)
    fill_online(out[:, :, None], m[:, :, None], "NHWC", flip, int(shift[0]), int(shift[1]), [fill])
    return out


def transform_record(
    rec: Dict[str, Any],
    layout: str,
    flip: bool,
    shift,
    fill,
    flip_pairs: Optional[Sequence] = None,
    min_visibility: float = 0.0,
    mask_fill: int = 0,
) -> Dict[str, Any]:
    """A copy of a loader record dict (``Pack.record``) with tensor and labels transformed alike."""
    x = np.ascontiguousarray(rec["x"]).copy()
    apply_online(x[None], layout, [flip], [shift], fill)
    h, w = (x.shape[0], x.shape[1]) if layout == "NHWC" else (x.shape[1], x.shape[2])
    out = dict(rec, x=x)
    if rec.get("instances") is not None:
        moved = transform_instances(rec["boxes"], rec["instances"], flip, shift, min_visibility)
        out["boxes"], out["instances"] = moved
    elif rec.get("boxes") is not None:
        out["boxes"] = transform_boxes(rec["boxes"], w, h, flip, shift, min_visibility)
    if rec.get("keypoints") is not None:
        out["keypoints"] = transform_keypoints(rec["keypoints"], w, h, flip, shift, flip_pairs)
    out["mask"] = transform_mask(rec.get("mask"), flip, shift, mask_fill)
    return out
