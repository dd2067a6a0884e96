"""Instance masks through a record's geometry: the one matrix, or a chain with fields (:mod:`.remap`).

Masks warp by nearest neighbour, like the semantic mask.  An instance is
dropped with its box when nothing of it is left in the frame, or less than
``min_vis`` of its area; each kept box is its warped mask's bounding box.
"""

from __future__ import annotations

from typing import Any, List, Tuple

import numpy as np

from edgeaug.builder import remap


def warp_instances(
    boxes: np.ndarray, masks: np.ndarray, m: np.ndarray, out: Tuple[int, int], min_vis: float
) -> Tuple[np.ndarray, np.ndarray]:
    """Instance masks through the record's one matrix (nearest, as the semantic mask), boxes following.

    An instance is dropped with its box when nothing of it is left in the
    frame or less than ``min_vis`` of its area (its pixel count times the
    matrix's local area scale at the instance's centroid, exact for affine
    matrices); each kept box is its warped mask's bounding box.
    """
    from edgeaug.ops.instances_geom import boxes_from_instances, count, visible, warp_masks

    warped = warp_masks(masks, m, (0, 0, out[0], out[1]), out)
    before = count(masks).astype(np.float64) * _area_scale(m, masks)
    kept = visible(count(warped), before, min_vis)
    return boxes_from_instances(boxes[kept, 0], warped[kept]), warped[kept]


def _area_scale(m: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """|det J| of ``m`` at each mask's centroid: det(m) / w^3 for a homography, det of the linear part if affine."""
    lin = float(m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0])
    if not np.any(m[2, :2]) or not len(masks):
        return np.full(len(masks), abs(lin))
    # det(m) written out (np.linalg.det's LAPACK call wakes OpenBLAS's threads)
    minor1 = m[0, 0] * m[1, 2] - m[0, 2] * m[1, 0]
    minor2 = m[0, 1] * m[1, 2] - m[0, 2] * m[1, 1]
    det = abs(float(m[2, 2] * lin - m[2, 1] * minor1 + m[2, 0] * minor2))
    ys, xs = masks.any(2), masks.any(1)  # centroid of the bounding box: close enough for the visibility rule
    cy = np.array([np.flatnonzero(r).mean() if r.any() else 0 for r in ys]) + 0.5
    cx = np.array([np.flatnonzero(c).mean() if c.any() else 0 for c in xs]) + 0.5
    w = m[2, 0] * cx + m[2, 1] * cy + m[2, 2]
    return det / np.abs(w) ** 3


def remap_instances(
    boxes: np.ndarray, masks: np.ndarray, chain: List[Any], m: np.ndarray, out: Tuple[int, int], min_vis: float
) -> Tuple[np.ndarray, np.ndarray]:
    """Instance masks through a chain with field ops: one nearest remap per instance (fields are not matrices).

    The visibility rule takes the area scale of ``m``, the chain's matrices without
    its fields (the fields move pixels locally but keep areas close to 1).
    """
    import cv2

    from edgeaug.ops.instances_geom import boxes_from_instances, count, visible

    kw = dict(interpolation=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    warped = np.zeros((len(masks), out[1], out[0]), bool)
    for k, mask in enumerate(masks):
        warped[k] = remap.remap(mask.astype(np.uint8), chain, np.eye(3), out, kw).reshape(out[1], out[0]) > 0
    before = count(masks).astype(np.float64) * _area_scale(m, masks)
    kept = visible(count(warped), before, min_vis)
    return boxes_from_instances(boxes[kept, 0], warped[kept]), warped[kept]
