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

from typing import Optional, Sequence

import numpy as np

from .online_mix import MixPlan  # bundle: drop

MAX_CANDIDATES = 65  # per axis and quadrant: 4 x 65 x 65 x boxes booleans per output at most


def _axis_candidates(lo: np.ndarray, hi: np.ndarray, size: int, frame: int) -> np.ndarray:
    """Window starts along one axis worth trying: where some box becomes whole, cut or outside; ends; centre."""
    top = frame - size
    centre = top // 2
    if 4 * len(lo) + 3 > MAX_CANDIDATES:
        cand = np.rint(np.linspace(0, top, MAX_CANDIDATES)).astype(np.int64)
        return np.unique(np.concatenate([cand, [centre]]))
    edges = np.concatenate([np.floor(lo), np.ceil(hi) - size, np.floor(lo) - size, np.ceil(hi)]).astype(np.int64)
    return np.unique(np.clip(np.concatenate([edges, [0, top, centre]]), 0, top))


def _best_window(boxes: np.ndarray, size_w: int, size_h: int, w: int, h: int) -> tuple:
    """``(sx, sy)`` of the ``size_w x size_h`` window of a ``w x h`` record by the module's rule."""
    cx, cy = (w - size_w) // 2, (h - size_h) // 2
    if not len(boxes) or (size_w == w and size_h == h):
        return cx, cy
    x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    sx = _axis_candidates(x0, x1, size_w, w)
    sy = _axis_candidates(y0, y1, size_h, h)
    # (candidates, boxes) per axis: the box inside the window's span, and overlapping it.
    in_x = (sx[:, None] <= x0) & (sx[:, None] + size_w >= x1)
    in_y = (sy[:, None] <= y0) & (sy[:, None] + size_h >= y1)
    ov_x = (sx[:, None] < x1) & (sx[:, None] + size_w > x0)
    ov_y = (sy[:, None] < y1) & (sy[:, None] + size_h > y0)
    whole = (in_y[:, None, :] & in_x[None, :, :]).sum(axis=2)  # (len(sy), len(sx))
    touched = (ov_y[:, None, :] & ov_x[None, :, :]).sum(axis=2)
    n = len(boxes)
    dist = np.abs(sy - cy)[:, None] + np.abs(sx - cx)[None, :]
    key = ((touched - whole) * (n + 1) + (n - whole)) * (w + h + 1) + dist
    iy, ix = np.unravel_index(int(np.argmin(key)), key.shape)  # argmin: the first, i.e. lowest sy then sx
    return int(sx[ix]), int(sy[iy])


def _record_boxes(boxes: Optional[np.ndarray], row: int) -> np.ndarray:
    """A record's ``(n, 5)`` ``[class, x0, y0, x1, y1]`` boxes as ``(m, 4)`` float64 corners, empty ones left out."""
    if boxes is None:
        return np.zeros((0, 4))
    b = np.asarray(boxes, np.float64)
    if b.ndim != 2 or b.shape[1] != 5:
        raise ValueError(f"fit_windows: record {row}: boxes {b.shape} must be (n, 5)")
    b = b[:, 1:]
    return b[(b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])]


def fit_windows(plan: MixPlan, boxes: Sequence[Optional[np.ndarray]]) -> MixPlan:
    """Set ``plan.windows`` from the batch's boxes (``boxes[r]``: batch row ``r``'s ``(n, 5)`` boxes) and return it.

    Only the mosaic outputs' windows move; the others keep the central ones.
    Boxes are in pixels of the frame, as :meth:`Pack.record` gives them.
    """
    if len(boxes) != len(plan):
        raise ValueError(f"fit_windows: boxes of {len(boxes)} records for a plan of {len(plan)} outputs")
    corners = [_record_boxes(b, r) for r, b in enumerate(boxes)]
    h, w = plan.height, plan.width
    windows = np.empty((len(plan), 4, 2), np.int64)
    for j in range(len(plan)):
        for q, (x0, y0, x1, y1) in enumerate(plan.quadrant_rects(j)):
            if plan.mosaic[j]:
                windows[j, q] = _best_window(corners[int(plan.quads[j, q])], x1 - x0, y1 - y0, w, h)
            else:
                windows[j, q] = ((w - (x1 - x0)) // 2, (h - (y1 - y0)) // 2)
    plan.windows = windows
    return plan
