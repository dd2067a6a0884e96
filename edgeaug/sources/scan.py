"""Finding the kind of a labelled dataset and reading it.

A directory with ``images/`` and ``labels/`` is YOLO; with ``images/`` and
``masks/`` a segmentation set; with a COCO JSON (in the folder itself or in
``annotations/``) a COCO set; otherwise one subfolder per class.  A ``.json``
file is COCO; ``.csv``/``.jsonl`` are manifests.  Each kind has its module.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

from edgeaug.sources.base import IMAGE_EXTS, Source, SourceError, SourceSet
from edgeaug.sources.coco import scan_coco
from edgeaug.sources.folders import scan_folders
from edgeaug.sources.manifest import from_rows, read_csv, read_jsonl
from edgeaug.sources.masks import scan_masks
from edgeaug.sources.yolo import scan_yolo

__all__ = ["IMAGE_EXTS", "KINDS", "Source", "SourceError", "SourceSet", "scan"]

#: What ``scan`` accepts, one line each (shown by ``edgeaug build --help``).
KINDS = (
    "a folder with one subfolder per class",
    "a YOLO folder: images/ and labels/ (data.yaml: names, kpt_shape, flip_idx)",
    "a COCO folder (one .json beside images/, or in annotations/) or the COCO .json itself",
    "a segmentation folder: images/ and masks/ (PNG class ids; classes.txt)",
    "a CSV or JSONL manifest with path,label (JSONL: boxes, keypoints; both: mask)",
)


def scan(path: str | Path) -> SourceSet:
    """Read a dataset and detect its kind (see the module docstring).

    ``origin`` of the result is ``path`` made absolute: a build worker scans it
    again to find multi-image partners (:class:`edgeaug.builder.tasks.Candidates`).
    """
    import dataclasses
    import os

    return dataclasses.replace(_scan(Path(path)), origin=os.path.abspath(path))


def _scan(p: Path) -> SourceSet:
    if p.is_dir():
        if (p / "images").is_dir() and (p / "labels").is_dir():
            return scan_yolo(p)
        if (p / "images").is_dir() and (p / "masks").is_dir():
            return scan_masks(p)
        coco = coco_files(p)
        if len(coco) > 1:
            raise SourceError(
                f"{p}: holds several COCO annotation files ({', '.join(c.relative_to(p).as_posix() for c in coco)}); "
                f"pass the one to build from, e.g. {coco[0]}"
            )
        if coco:
            return scan_coco(coco[0], p)
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


def coco_files(folder: Path) -> List[Path]:
    """The ``.json`` files in ``folder`` or ``folder/annotations`` that look like COCO (have images and annotations)."""
    found = []
    for d in (folder, folder / "annotations"):
        for f in sorted(d.glob("*.json")) if d.is_dir() else ():
            if f.is_file() and not f.name.startswith(".") and _has_keys(f, (b'"images"', b'"annotations"')):
                found.append(f)
    return found


def _has_keys(f: Path, keys, chunk: int = 1 << 20) -> bool:
    """Whether every byte string in ``keys`` occurs in the file (streamed: COCO files can be large)."""
    missing, tail = set(keys), b""
    try:
        with open(f, "rb") as fh:
            while missing:
                block = fh.read(chunk)
                if not block:
                    break
                buf = tail + block
                missing = {k for k in missing if k not in buf}
                tail = buf[-64:]
    except OSError as e:
        raise SourceError(f"{f}: cannot read: {e.strerror or e}") from None
    return not missing
