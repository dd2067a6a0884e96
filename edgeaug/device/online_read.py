"""Online flip and shift done during a batch's read: the reader copies each record moved, then a border fill.

:func:`read_moves` gives, per record, the byte offset to read its tensor at;
:class:`OnlineBatch` mirrors flipped records and fills the exposed borders
right after each read, while the bytes are in cache.  The result equals
:func:`~edgeaug.device.online.apply_online` on the records read unmoved.
Numpy and the standard library only.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np

from .online import fill_borders, mirror_into, pixel_units, reversed_into  # bundle: drop


def _scratch_mirror(x: np.ndarray, scratch: np.ndarray, layout: str) -> Callable[[int], None]:
    """``f(j)``: ``x[j] =`` the scratch record mirrored; the views are made once per batch, not per record."""
    unit = x.itemsize * (1 if layout == "NCHW" else x.shape[-1])
    if unit not in (1, 2, 4, 8) or not (x.flags.c_contiguous and scratch.flags.c_contiguous):
        return lambda j: mirror_into(x[j], scratch, layout)
    ux, us = pixel_units(x, layout), pixel_units(scratch, layout)
    if ux.itemsize == 1 and ux.shape[-1] % 8 == 0:  # as in reversed_into: 8-byte words, then their bytes
        words, reversed_words = ux.view(np.uint64), us.view(np.uint64)[..., ::-1]

        def mirror_words(j: int) -> None:
            np.copyto(words[j], reversed_words)
            words[j].byteswap(inplace=True)

        return mirror_words
    reversed_units = us[..., ::-1]

    def mirror_units(j: int) -> None:
        ux[j] = reversed_units

    return mirror_units


def read_moves(shape: Tuple[int, ...], layout: str, itemsize: int, flips, shifts) -> np.ndarray:
    """Per record, the byte offset to read its tensor at so that only a border fill (and a mirror) remains.

    A shift by (dx, dy) moves a C-contiguous record by ``(dy * W + dx)``
    pixels (rows wrap into the exposed columns, which are filled after); a
    record that is also mirrored is read shifted by (-dx, dy), since the
    mirror of that is the mirrored record shifted by (dx, dy).  See
    :class:`OnlineBatch`.
    """
    w = shape[-1] if layout == "NCHW" else shape[1]
    unit = itemsize * (shape[-1] if layout == "NHWC" else 1)
    s = np.asarray(shifts, np.int64).reshape(-1, 2)
    dx = np.where(np.asarray(flips, bool), -s[:, 0], s[:, 0])
    return (s[:, 1] * w + dx) * unit


class OnlineBatch:
    """One batch's flips and shifts, done during the reader's copy of each record.

    The reader puts record ``j``'s tensor, moved by ``moves[j]`` bytes (see
    :func:`read_moves`), into ``dest[j]``: its row of ``x``, or for a flipped
    record one scratch record.  Right after (while the bytes are in cache)
    :meth:`finish` mirrors a flipped record from the scratch into ``x[j]``
    and fills the exposed border.  The result equals :func:`apply_online` on
    the records read unmoved.
    """

    def __init__(self, x: np.ndarray, layout: str, flips, shifts, moves, pattern: np.ndarray, scratch: np.ndarray):
        self.x, self.layout, self.pattern, self.scratch = x, layout, pattern, scratch
        self._flips, self._shifts = np.asarray(flips, bool), np.asarray(shifts, np.int64).reshape(-1, 2)
        self.flips, self.shifts = self._flips.tolist(), self._shifts.tolist()
        self.moves = moves
        self._mirror_row: Optional[Callable[[int], None]] = None

    @property
    def dest(self) -> Optional[list]:
        """Per record, where the reader puts its tensor: its row of ``x``, or the scratch when it is flipped."""
        if not any(self.flips):
            return None
        rows = self.x.reshape(len(self.x), -1).view(np.uint8)
        flat = self.scratch.reshape(-1).view(np.uint8)
        return [flat if f else rows[j] for j, f in enumerate(self.flips)]

    def finish(self, j: int, in_place: bool = False) -> None:
        """Record ``j`` was read (into ``dest[j]``, or into ``x[j]`` when ``in_place``): mirror it, fill its border."""
        dx, dy = self.shifts[j]
        if self.flips[j]:
            if in_place:
                self.scratch[...] = self.x[j]
            if self._mirror_row is None:
                self._mirror_row = _scratch_mirror(self.x, self.scratch, self.layout)
            self._mirror_row(j)
        if dx or dy:
            fill_borders(self.x[j], self.layout, dx, dy, self.pattern)

    def finish_all(self) -> None:
        """Every record at once, for records gathered moved into ``x``: small ones, where per-record calls dominate.

        One mirror of the flipped records and one border fill through boolean
        masks of the exposed rows and columns: ~2x cheaper than :meth:`finish`
        per record for 9 KB records, ~2x dearer for 150 KB ones
        (``scripts/bench_loader.py --hybrid``).
        """
        x, nchw = self.x, self.layout == "NCHW"
        flipped = np.flatnonzero(self._flips)
        if len(flipped):
            if x.itemsize * (1 if nchw else x.shape[-1]) in (1, 2, 4, 8):
                u = pixel_units(x, self.layout)
                part = u[flipped]
                out = np.empty_like(part)
                reversed_into(out, part)
                u[flipped] = out
            else:
                part = x[flipped]
                out = np.empty_like(part)
                mirror_into(out, part, self.layout)
                x[flipped] = out
        s = self._shifts
        if not s.any():
            return
        h, w = x.shape[2:] if nchw else x.shape[1:3]
        at_h, at_w = np.arange(h), np.arange(w)
        rows = (at_h < s[:, 1:]) | (at_h >= h + s[:, 1:])  # (N, H): exposed rows
        cols = (at_w < s[:, :1]) | (at_w >= w + s[:, :1])  # (N, W): exposed columns
        fill = self.pattern.reshape(-1, 1) if nchw else self.pattern
        if rows.any():
            (x.transpose(0, 2, 1, 3) if nchw else x)[rows] = fill
        if cols.any():
            (x.transpose(0, 3, 1, 2) if nchw else x.transpose(0, 2, 1, 3))[cols] = fill if nchw else fill[0]
