"""One resampling for geometry that includes field ops (elastic, grid, lens, chromatic aberration).

The geometry of a record is a chain of *stages*: 3x3 matrices (runs of
matrix ops, the last one including the final resize) and fields
``(op, params, frame size)`` between them.  For every output pixel centre
the chain is walked backwards (inverse matrices, each field's ``backward``)
to the source, and ONE ``cv2.remap`` samples the source there.  Labels walk
it forwards (matrices, each field's ``forward``).  Chains without fields
never come here: :class:`~edgeaug.builder.augment.Augmenter` keeps its one
matrix warp for them, byte for byte.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np

Stage = Union[np.ndarray, Tuple[Any, Dict[str, Any], Tuple[float, float]]]
EDGE_SAMPLES = 32  # points per box edge: a distorted outline is a curve


def inverse3(m: np.ndarray) -> np.ndarray:
    """The inverse of a 3x3 matrix by cofactors (no LAPACK call: see Augmenter.render)."""
    c = np.array(
        [
            [
                m[1, 1] * m[2, 2] - m[1, 2] * m[2, 1],
                m[0, 2] * m[2, 1] - m[0, 1] * m[2, 2],
                m[0, 1] * m[1, 2] - m[0, 2] * m[1, 1],
            ],
            [
                m[1, 2] * m[2, 0] - m[1, 0] * m[2, 2],
                m[0, 0] * m[2, 2] - m[0, 2] * m[2, 0],
                m[0, 2] * m[1, 0] - m[0, 0] * m[1, 2],
            ],
            [
                m[1, 0] * m[2, 1] - m[1, 1] * m[2, 0],
                m[0, 1] * m[2, 0] - m[0, 0] * m[2, 1],
                m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0],
            ],
        ]
    )
    return c / (m[0, 0] * c[0, 0] + m[0, 1] * c[1, 0] + m[0, 2] * c[2, 0])


def apply_matrix(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    h = pts @ m[:2, :2].T + m[:2, 2]
    w = pts @ m[2, :2] + m[2, 2]
    return h / w[:, None]


def backward(stages: List[Stage], pts: np.ndarray, channel: Optional[int] = None) -> np.ndarray:
    """Output points (n, 2) -> source points, continuous coordinates."""
    for st in reversed(stages):
        if isinstance(st, np.ndarray):
            pts = apply_matrix(inverse3(st), pts)
        else:
            op, params, size = st
            pts = op.backward(params, size, pts, channel)
    return pts


def forward(stages: List[Stage]) -> Callable[[np.ndarray], np.ndarray]:
    """The source -> output map of the chain, for labels."""

    def fn(pts: np.ndarray) -> np.ndarray:
        pts = np.asarray(pts, np.float64)
        for st in stages:
            if isinstance(st, np.ndarray):
                pts = apply_matrix(st, pts)
            else:
                op, params, size = st
                pts = op.forward(params, size, pts)
        return pts

    return fn


def maps(stages: List[Stage], pre: np.ndarray, size: Tuple[int, int], channel: Optional[int]):
    """``cv2.remap``'s float32 maps: each output pixel's position in the (pre-shrunk) source image.

    ``pre`` maps source coordinates to the image actually passed (the pre-shrink).
    """
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    pts = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5], 1)
    src = apply_matrix(pre, backward(stages, pts, channel)) - 0.5  # to OpenCV's pixel-centre indices
    return src[:, 0].reshape(h, w).astype(np.float32), src[:, 1].reshape(h, w).astype(np.float32)


def remap(
    img: np.ndarray, stages: List[Stage], pre: np.ndarray, size: Tuple[int, int], kw: Dict[str, Any]
) -> np.ndarray:
    """Resample ``img`` once through the chain; per-channel fields get one map per channel."""
    import cv2

    if any(not isinstance(st, np.ndarray) and st[0].per_channel for st in stages) and img.ndim == 3:
        planes = []
        for c in range(min(3, img.shape[2])):  # RGB(A): alpha is dropped after the warp anyway
            mx, my = maps(stages, pre, size, c)
            planes.append(cv2.remap(img, mx, my, **kw).reshape(size[1], size[0], -1)[..., c])
        return np.ascontiguousarray(np.stack(planes, -1))
    mx, my = maps(stages, pre, size, None)
    return cv2.remap(img, mx, my, **kw).reshape(size[1], size[0], *img.shape[2:])


def outline(boxes: np.ndarray) -> np.ndarray:
    """Each box's outline (n, 4 * EDGE_SAMPLES, 2), clockwise from the top-left corner."""
    x0, y0, x1, y1 = (boxes[:, i].astype(np.float64) for i in (1, 2, 3, 4))
    corners = np.stack([np.c_[x0, y0], np.c_[x1, y0], np.c_[x1, y1], np.c_[x0, y1]], 1)
    t = np.linspace(0.0, 1.0, EDGE_SAMPLES, endpoint=False)[None, :, None]
    edges = [corners[:, i, None] + t * (corners[:, (i + 1) % 4, None] - corners[:, i, None]) for i in range(4)]
    return np.concatenate(edges, 1)
