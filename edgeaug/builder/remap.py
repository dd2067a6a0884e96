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
STEP = 4  # output pixels between the nodes where the map is computed exactly (coarse_map)
TOLERANCE = 0.025  # px of the sampled image: cells whose estimated interpolation error is larger go dense


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
    The chain is walked in float64 on a coarse grid only (:func:`coarse_map`).
    """

    def fn(pts: np.ndarray) -> np.ndarray:
        return apply_matrix(pre, backward(stages, pts, channel)) - 0.5  # to OpenCV's pixel-centre indices

    grid = _on_grid(stages, size, channel)
    if grid is not None:
        src = apply_matrix(pre, grid) - 0.5
        return src[:, 0].reshape(size[1], size[0]).astype(np.float32), src[:, 1].reshape(size[1], size[0]).astype(
            np.float32
        )
    if _separable(stages):  # x from x alone, y from y alone: one row and one column are the whole map
        w, h = size
        row = fn(np.c_[np.arange(w) + 0.5, np.full(w, h / 2)])[:, 0].astype(np.float32)
        col = fn(np.c_[np.full(h, w / 2), np.arange(h) + 0.5])[:, 1].astype(np.float32)
        return np.repeat(row[None], h, 0), np.repeat(col[:, None], w, 1)
    smooth = all(isinstance(st, np.ndarray) or getattr(st[0], "smooth", False) for st in stages)
    return coarse_map(fn, size, smooth)


def _on_grid(stages: List[Stage], size: Tuple[int, int], channel: Optional[int]) -> Optional[np.ndarray]:
    """The exact map through a field with ``backward_grid`` (elastic), when it is the only field and only
    axis-aligned matrices follow it: the output pixels' grid stays a grid in its frame.  Else None."""
    fields = [i for i, st in enumerate(stages) if not isinstance(st, np.ndarray)]
    if (
        len(fields) != 1
        or not hasattr(stages[fields[0]][0], "backward_grid")
        or not _separable(stages[fields[0] + 1 :])
    ):
        return None
    k = fields[0]
    w, h = size
    xs = backward(stages[k + 1 :], np.c_[np.arange(w) + 0.5, np.zeros(w)])[:, 0]
    ys = backward(stages[k + 1 :], np.c_[np.zeros(h), np.arange(h) + 0.5])[:, 1]
    op, params, fsize = stages[k]
    return backward(stages[:k], op.backward_grid(params, fsize, xs, ys).reshape(-1, 2), channel)


def _separable(stages: List[Stage]) -> bool:
    """Axis-aligned matrices (scales, shifts, flips) and separable fields (grid distortion, chromatic aberration)."""
    for st in stages:
        if isinstance(st, np.ndarray):
            if st[0, 1] != 0 or st[1, 0] != 0 or st[2, 0] != 0 or st[2, 1] != 0:
                return False
        elif not getattr(st[0], "separable", False):
            return False
    return True


