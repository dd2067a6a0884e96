"""Finding the kind of a labelled dataset and reading it.

A directory with ``images/`` and ``labels/`` is YOLO; with ``images/`` and
``masks/`` a segmentation set; otherwise one subfolder per class.  A ``.json``
file is COCO; ``.csv``/``.jsonl`` are manifests.  Each kind has its module.
"""

from __future__ import annotations

from pathlib import Path

from edgeaug.sources.base import IMAGE_EXTS, Source, SourceError, SourceSet
from edgeaug.sources.coco import scan_coco
from edgeaug.sources.folders import scan_folders
from edgeaug.sources.manifest import from_rows, read_csv, read_jsonl
from edgeaug.sources.masks import scan_masks
from edgeaug.sources.yolo import scan_yolo

__all__ = ["IMAGE_EXTS", "Source", "SourceError", "SourceSet", "scan"]


def scan(path: str | Path) -> SourceSet:
    """Read a dataset and detect its kind (see the module docstring)."""
    p = Path(path)
    if p.is_dir():
        if (p / "images").is_dir() and (p / "labels").is_dir():
            return scan_yolo(p)
        if (p / "images").is_dir() and (p / "masks").is_dir():
            return scan_masks(p)
        return scan_folders(p)
    if not p.is_file():
        raise SourceError(f"{p}: no such file or directory")
    if p.suffix.lower() == ".csv":
        return from_rows(p, read_csv(p), "csv")
    if p.suffix.lower() in (".jsonl", ".ndjson"):
        return from_rows(p, read_jsonl(p), "jsonl")
    if p.suffix.lower() == ".json":
        return scan_coco(p)
    raise SourceError(f"{p}: expected a directory, a COCO .json, a .csv or a .jsonl manifest")
