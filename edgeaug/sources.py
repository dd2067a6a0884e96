"""Finding labelled source images: class folders, CSV/JSONL manifests, YOLO, COCO, masks.

Every source gets a relative POSIX path (its identity in the pack and the
seed of its randomness) and a class index (-1: none).  Absolute paths never
leave the workstation.  Manifest paths may not escape the manifest's
directory.  The annotated formats live in :mod:`edgeaug.annotations`.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
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
    mask: Optional[str] = None                              # path of a PNG of class ids
    keypoints: Optional[Tuple[Tuple[float, ...], ...]] = None  # [x, y, visible]
    normalized: bool = False  # box/keypoint coordinates are fractions of the image size

    @property
    def key(self) -> Tuple[int, ...]:
        """Four 32-bit words of sha256(rel): the source's seed identity."""
        d = hashlib.sha256(self.rel.encode("utf-8")).digest()
        return tuple(int.from_bytes(d[i:i + 4], "little") for i in range(0, 16, 4))


@dataclass(frozen=True)
class SourceSet:
    root: Path
    sources: Tuple[Source, ...]
    classes: Tuple[str, ...]
    kind: str


def scan(path: str | Path) -> SourceSet:
    """Read a dataset and detect its kind.

    A directory with ``images/`` and ``labels/`` is YOLO; with ``images/``
    and ``masks/`` a segmentation set; otherwise one subfolder per class.
    A ``.json`` file is COCO; ``.csv``/``.jsonl`` are manifests.
    """
    from . import annotations
    p = Path(path)
    if p.is_dir():
        if (p / "images").is_dir() and (p / "labels").is_dir():
            return annotations.scan_yolo(p)
        if (p / "images").is_dir() and (p / "masks").is_dir():
            return annotations.scan_masks(p)
        return _scan_folders(p)
    if not p.is_file():
        raise SourceError(f"{p}: no such file or directory")
    if p.suffix.lower() == ".csv":
        return _from_rows(p, _read_csv(p), "csv")
    if p.suffix.lower() in (".jsonl", ".ndjson"):
        return _from_rows(p, _read_jsonl(p), "jsonl")
    if p.suffix.lower() == ".json":
        return annotations.scan_coco(p)
    raise SourceError(f"{p}: expected a directory, a COCO .json, a .csv or a .jsonl manifest")


def _scan_folders(root: Path) -> SourceSet:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise SourceError(f"{root}: no class subfolders found")
    sources = []
    for i, c in enumerate(classes):
        for f in sorted((root / c).rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTS and not f.name.startswith("."):
                sources.append(Source(f.relative_to(root).as_posix(), f, i))
    if not sources:
        raise SourceError(f"{root}: no images ({', '.join(sorted(IMAGE_EXTS))}) in class folders")
    return SourceSet(root, tuple(sorted(sources, key=lambda s: s.rel)), tuple(classes), "folders")


def _read_csv(p: Path) -> List[Tuple[int, dict]]:
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            cols = reader.fieldnames or []
            if "path" not in cols or "label" not in cols:
                raise SourceError(f"{p}: header must have 'path' and 'label' columns, got {cols}")
            return [(n, {k: r.get(k) for k in ("path", "label", "mask")})
                    for n, r in enumerate(reader, start=2)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise SourceError(f"{p}: cannot read CSV: {e}") from None


def _read_jsonl(p: Path) -> List[Tuple[int, dict]]:
    rows = []
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(f"{p}: cannot read: {e}") from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise SourceError(f"{p}:{n}: invalid JSON: {e}") from None
        if not isinstance(obj, dict):
            raise SourceError(f"{p}:{n}: expected an object with 'path' and 'label'")
        rows.append((n, obj))
    return rows


def _from_rows(p: Path, rows: Sequence[Tuple[int, dict]], kind: str) -> SourceSet:
    """Rows have ``path`` and ``label``; optionally ``mask`` (a PNG path) and, in
    JSONL, ``boxes`` ``[[class, x0, y0, x1, y1], ...]`` and ``keypoints``
    ``[[x, y, visible], ...]`` in source pixels."""
    root = p.parent.resolve()
    found, seen = [], set()
    for line, row in rows:
        where = f"{p}:{line}"
        rel, label = row.get("path"), row.get("label")
        if not isinstance(rel, str) or not rel.strip():
            raise SourceError(f"{where}: path: missing or not a string")
        if isinstance(label, bool) or not isinstance(label, (str, int)) or str(label).strip() == "":
            raise SourceError(f"{where}: label: missing or not a string/integer")
        rel_posix, full = _inside(root, rel, where, "path")
        if rel_posix in seen:
            raise SourceError(f"{where}: path: {rel!r} is listed twice")
        seen.add(rel_posix)
        mask = row.get("mask")
        if mask is not None and not isinstance(mask, str):
            raise SourceError(f"{where}: mask: expected a path string")
        extra = {"mask": str(_inside(root, mask, where, "mask")[1]) if mask and mask.strip() else None,
                 "boxes": _rows_of(row.get("boxes"), 5, where, "boxes"),
                 "keypoints": _rows_of(row.get("keypoints"), 3, where, "keypoints")}
        found.append((rel_posix, full, str(label).strip(), extra))
    if not found:
        raise SourceError(f"{p}: the manifest lists no images")
    classes = _sort_classes({lab for _, _, lab, _ in found})
    idx = {c: i for i, c in enumerate(classes)}
    sources = [Source(r, f, idx[lab], **extra) for r, f, lab, extra in found]
    return SourceSet(root, tuple(sorted(sources, key=lambda s: s.rel)), tuple(classes), kind)


def _inside(root: Path, rel: str, where: str, field: str) -> Tuple[str, Path]:
    full = (root / rel).resolve()
    try:
        return full.relative_to(root).as_posix(), full
    except ValueError:
        raise SourceError(f"{where}: {field}: {rel!r} escapes the manifest's directory") from None


def _rows_of(v: Any, cols: int, where: str, field: str) -> Optional[Tuple[Tuple[float, ...], ...]]:
    """A list of ``cols``-number rows (finite), or None when absent/empty."""
    if v is None:
        return None
    ok = isinstance(v, list) and all(
        isinstance(r, list) and len(r) == cols and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in r)
        for r in v)
    if not ok:
        raise SourceError(f"{where}: {field}: expected a list of [{cols} numbers] rows")
    if field == "boxes" and any(r[0] < 0 or r[0] != int(r[0]) or r[3] < r[1] or r[4] < r[2] for r in v):
        raise SourceError(f"{where}: boxes: need an integer class >= 0 and x0 <= x1, y0 <= y1")
    return tuple(tuple(float(x) for x in r) for r in v) or None


def _sort_classes(names: set) -> List[str]:
    """Numeric labels sort as numbers, names alphabetically."""
    if all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)