def coarse_map(fn: Callable[[np.ndarray], np.ndarray], size: Tuple[int, int], smooth: bool, step: int = STEP):
    """A map ``fn`` (continuous output points (n, 2) -> (n, 2)) at every pixel centre, as two float32 maps.

    ``fn`` runs in float64 on nodes every ``step`` pixels (reaching past the
    frame's edges), and ``cv2.resize`` (bilinear) fills the pixels between.
    The error is estimated per cell of 2 x 2 steps: the nodes inside it
    against the bilinear interpolation of its corners (a grid twice as coarse).
    Halving the step divides a smooth map's error by 4 (``smooth``: every
    field is C2, e.g. elastic, lens) and a kinked map's (grid distortion) by at
    most 1/2; a cell whose estimated error exceeds :data:`TOLERANCE` px
    (a kink, the fold of a strong lens, a field finer than the grid) gets the
    dense map.  A pure function of ``fn``: the same maps in every worker.
    """
    import cv2

    w, h = size
    s = step
    nx, ny = -(-(w - 1 + (s + 1) // 2) // s) + 2, -(-(h - 1 + (s + 1) // 2) // s) + 2
    nx, ny = nx + 1 - nx % 2, ny + 1 - ny % 2  # odd: whole 2 x 2 cells
    if nx * ny * 4 >= w * h:  # tiny frames: the dense map is as cheap
        return _dense(fn, w, h)
    # Node i sits at pixel index i * s - (s + 1) / 2: where cv2.resize by s, cropped by s, samples it.
    gx, gy = np.arange(nx) * s - s / 2.0, np.arange(ny) * s - s / 2.0
    node = fn(_grid(gx, gy)).reshape(ny, nx, 2)
    with np.errstate(invalid="ignore"):
        est = _coarse_error(node) / (4.0 if smooth else 0.5)
        bad = ~(est <= TOLERANCE)  # NaN counts as bad
    up = cv2.resize(node.astype(np.float32), (nx * s, ny * s), interpolation=cv2.INTER_LINEAR)
    up = up[s : s + h, s : s + w]
    mx, my = np.ascontiguousarray(up[..., 0]), np.ascontiguousarray(up[..., 1])
    if bad.any():
        _patch(fn, mx, my, bad, gx[::2], gy[::2])
    return mx, my


def _coarse_error(node: np.ndarray) -> np.ndarray:
    """Per 2 x 2 cell: the largest gap between a node inside it and the bilinear interpolation of its corners."""
    c = node[::2, ::2]
    centre = np.abs(node[1::2, 1::2] - (c[:-1, :-1] + c[1:, :-1] + c[:-1, 1:] + c[1:, 1:]) / 4).max(2)
    across = np.abs(node[::2, 1::2] - (c[:, :-1] + c[:, 1:]) / 2).max(2)  # top and bottom edges
    down = np.abs(node[1::2, ::2] - (c[:-1] + c[1:]) / 2).max(2)  # left and right edges
    return np.maximum.reduce([centre, across[:-1], across[1:], down[:, :-1], down[:, 1:]])


def _grid(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], 1)


def _dense(fn, w: int, h: int):
    src = fn(_grid(np.arange(w) + 0.5, np.arange(h) + 0.5))
    return src[:, 0].reshape(h, w).astype(np.float32), src[:, 1].reshape(h, w).astype(np.float32)


def _patch(fn, mx: np.ndarray, my: np.ndarray, bad: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> None:
    """Overwrite the pixels of the ``bad`` cells (between nodes ``gx``, ``gy``) with the dense map."""
    h, w = mx.shape
    cols = np.arange(w) + 0.5  # pixel centres; cell i spans gx[i] <= x < gx[i + 1]
    rows = np.arange(h) + 0.5
    ci = np.searchsorted(gx, cols, side="right") - 1
    ri = np.searchsorted(gy, rows, side="right") - 1
    sel = bad[ri[:, None], ci[None, :]]
    yy, xx = np.nonzero(sel)
    src = fn(np.stack([xx + 0.5, yy + 0.5], 1).astype(np.float64))
    mx[yy, xx], my[yy, xx] = src[:, 0], src[:, 1]


def remap(
    img: np.ndarray, stages: List[Stage], pre: np.ndarray, size: Tuple[int, int], kw: Dict[str, Any]
) -> np.ndarray:
    """Resample ``img`` once through the chain; per-channel fields get one map per channel."""
    import cv2

    if any(not isinstance(st, np.ndarray) and st[0].per_channel for st in stages) and img.ndim == 3:
        planes = []
        for c, plane in enumerate(cv2.split(img)[:3]):  # RGB(A): alpha is dropped after the warp anyway
            mx, my = maps(stages, pre, size, c)  # a channel alone: the same bytes, a quarter of the work
            planes.append(cv2.remap(plane, mx, my, **kw).reshape(size[1], size[0]))
        return cv2.merge(planes)
    mx, my = maps(stages, pre, size, None)
    return cv2.remap(img, mx, my, **kw).reshape(size[1], size[0], *img.shape[2:])


def outline(boxes: np.ndarray) -> np.ndarray:
    """Each box's outline (n, 4 * EDGE_SAMPLES, 2), clockwise from the top-left corner."""
    x0, y0, x1, y1 = (boxes[:, i].astype(np.float64) for i in (1, 2, 3, 4))
    corners = np.stack([np.c_[x0, y0], np.c_[x1, y0], np.c_[x1, y1], np.c_[x0, y1]], 1)
    t = np.linspace(0.0, 1.0, EDGE_SAMPLES, endpoint=False)[None, :, None]
    edges = [corners[:, i, None] + t * (corners[:, (i + 1) % 4, None] - corners[:, i, None]) for i in range(4)]
    return np.concatenate(edges, 1)
