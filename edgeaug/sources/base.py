"""What every dataset kind produces: :class:`Source` and :class:`SourceSet`, and shared checks.

Every source gets a relative POSIX path (its identity in the pack and the
seed of its randomness) and a class index (-1: none).  Absolute paths never
leave the workstation.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}


class SourceError(ValueError):
    """The source dataset is malformed; the message names the file and field."""


@dataclass(frozen=True)
class Source:
    """One labelled image; ``path`` is absolute and stays on the workstation."""

    rel: str
    path: Path
    label: int
    boxes: Optional[Tuple[Tuple[float, ...], ...]] = None  # [class, x0, y0, x1, y1]
    mask: Optional[str] = None  # path of a PNG of class ids
    keypoints: Optional[Tuple[Tuple[float, ...], ...]] = None  # [x, y, visible]
    normalized: bool = False  # box/keypoint coordinates are fractions of the image size
    # After a mirror, keypoint i is the old keypoint keypoint_flip[i] (left/right pairs swap); None: no pairs.
    keypoint_flip: Optional[Tuple[int, ...]] = None
    # The label is the majority class of the boxes (YOLO, COCO): each record then takes that of its remaining boxes.
    label_from_boxes: bool = False
    # Instance shapes (COCO segmentation, YOLO-seg), one per box in box order; None: boxes only.  At load time
    # each box becomes its instance mask's bounding box (:func:`edgeaug.builder.render.source_labels`).
    segments: Optional[Tuple[Any, ...]] = None

    @property
    def key(self) -> Tuple[int, ...]:
        """Four 32-bit words of sha256(rel): the source's seed identity."""
        d = hashlib.sha256(self.rel.encode("utf-8")).digest()
        return tuple(int.from_bytes(d[i : i + 4], "little") for i in range(0, 16, 4))


@dataclass(frozen=True)
class SourceSet:
    root: Path
    sources: Tuple[Source, ...]
    classes: Tuple[str, ...]
    kind: str
    # Per-instance keypoint flip permutation (YOLO pose flip_idx), when one holds for the whole dataset.
    keypoint_flip: Optional[Tuple[int, ...]] = None
    # What the build should tell the user about the dataset (fields it drops, ...): shown once per build.
    warnings: Tuple[str, ...] = ()
    # The path it was scanned from (absolute; "" when made in code): workers scan it again for partners.
    origin: str = ""


def inside(root: Path, rel: str, where: str, field: str) -> Tuple[str, Path]:
    full = (root / rel).resolve()
    try:
        return full.relative_to(root).as_posix(), full
    except ValueError:
        raise SourceError(f"{where}: {field}: {rel!r} escapes the manifest's directory") from None


def rows_of(v: Any, cols: int, where: str, field: str) -> Optional[Tuple[Tuple[float, ...], ...]]:
    """A list of ``cols``-number rows (finite), or None when absent/empty."""
    if v is None:
        return None
    ok = isinstance(v, list) and all(
        isinstance(r, list)
        and len(r) == cols
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in r)
        for r in v
    )
    if not ok:
        raise SourceError(f"{where}: {field}: expected a list of [{cols} numbers] rows")
    if field == "boxes" and any(r[0] < 0 or r[0] != int(r[0]) or r[3] < r[1] or r[4] < r[2] for r in v):
        raise SourceError(f"{where}: boxes: need an integer class >= 0 and x0 <= x1, y0 <= y1")
    return tuple(tuple(float(x) for x in r) for r in v) or None


def sort_classes(names: set) -> List[str]:
    """Numeric labels sort as numbers, names alphabetically."""
    if all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def read_text(p: Path) -> str:
    try:
        return p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(f"{p}: cannot read: {e}") from None


def images_under(d: Path) -> List[Path]:
    found = [
        f for f in sorted(d.rglob("*")) if f.is_file() and f.suffix.lower() in IMAGE_EXTS and not f.name.startswith(".")
    ]
    if not found:
        raise SourceError(f"{d}: no images ({', '.join(sorted(IMAGE_EXTS))})")
    return found


def numbers(tokens: Sequence[str], where: str) -> List[float]:
    try:
        vals = [float(t) for t in tokens]
    except ValueError:
        raise SourceError(f"{where}: expected numbers, got {' '.join(tokens)!r}"[:160]) from None
    if not all(math.isfinite(v) for v in vals):
        raise SourceError(f"{where}: non-finite number")
    return vals


def majority(boxes: Sequence[Sequence[float]]) -> int:
    """The label of a detection source or record: most frequent box class, lowest on ties, -1 without boxes."""
    if len(boxes) == 0:
        return -1
    counts = Counter(int(b[0]) for b in boxes)
    return min(counts, key=lambda c: (-counts[c], c))


def tiled_flip(flip: Optional[Sequence[int]], instances: int) -> Optional[Tuple[int, ...]]:
    """A per-instance flip permutation repeated over ``instances`` consecutive keypoint groups."""
    if flip is None or instances == 0:
        return None
    k = len(flip)
    return tuple(j + i * k for i in range(instances) for j in flip)
