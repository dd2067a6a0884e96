"""Finding labelled source images: class folders, CSV and JSONL manifests.

Every source gets a relative POSIX path (its identity in the pack and the
seed of its randomness) and a class index.  Absolute paths never leave the
workstation.  Manifest paths may not escape the manifest's directory.
"""
from __future__ import annotations

import csv
import hashlib
import json
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
    boxes: Optional[Tuple[Tuple[float, ...], ...]] = None  # [class, x0, y0, x1, y1] pixels
    mask: Optional[str] = None                              # rel path of a PNG mask
    keypoints: Optional[Tuple[Tuple[float, ...], ...]] = None

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
    """Read a dataset: a directory of class folders, or a .csv/.jsonl manifest."""
    p = Path(path)
    if p.is_dir():
        return _scan_folders(p)
    if not p.is_file():
        raise SourceError(f"{p}: no such file or directory")
    if p.suffix.lower() == ".csv":
        return _from_rows(p, _read_csv(p), "csv")
    if p.suffix.lower() in (".jsonl", ".ndjson"):
        return _from_rows(p, _read_jsonl(p), "jsonl")
    raise SourceError(f"{p}: expected a directory, a .csv or a .jsonl manifest")


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


def _read_csv(p: Path) -> List[Tuple[int, Any, Any]]:
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            cols = reader.fieldnames or []
            if "path" not in cols or "label" not in cols:
                raise SourceError(f"{p}: header must have 'path' and 'label' columns, got {cols}")
            return [(n, r["path"], r["label"]) for n, r in enumerate(reader, start=2)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise SourceError(f"{p}: cannot read CSV: {e}") from None


def _read_jsonl(p: Path) -> List[Tuple[int, Any, Any]]:
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
        rows.append((n, obj.get("path"), obj.get("label")))
    return rows


def _from_rows(p: Path, rows: Sequence[Tuple[int, Any, Any]], kind: str) -> SourceSet:
    root = p.parent.resolve()
    found, seen = [], set()
    for line, rel, label in rows:
        where = f"{p}:{line}"
        if not isinstance(rel, str) or not rel.strip():
            raise SourceError(f"{where}: path: missing or not a string")
        if isinstance(label, bool) or not isinstance(label, (str, int)) or str(label).strip() == "":
            raise SourceError(f"{where}: label: missing or not a string/integer")
        full = (root / rel).resolve()
        try:
            rel_posix = full.relative_to(root).as_posix()
        except ValueError:
            raise SourceError(f"{where}: path: {rel!r} escapes the manifest's directory") from None
        if rel_posix in seen:
            raise SourceError(f"{where}: path: {rel!r} is listed twice")
        seen.add(rel_posix)
        found.append((rel_posix, full, str(label).strip()))
    if not found:
        raise SourceError(f"{p}: the manifest lists no images")
    classes = _sort_classes({lab for _, _, lab in found})
    idx = {c: i for i, c in enumerate(classes)}
    sources = [Source(r, f, idx[lab]) for r, f, lab in found]
    return SourceSet(root, tuple(sorted(sources, key=lambda s: s.rel)), tuple(classes), kind)


def _sort_classes(names: set) -> List[str]:
    """Numeric labels sort as numbers, names alphabetically."""
    if all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)
