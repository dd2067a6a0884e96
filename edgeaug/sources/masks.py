"""Segmentation: ``images/**`` with ``masks/**.png`` of class ids; classes from classes.txt."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from edgeaug.sources.base import Source, SourceError, SourceSet, images_under
from edgeaug.sources.datayaml import class_names


def scan_masks(root: Path) -> SourceSet:
    """``root/images/**`` with ``root/masks/**.png`` of class ids; classes from classes.txt."""
    names, _ = class_names(root)
    sources = [
        Source(
            img.relative_to(root).as_posix(),
            img,
            -1,
            None,
            mask_of(root, root / "masks", img.relative_to(root / "images")),
        )
        for img in images_under(root / "images")
    ]
    return SourceSet(root, tuple(sorted(sources, key=lambda s: s.rel)), tuple(names or ()), "masks")


def mask_of(root: Path, masks: Optional[Path], rel: Path) -> Optional[str]:
    if masks is None:
        return None
    m = masks / rel.with_suffix(".png")
    if not m.is_file():
        raise SourceError(f"{root}: images/{rel.as_posix()} has no mask masks/{rel.with_suffix('.png').as_posix()}")
    return str(m)
