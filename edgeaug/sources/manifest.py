"""CSV and JSONL manifests: ``path`` and ``label`` per row, paths relative to the manifest's folder.

Manifest paths may not escape the manifest's directory.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import List, Sequence, Tuple

from edgeaug.sources.base import Source, SourceError, SourceSet, inside, rows_of, sort_classes


def read_csv(p: Path) -> List[Tuple[int, dict]]:
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            cols = reader.fieldnames or []
            if "path" not in cols or "label" not in cols:
                raise SourceError(f"{p}: header must have 'path' and 'label' columns, got {cols}")
            return [(n, {k: r.get(k) for k in ("path", "label", "mask")}) for n, r in enumerate(reader, start=2)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise SourceError(f"{p}: cannot read CSV: {e}") from None


def read_jsonl(p: Path) -> List[Tuple[int, dict]]:
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


def from_rows(p: Path, rows: Sequence[Tuple[int, dict]], kind: str) -> SourceSet:
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
        rel_posix, full = inside(root, rel, where, "path")
        if rel_posix in seen:
            raise SourceError(f"{where}: path: {rel!r} is listed twice")
        seen.add(rel_posix)
        mask = row.get("mask")
        if mask is not None and not isinstance(mask, str):
            raise SourceError(f"{where}: mask: expected a path string")
        extra = {
            "mask": str(inside(root, mask, where, "mask")[1]) if mask and mask.strip() else None,
            "boxes": rows_of(row.get("boxes"), 5, where, "boxes"),
            "keypoints": rows_of(row.get("keypoints"), 3, where, "keypoints"),
        }
        found.append((rel_posix, full, str(label).strip(), extra))
    if not found:
        raise SourceError(f"{p}: the manifest lists no images")
    classes = sort_classes({lab for _, _, lab, _ in found})
    idx = {c: i for i, c in enumerate(classes)}
    sources = [Source(r, f, idx[lab], **extra) for r, f, lab, extra in found]
    return SourceSet(root, tuple(sorted(sources, key=lambda s: s.rel)), tuple(classes), kind)
