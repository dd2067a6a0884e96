"""Class folders: one subfolder per class, images anywhere below it."""

from __future__ import annotations

from pathlib import Path

from edgeaug.sources.base import IMAGE_EXTS, Source, SourceError, SourceSet


def scan_folders(root: Path) -> SourceSet:
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
