"""YOLO: ``images/**`` with ``labels/**.txt`` (``class cx cy w h`` normalized), names from data.yaml.

Coordinates stay normalized (``Source.normalized``) until the image is decoded and its size is known.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

from edgeaug.sources.base import (
    Source,
    SourceError,
    SourceSet,
    images_under,
    majority,
    numbers,
    read_text,
    tiled_flip,
)
from edgeaug.sources.datayaml import class_names, flip_idx
from edgeaug.sources.masks import mask_of
from edgeaug.sources.segments import Segment, yolo_segment

EPS = 1e-6  # exported coordinates are rounded; 1.0000001 is still the edge


def scan_yolo(root: Path) -> SourceSet:
    """``root/images/**`` with ``root/labels/**.txt`` (``class cx cy w h`` normalized).

    Pose datasets declare ``kpt_shape: [K, 2|3]`` in data.yaml and append K
    keypoints per line; ``flip_idx`` there names the left/right pairs that
    swap when an image is mirrored.  YOLO-seg lines (``class x1 y1 x2 y2 ...``
    normalized, at least 3 points; told from box lines by their length) make
    the dataset an instance set: each box is then its instance mask's bounding
    box, and a plain box line in such a dataset is a rectangle instance.
    Segment lines in a pose dataset are refused.  An image without a label file has no
    boxes; a label file whose name differs from its image's only in case is
    an error (it would be ignored on a case-sensitive file system).
    """
    names, kpt = class_names(root)
    flip = flip_idx(root, kpt[0]) if kpt else None
    masks = root / "masks" if (root / "masks").is_dir() else None
    folded = _labels_by_folded_name(root / "labels")
    sources, max_id, files = [], -1, []
    for img in images_under(root / "images"):
        rel = img.relative_to(root / "images")
        lab = root / "labels" / rel.with_suffix(".txt")
        if not lab.is_file():
            _refuse_case_mismatch(root, img, rel, folded)
        boxes, kps, segs = _yolo_file(lab, kpt, names) if lab.is_file() else ((), (), ())
        files.append((img, rel, boxes, kps, segs))
    has_instances = any(s is not None for f in files for s in f[4])
    for img, rel, boxes, kps, segs in files:
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
                keypoint_flip=tiled_flip(flip, len(boxes)) if kps else None,
                label_from_boxes=True,
                segments=_instances(boxes, segs) if has_instances else None,
            )
        )
    classes = tuple(names) if names is not None else tuple(str(i) for i in range(max_id + 1))
    return SourceSet(root, tuple(sorted(sources, key=lambda s: s.rel)), classes, "yolo", flip)


def _labels_by_folded_name(labels: Path) -> Dict[str, Path]:
    """Label files by their case-folded path (without suffix) under ``labels/``."""
    return {
        p.relative_to(labels).with_suffix("").as_posix().casefold(): p
        for p in labels.rglob("*")
        if p.suffix.lower() == ".txt" and p.is_file()
    }


def _refuse_case_mismatch(root: Path, img: Path, rel: Path, folded: Dict[str, Path]) -> None:
    other = folded.get(rel.with_suffix("").as_posix().casefold())
    if other is not None:
        raise SourceError(
            f"{other}: this label file's name differs only in case from its image "
            f"{img.relative_to(root).as_posix()}, so its labels would be ignored: rename one to match"
        )


def _instances(boxes: Tuple[tuple, ...], segs: Tuple[Optional[Segment], ...]) -> Optional[Tuple[Segment, ...]]:
    """One segment per box: a box line of an instance set is its (normalized) rectangle."""
    out = []
    for b, s in zip(boxes, segs):
        if s is None:
            c, x0, y0, x1, y1 = b
            s = Segment(int(c), ((x0, y0, x1, y0, x1, y1, x0, y1),), normalized=True)
        out.append(s)
    return tuple(out) or None


def _yolo_file(p: Path, kpt: Optional[Tuple[int, int]], names: Optional[List[str]]):
    """(boxes, keypoints, segments) of one label file; segments[i] is None for a box line."""
    boxes, kps, segs = [], [], []
    want = 5 + (kpt[0] * kpt[1] if kpt else 0)
    for n, line in enumerate(read_text(p).splitlines(), 1):
        if not line.strip():
            continue
        where = f"{p}:{n}"
        vals = numbers(line.split(), where)
        if not kpt and len(vals) >= 7 and len(vals) % 2:  # class + N >= 3 points: a YOLO-seg line
            seg = yolo_segment(vals, where, EPS)
            _check_class(where, vals[0], names)
            pts = [v for v in vals[1:]]
            xs, ys = [min(max(v, 0.0), 1.0) for v in pts[0::2]], [min(max(v, 0.0), 1.0) for v in pts[1::2]]
            boxes.append((float(seg.cls), min(xs), min(ys), max(xs), max(ys)))
            segs.append(seg)
            continue
        if len(vals) != want:
            raise SourceError(
                f"{where}: expected {want} numbers (class cx cy w h"
                f"{' + keypoints per kpt_shape' if kpt else ', or class x1 y1 ... with at least 3 points'}), "
                f"got {len(vals)}"
            )
        c, cx, cy, w, h = vals[:5]
        _check_class(where, c, names)
        if w < 0 or h < 0:
            raise SourceError(f"{where}: negative box size {w:g} x {h:g}")
        _check_normalized(where, cx=cx, cy=cy, w=w, h=h)
        boxes.append((float(c), cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        if kpt:
            k, d = kpt
            pts = [vals[5 + i * d : 5 + (i + 1) * d] for i in range(k)]
            kps += [(x[0], x[1], x[2] if d == 3 else 2.0) for x in pts]
        segs.append(None)
    return tuple(boxes), tuple(kps), tuple(segs)


def _check_class(where: str, c: float, names: Optional[List[str]]) -> None:
    if c != int(c) or c < 0 or (names is not None and c >= len(names)):
        raise SourceError(f"{where}: class {c:g} is not a class id" + (f" 0..{len(names) - 1}" if names else ""))


def _check_normalized(where: str, **coords: float) -> None:
    """YOLO box centres and sizes are fractions of the image size: 0..1."""
    for name, v in coords.items():
        if not -EPS <= v <= 1 + EPS:
            raise SourceError(
                f"{where}: {name} {v:g} is outside 0..1 (YOLO coordinates are fractions of the image "
                f"size; pixel coordinates must be divided by the image width and height)"
            )
