"""Instance segmentation in sources: COCO ``segmentation`` and YOLO-seg label lines.

Each annotation becomes a :class:`Segment` in the source's pixel frame (pixel
``i`` covers ``[i, i+1)``, the pipeline's convention):

* COCO polygons ``[[x1, y1, x2, y2, ...], ...]`` (pixels) stay polygons;
* COCO RLE ``{"size": [h, w], "counts": [...]}`` (column-major runs, starting
  with a run of zeros) and its compressed string form (``maskApi.c``
  ``rleToString``) are validated when parsed and decoded by :meth:`Segment.mask`
  when the image is rendered, so a scan of a large set holds run lengths, not
  masks;
* YOLO-seg lines ``class x1 y1 x2 y2 ...`` keep normalized polygons until the
  image size is known.

Malformed input raises :class:`SegmentError` naming the file, the annotation id
or line number, and the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from edgeaug.sources.base import SourceError

MAX_RLE_PIXELS = 120_000_000  # the decoder's image limit (builder.render.MAX_PIXELS)
MAX_CHUNKS = 7  # 35 bits: a count of a 120 Mpx mask needs 27 bits plus the sign


class SegmentError(SourceError):
    """A malformed polygon or RLE; the message names the file, the annotation or line, and the field."""


@dataclass(frozen=True)
class Segment:
    """One instance's shape: polygons (flat ``x, y`` tuples) or RLE counts; exactly one is set.

    ``normalized`` polygons are fractions of the image size (YOLO-seg).  ``size``
    is the RLE's ``(h, w)``.
    """

    cls: int
    polygons: Tuple[Tuple[float, ...], ...] = ()
    counts: Optional[Tuple[int, ...]] = None
    size: Optional[Tuple[int, int]] = None
    normalized: bool = False

    def mask(self, h: int, w: int) -> np.ndarray:
        """The instance as a bool ``(h, w)`` mask of the decoded image."""
        if self.counts is not None:
            if self.size != (h, w):
                raise ValueError(f"RLE of size {self.size} does not match the {h}x{w} image")
            return decode_rle(self.counts, h, w)
        return rasterize(self.pixel_polygons(w, h), h, w)

    def pixel_polygons(self, w: int, h: int) -> Tuple[np.ndarray, ...]:
        """The polygons as ``(k, 2)`` float64 arrays in pixels."""
        f = np.array([w, h], np.float64) if self.normalized else np.ones(2)
        return tuple(np.asarray(p, np.float64).reshape(-1, 2) * f for p in self.polygons)

    def bbox(self, w: int, h: int) -> Tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` in pixels, clipped to the image."""
        if self.counts is not None:
            m = self.mask(h, w)
            ys, xs = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
            if not len(ys):
                return (0.0, 0.0, 0.0, 0.0)
            return (float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1))
        pts = np.concatenate(self.pixel_polygons(w, h))
        lo, hi = np.clip(pts.min(0), 0, (w, h)), np.clip(pts.max(0), 0, (w, h))
        return (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))


def instance_labels(segments: Sequence[Segment], w: int, h: int) -> Tuple[np.ndarray, np.ndarray]:
    """A decoded image's instances: boxes ``(n, 5)`` float32 ``[class, x0, y0, x1, y1]`` and masks ``(n, h, w)``.

    Each box is the bounding box of its mask, row for row; an instance with no
    pixel in the image (a polygon outside it, or thinner than a pixel centre) is
    left out with its box.
    """
    masks = np.zeros((len(segments), h, w), bool)
    for k, seg in enumerate(segments):
        masks[k] = seg.mask(h, w)
    cols, rows = masks.any(1), masks.any(2)
    keep = cols.any(1)
    masks, cols, rows = masks[keep], cols[keep], rows[keep]
    cls = np.array([s.cls for s, k in zip(segments, keep) if k], np.float32)
    x0, x1 = cols.argmax(1), w - cols[:, ::-1].argmax(1)
    y0, y1 = rows.argmax(1), h - rows[:, ::-1].argmax(1)
    return np.stack([cls, x0, y0, x1, y1], 1).astype(np.float32).reshape(-1, 5), masks


def rasterize(polygons: Sequence[np.ndarray], h: int, w: int) -> np.ndarray:
    """Pixels whose centres fall inside any of the polygons (even-odd within one, union across them).

    A numpy scanline fill, exact at pixel centres: a centre on a left or top edge
    is inside, on a right or bottom edge outside, so abutting polygons never share
    a pixel (OpenCV's fillPoly also fills the pixels its edges touch).
    """
    out = np.zeros((h, w), bool)
    for p in polygons:
        out |= _fill(np.asarray(p, np.float64).reshape(-1, 2), h, w)
    return out


def _fill(p: np.ndarray, h: int, w: int) -> np.ndarray:
    a, b = p, np.roll(p, -1, 0)
    ylo, yhi = np.minimum(a[:, 1], b[:, 1]), np.maximum(a[:, 1], b[:, 1])
    r0 = np.clip(np.ceil(ylo - 0.5), 0, h).astype(np.int64)  # first row whose centre is >= ylo
    r1 = np.clip(np.ceil(yhi - 0.5), 0, h).astype(np.int64)  # rows with centres in [ylo, yhi)
    n = np.maximum(r1 - r0, 0)
    edge = np.repeat(np.arange(len(p)), n)
    rows = r0[edge] + np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    yc = rows + 0.5
    ax, ay, bx, by = a[edge, 0], a[edge, 1], b[edge, 0], b[edge, 1]
    x = ax + (yc - ay) * (bx - ax) / (by - ay)  # n > 0 only for edges that are not horizontal
    start = np.clip(np.ceil(x - 0.5), 0, w).astype(np.int64)  # first column whose centre is >= x
    toggles = np.zeros((h, w + 1), np.int32)
    np.add.at(toggles, (rows, start), 1)
    return (np.cumsum(toggles, 1)[:, :w] % 2).astype(bool)


