"""Boxes through a warp: each box's outline transformed, clipped to the frame, kept by visibility.

One implementation for every warp that moves boxes: the builder's geometry
stage (:mod:`edgeaug.builder.augment`) and the auto policies' geometric members
(:mod:`edgeaug.ops.policy_ops`).  Clipping the transformed outline (not its
bounding box) keeps a rotated box that leaves the frame tight around what is
still visible.
"""

from __future__ import annotations

import numpy as np


def transform_points(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Points (n, 2) through the 3x3 matrix ``m`` (projective division), as float32."""
    h = np.c_[pts.astype(np.float64), np.ones(len(pts))] @ m.T
    return (h[:, :2] / h[:, 2:3]).astype(np.float32)


def warp_boxes(boxes: np.ndarray, m: np.ndarray, w: int, h: int, min_vis: float) -> np.ndarray:
    """Rows ``[class, x0, y0, x1, y1]`` through ``m``: see :func:`clip_outlines` (the outline is the 4 corners)."""
    boxes = np.asarray(boxes).reshape(-1, 5)
    x0, y0, x1, y1 = boxes[:, 1], boxes[:, 2], boxes[:, 3], boxes[:, 4]
    corners = np.stack([np.c_[x0, y0], np.c_[x1, y0], np.c_[x1, y1], np.c_[x0, y1]], 1)
    quads = transform_points(m, corners.reshape(-1, 2)).reshape(-1, 4, 2).astype(np.float64)
    return clip_outlines(boxes, quads, w, h, min_vis)


def clip_outlines(boxes: np.ndarray, outlines: np.ndarray, w: float, h: float, min_vis: float) -> np.ndarray:
    """Each box's transformed outline (a polygon) clipped to [0, w] x [0, h]; its bounding box is kept.

    A box is dropped when the visible fraction of its transformed area is
    below ``min_vis`` (or nothing is visible).  Returns float32 rows (n, 5).
    """
    out = []
    for cls, poly in zip(boxes[:, 0], outlines):
        vis = clip_polygon(poly, w, h)
        kept = area(vis)
        if kept > 0 and kept >= min_vis * max(area(poly), 1e-12):
            out.append([cls, *vis.min(0), *vis.max(0)])
    return np.array(out, np.float32).reshape(-1, 5)


def area(poly: np.ndarray) -> float:
    """Shoelace area of a polygon (n, 2); 0 for fewer than 3 points."""
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2


def clip_polygon(poly: np.ndarray, w: float, h: float) -> np.ndarray:
    """Sutherland-Hodgman clipping of a polygon to [0, w] x [0, h] (the frame is convex)."""
    for axis, bound, keep_below in ((0, 0.0, False), (0, w, True), (1, 0.0, False), (1, h, True)):
        if not len(poly):
            break
        d = (poly[:, axis] - bound) * (-1 if keep_below else 1)  # >= 0: inside
        pts = []
        for p, q, a, b in zip(poly, np.roll(poly, -1, 0), d, np.roll(d, -1)):
            if a >= 0:
                pts.append(p)
            if (a >= 0) != (b >= 0):
                pts.append(p + (q - p) * (a / (a - b)))
        poly = np.array(pts).reshape(-1, 2)
    return poly
