"""Box-aware windows for the online mosaic: each quadrant shows the part of its record that cuts the fewest objects.

The plain online mosaic (:mod:`.online_mix`) copies the **central** window of
each record into its quadrant.  Where the records hold boxes, a window that
crosses an object keeps a fragment of it: a labelled piece of a digit, or
(under ``min_visibility``) pixels of an object with no box.  Measured on the
study's detection task, 67% of the objects a batch mosaic kept were fragments
(``docs/study.md``).  :func:`fit_windows` moves each quadrant's window inside
its record (the quadrant itself, the records and the centre are the plan's
seeded draws, unchanged) to the position that, in this order:

1. cuts the fewest boxes (a box is cut when the window overlaps it without
   holding all of it);
2. holds the most boxes whole;
3. lies nearest (L1) to the central window, the plain mosaic's choice; then
   the lowest ``sy``, then ``sx``.

The windows are a pure function of the plan and the boxes: no draw, so a
batch stays a function of (seed, epoch, batch) and its records.  The
candidates per axis are the positions where a box's status can change (a box
edge on a window edge) plus both ends and the centre, so the pick is the best
of all integer positions; past :data:`MAX_CANDIDATES` per axis (many boxes) a
uniform lattice of that many positions is searched instead.  Albumentations'
``BBoxSafeRandomCrop`` keeps every box by choosing the crop; this keeps the
quadrant's size and moves the crop.  numpy and stdlib only.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from .online_mix import MixPlan  # bundle: drop

MAX_CANDIDATES = 33  # window starts per axis and quadrant: exact up to 7 boxes, past them a uniform lattice
MAX_BOXES = 128  # a record with more boxes keeps its central window: bounds the search's memory (~9 MB a batch)
_FAR = -1e9  # padding boxes: never inside nor overlapping a window, their candidates clip to 0


def _axis_candidates(lo: np.ndarray, hi: np.ndarray, n: np.ndarray, size: np.ndarray, frame: int) -> np.ndarray:
    """``(Q, C)`` window starts per quadrant worth trying along one axis, sorted (repeats allowed).

    ``lo``/``hi`` ``(Q, m)``: the box edges of each quadrant's record (padded
    with :data:`_FAR`), ``n`` ``(Q,)`` its real box count, ``size`` ``(Q,)``
    the quadrant's side.  Where some box becomes whole, cut or outside, both
    ends and the centre; with more than 7 boxes a lattice of
    :data:`MAX_CANDIDATES` starts and the centre.
    """
    top = (frame - size)[:, None]
    s = size[:, None]
    edges = np.concatenate([np.floor(lo), np.ceil(hi) - s, np.floor(lo) - s, np.ceil(hi)], axis=1)
    ends = np.concatenate([np.zeros_like(top), top, top // 2], axis=1)
    cand = np.concatenate([edges.astype(np.int64), ends], axis=1)
    c = cand.shape[1]
    if c > MAX_CANDIDATES:  # the lattice rows, then every row cut to MAX_CANDIDATES columns
        lattice = np.rint(np.linspace(0.0, 1.0, MAX_CANDIDATES - 1)[None, :] * top).astype(np.int64)
        many = np.concatenate([lattice, top // 2], axis=1)
        few = np.sort(np.clip(cand, 0, top), axis=1)[:, c - MAX_CANDIDATES :]  # drops only repeats of 0
        cand = np.where((4 * n + 3 > MAX_CANDIDATES)[:, None], many, few)
    return np.sort(np.clip(cand, 0, top), axis=1)


def pick_windows(sx: np.ndarray, sy: np.ndarray, boxes: np.ndarray, view: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """``(Q, 2)`` starts ``(sx, sy)``, one per window, chosen among candidates by the module's rule.

    ``sx (Q, Cx)``, ``sy (Q, Cy)``: sorted candidate starts; ``boxes (Q, m, 4)``
    ``x0, y0, x1, y1`` (padded with :data:`_FAR`); ``view (Q, 2)`` the windows'
    ``(width, height)``; ``anchor (Q, 2)`` the start ties go nearest to.  The
    counts of whole and touched boxes per candidate pair are products of the
    per-axis tables.  Integer or float positions alike (the builder's mosaic
    tiles, :mod:`edgeaug.ops.mosaic_fit`, use floats).
    """
    x0, y0, x1, y1 = (boxes[:, None, :, k] for k in range(4))
    ex, ey = sx[:, :, None], sy[:, :, None]
    qw, qh = view[:, 0, None, None], view[:, 1, None, None]
    m = boxes.shape[1]
    in_x = (ex <= x0) & (ex + qw >= x1)  # (Q, Cx, m): the box within the span
    ov_x = (ex < x1) & (ex + qw > x0)  # overlapping it
    in_y = (ey <= y0) & (ey + qh >= y1)
    ov_y = (ey < y1) & (ey + qh > y0)
    # One product gives (m + 1) * touched - (m + 2) * whole per (sy, sx): cut first, then whole, as the rule
    # orders them (touched = cut + whole).  Small integers: exact in float64 whatever the summation order.
    left = np.concatenate([ov_y * float(m + 1), in_y * -float(m + 2)], axis=2)
    right = np.concatenate([ov_x, in_x], axis=2).astype(np.float64).transpose(0, 2, 1)
    dist = np.abs(sy - anchor[:, 1, None])[:, :, None] + np.abs(sx - anchor[:, 0, None])[:, None, :]
    key = np.matmul(left, right)
    key *= float(dist.max()) + 1.0  # above every distance: the counts decide first
    key += dist
    flat = key.reshape(len(key), -1).argmin(axis=1)  # the first minimum: lowest sy, then sx
    q = np.arange(len(key))
    return np.stack([sx[q, flat % sx.shape[1]], sy[q, flat // sx.shape[1]]], axis=1)


def _best_windows(boxes: np.ndarray, n: np.ndarray, sizes: np.ndarray, w: int, h: int) -> np.ndarray:
    """``(Q, 2)`` window corners ``(sx, sy)`` by the module's rule, all quadrants at once.

    ``boxes (Q, m, 4)`` ``x0, y0, x1, y1`` per quadrant's record (padded with
    :data:`_FAR`), ``n (Q,)`` real counts, ``sizes (Q, 2)`` the windows'
    ``(width, height)``; ties go nearest the central window.
    """
    sx = _axis_candidates(boxes[:, :, 0], boxes[:, :, 2], n, sizes[:, 0], w)  # (Q, Cx)
    sy = _axis_candidates(boxes[:, :, 1], boxes[:, :, 3], n, sizes[:, 1], h)  # (Q, Cy)
    return pick_windows(sx, sy, boxes, sizes, (np.array([w, h]) - sizes) // 2)


def _best_window(boxes: np.ndarray, size_w: int, size_h: int, w: int, h: int) -> Tuple[int, int]:
    """One window: ``boxes (n, 4)`` ``x0, y0, x1, y1`` of a ``w x h`` record, the window ``size_w x size_h``."""
    b = np.asarray(boxes, np.float64).reshape(1, -1, 4)
    if not b.shape[1]:
        b = np.full((1, 1, 4), _FAR)
    sx, sy = _best_windows(b, np.array([len(boxes)]), np.array([[size_w, size_h]]), w, h)[0].tolist()
    return int(sx), int(sy)


def _record_boxes(boxes: Optional[np.ndarray], row: int) -> np.ndarray:
    """A record's ``(n, 5)`` ``[class, x0, y0, x1, y1]`` boxes as ``(m, 4)`` float64 corners.

    Empty and non-finite boxes are left out; past :data:`MAX_BOXES` none are
    kept (the record keeps its central window).
    """
    if boxes is None:
        return np.zeros((0, 4))
    b = np.asarray(boxes, np.float64)
    if b.ndim != 2 or b.shape[1] != 5:
        raise ValueError(f"fit_windows: record {row}: boxes {b.shape} must be (n, 5)")
    b = b[np.isfinite(b).all(axis=1), 1:]
    b = b[(b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])]
    return b if len(b) <= MAX_BOXES else np.zeros((0, 4))


def fit_windows(plan: MixPlan, boxes: Sequence[Optional[np.ndarray]]) -> MixPlan:
    """Set ``plan.windows`` from the batch's boxes (``boxes[r]``: batch row ``r``'s ``(n, 5)`` boxes) and return it.

    Only the mosaic outputs' windows move; the others keep the central ones.
    Boxes are in pixels of the frame, as :meth:`Pack.record` gives them.
    """
    if len(boxes) != len(plan):
        raise ValueError(f"fit_windows: boxes of {len(boxes)} records for a plan of {len(plan)} outputs")
    corners = [_record_boxes(b, r) for r, b in enumerate(boxes)]
    h, w = plan.height, plan.width
    quads = plan.quadrant_array()
    sizes = quads[..., 2:] - quads[..., :2]  # (B, 4, 2) widths and heights
    windows = (np.array([w, h]) - sizes) // 2  # the central ones
    rows = np.flatnonzero(plan.mosaic)
    if len(rows):
        counts = np.array([len(c) for c in corners], np.int64)
        padded = np.full((len(plan), max(1, int(counts.max())), 4), _FAR)
        for r, c in enumerate(corners):
            padded[r, : len(c)] = c
        recs = plan.quads[rows].reshape(-1)
        best = _best_windows(padded[recs], counts[recs], sizes[rows].reshape(-1, 2), w, h)
        windows[rows] = best.reshape(-1, 4, 2)
    plan.windows = windows.astype(np.int64)
    return plan