def decode_rle(counts: Sequence[int], h: int, w: int) -> np.ndarray:
    """COCO RLE counts (column-major, zeros first) to a bool ``(h, w)`` mask; counts must sum to ``h*w``."""
    c = np.asarray(counts, np.int64)
    if c.ndim != 1 or (c < 0).any() or int(c.sum()) != h * w:
        raise ValueError(f"RLE counts do not sum to {h}x{w} = {h * w}")
    values = (np.arange(len(c)) % 2).astype(bool)
    return np.repeat(values, c).reshape(w, h).T.copy()


def string_counts(s: str) -> Tuple[int, ...]:
    """Decode a compressed RLE string (``maskApi.c`` ``rleFrString``) to its counts.

    Each count is 5-bit chunks, least significant first, each +48, bit 0x20
    meaning "more chunks follow" and bit 0x10 of the last chunk the sign; from
    the fourth count on, each is a difference from the count two before it.
    """
    out = []
    x = k = 0
    for pos, ch in enumerate(s):
        c = ord(ch) - 48
        if not 0 <= c < 64:
            raise ValueError(f"character {ch!r} at offset {pos} is not an RLE digit")
        x |= (c & 0x1F) << (5 * k)
        k += 1
        if c & 0x20:
            if k >= MAX_CHUNKS:
                raise ValueError(f"a count longer than {MAX_CHUNKS} characters at offset {pos}")
            continue
        if c & 0x10:
            x -= 1 << (5 * k)  # sign-extend
        if len(out) > 2:
            x += out[-2]
        if x < 0:
            raise ValueError(f"count {len(out)} decodes to a negative run {x}")
        out.append(x)
        x = k = 0
    if k:
        raise ValueError("the string ends inside a count")
    return tuple(out)


def coco_segment(seg: Any, cls: int, where: str) -> Optional[Segment]:
    """Parse one annotation's ``segmentation`` (``where`` names file and annotation); None when empty."""
    field = f"{where}.segmentation"
    if seg is None or seg == []:
        return None
    if isinstance(seg, list):
        return Segment(cls, tuple(_polygon(p, f"{field}[{i}]") for i, p in enumerate(seg)))
    if not isinstance(seg, dict):
        raise SegmentError(f"{field}: expected a list of polygons or an RLE object, got {type(seg).__name__}")
    size = seg.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) and v > 0 for v in size)):
        raise SegmentError(f"{field}.size: expected [height, width] of positive integers, got {size!r}"[:160])
    h, w = size
    if h * w > MAX_RLE_PIXELS:
        raise SegmentError(f"{field}.size: {h}x{w} exceeds the limit of {MAX_RLE_PIXELS} pixels")
    counts = seg.get("counts")
    if isinstance(counts, str):
        try:
            counts = string_counts(counts)
        except ValueError as e:
            raise SegmentError(f"{field}.counts: {e}") from None
    elif isinstance(counts, list) and all(_is_int(v) and v >= 0 for v in counts):
        counts = tuple(int(v) for v in counts)
    else:
        raise SegmentError(f"{field}.counts: expected a string or a list of non-negative integers")
    if sum(counts) != h * w:
        raise SegmentError(f"{field}.counts: runs sum to {sum(counts)}, not {h}x{w} = {h * w} pixels")
    return Segment(cls, counts=counts, size=(h, w))


def _polygon(p: Any, field: str) -> Tuple[float, ...]:
    ok = isinstance(p, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in p
    )
    if not ok:
        raise SegmentError(f"{field}: expected a list of finite numbers x1, y1, x2, y2, ...")
    if len(p) % 2 or len(p) < 6:
        raise SegmentError(f"{field}: a polygon needs an even count of at least 6 numbers, got {len(p)}")
    return tuple(float(v) for v in p)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def yolo_line_kind(n_values: int, kpt: Optional[Tuple[int, int]], where: str) -> str:
    """``"box"``, ``"pose"`` or ``"segment"`` from a label line's value count.

    A box line has 5 values, a pose line ``5 + K*D`` (data.yaml ``kpt_shape``),
    a segment line ``1 + 2N`` with N >= 3 points.
    """
    if n_values == 5:
        return "box"
    if kpt and n_values == 5 + kpt[0] * kpt[1]:
        return "pose"
    if n_values >= 7 and n_values % 2:
        return "segment"
    want = "5 (box)" + (f", {5 + kpt[0] * kpt[1]} (pose)" if kpt else "") + " or 1 + 2N, N >= 3 (segment)"
    raise SegmentError(f"{where}: expected {want} numbers, got {n_values}")


def yolo_segment(vals: Sequence[float], where: str, eps: float = 1e-6) -> Segment:
    """A YOLO-seg line's values ``class x1 y1 ...`` (normalized) as a Segment; ``where`` is ``file:line``."""
    if len(vals) < 7 or len(vals) % 2 == 0:
        raise SegmentError(f"{where}: a segment line needs a class and at least 3 points, got {len(vals)} numbers")
    c = vals[0]
    if c != int(c) or c < 0:
        raise SegmentError(f"{where}: class {c:g} is not a class id")
    for i, v in enumerate(vals[1:]):
        if not math.isfinite(v) or not -eps <= v <= 1 + eps:
            axis = "xy"[i % 2]
            raise SegmentError(
                f"{where}: {axis}{i // 2 + 1} {v:g} is outside 0..1 (YOLO-seg points are fractions of the image size)"
            )
    return Segment(int(c), (tuple(float(v) for v in vals[1:]),), normalized=True)
