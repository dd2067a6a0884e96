"""YOLO: ``images/**`` with ``labels/**.txt`` (``class cx cy w h`` normalized), names from data.yaml.

Coordinates stay normalized (``Source.normalized``) until the image is decoded and its size is known.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

from edgeaug.sources.base import Source, SourceError, SourceSet, images_under, majority, numbers, read_text
from edgeaug.sources.datayaml import class_names
from edgeaug.sources.masks import mask_of


def scan_yolo(root: Path) -> SourceSet:
    """``root/images/**`` with ``root/labels/**.txt`` (``class cx cy w h`` normalized).

    Pose datasets declare ``kpt_shape: [K, 2|3]`` in data.yaml and append K
    keypoints per line.  An image without a label file has no boxes.
    """
    names, kpt = class_names(root)
    masks = root / "masks" if (root / "masks").is_dir() else None
    sources, max_id = [], -1
    for img in images_under(root / "images"):
        rel = img.relative_to(root / "images")
        lab = root / "labels" / rel.with_suffix(".txt")
        boxes, kps = _yolo_file(lab, kpt, names) if lab.is_file() else ((), ())
        max_id = max([max_id] + [int(b[0]) for b in boxes])
        sources.append(
            Source(
                img.relative_to(root).as_posix(),
                img,
                majority(boxes),
                boxes or None,
                mask_of(root, masks, rel),
                kps or None,
                normalized=True,
            )
        )
    classes = tuple(names) if names is not None else tuple(str(i) for i in range(max_id + 1))
    return SourceSet(root, tuple(sorted(sources, key=lambda s: s.rel)), classes, "yolo")


def _yolo_file(p: Path, kpt: Optional[Tuple[int, int]], names: Optional[List[str]]):
    boxes, kps = [], []
    want = 5 + (kpt[0] * kpt[1] if kpt else 0)
    for n, line in enumerate(read_text(p).splitlines(), 1):
        if not line.strip():
            continue
        where = f"{p}:{n}"
        vals = numbers(line.split(), where)
        if len(vals) != want:
            raise SourceError(
                f"{where}: expected {want} numbers (class cx cy w h"
                f"{' + keypoints per kpt_shape' if kpt else ''}), got {len(vals)}"
            )
        c, cx, cy, w, h = vals[:5]
        if c != int(c) or c < 0 or (names is not None and c >= len(names)):
            raise SourceError(
                f"{where}: class {vals[0]:g} is not a class id" + (f" 0..{len(names) - 1}" if names else "")
            )
        if w < 0 or h < 0:
            raise SourceError(f"{where}: negative box size {w:g} x {h:g}")
        boxes.append((float(c), cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        if kpt:
            k, d = kpt
            pts = [vals[5 + i * d : 5 + (i + 1) * d] for i in range(k)]
            kps += [(x[0], x[1], x[2] if d == 3 else 2.0) for x in pts]
    return tuple(boxes), tuple(kps)
