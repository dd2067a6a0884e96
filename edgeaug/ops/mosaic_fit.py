"""Where a mosaic tile shows its image: the window that cuts the fewest boxes (``mosaic`` op, ``windows = "boxes"``).

Ultralytics' mosaic puts each tile against the mosaic's centre, so the output
shows the corner of each image nearest that centre, whatever objects it
crosses.  With ``windows = "boxes"`` the tile keeps its quadrant and the part
of the quadrant the output shows (the view) is unchanged, but the tile slides
inside its quadrant, so the view shows the window of the image that, in this
order: cuts the fewest boxes (a box is cut when the window overlaps it without
holding all of it); holds the most boxes whole; lies nearest Ultralytics'
corner (the same output when there is nothing to gain); has the lowest
``y``, then ``x``.  A pure function of the tile's boxes and the geometry: no
draw.  The device's batch mosaic does the same on integer pixels, and the two
share the choice itself (:func:`edgeaug.device.online_mix_fit.pick_windows`);
here positions are continuous, as the tile's warp is.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from edgeaug.device.online_mix_fit import pick_windows

LATTICE = 65  # starts per axis searched when a tile has more than 15 boxes (4 per box + 3 otherwise)


def _starts(lo: np.ndarray, hi: np.ndarray, view: float, free: float, default: float) -> np.ndarray:
    """Window starts in ``[0, free]`` along one axis where some box's status changes; the ends and ``default``."""
    if 4 * len(lo) + 3 > LATTICE:
        cand = np.linspace(0.0, free, LATTICE - 1)
    else:
        cand = np.concatenate([lo, hi - view, lo - view, hi, [0.0, free]])
    return np.unique(np.clip(np.concatenate([cand, [default]]), 0.0, free))


def best_window(
    boxes: np.ndarray, tile: Tuple[float, float], view: Tuple[float, float], default: Tuple[float, float]
) -> Tuple[float, float]:
    """The start ``(sx, sy)`` in tile pixels of the ``view``-sized window of a ``tile``-sized image.

    ``boxes (n, 4)``: ``x0, y0, x1, y1`` in tile pixels.  An axis where the
    view is larger than the tile has no choice: it keeps ``default``.
    """
    starts = []
    for k in (0, 1):
        free = tile[k] - view[k]
        fixed = free <= 0 or not len(boxes)
        starts.append(
            np.array([float(default[k])]) if fixed else _starts(boxes[:, k], boxes[:, k + 2], view[k], free, default[k])
        )
    if len(starts[0]) == len(starts[1]) == 1:
        return float(starts[0][0]), float(starts[1][0])
    b = np.asarray(boxes, np.float64)[None]
    sx, sy = pick_windows(
        starts[0][None], starts[1][None], b, np.array([view], np.float64), np.array([default], np.float64)
    )[0]
    return float(sx), float(sy)
