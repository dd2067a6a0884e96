"""Class folders: one subfolder per class, images anywhere below it."""

from __future__ import annotations

from pathlib import Path

from edgeaug.sources.base import IMAGE_EXTS, Source, SourceError, SourceSet


def scan_folders(root: Path) -> SourceSet:
    """One class per subfolder (sorted names are the class ids 0..n-1), images anywhere below it.

    A class folder without images is refused: as a class it would have no
    examples and shift the id of every class after it.
    """
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise SourceError(f"{root}: no class subfolders found")
    sources = []
    for i, c in enumerate(classes):
        found = [
            f
            for f in sorted((root / c).rglob("*"))
            if f.is_file() and f.suffix.lower() in IMAGE_EXTS and not f.name.startswith(".")
        ]
        if not found and len(classes) > 1:
            raise SourceError(_empty_class(root, classes, i))
        sources += [Source(f.relative_to(root).as_posix(), f, i) for f in found]
    if not sources:
        raise SourceError(f"{root}: no images ({', '.join(sorted(IMAGE_EXTS))}) in class folders")
    return SourceSet(root, tuple(sorted(sources, key=lambda s: s.rel)), tuple(classes), "folders")


def _empty_class(root: Path, classes, i: int) -> str:
    after = len(classes) - i - 1
    shift = f" and shift the ids of the {after} classes after it" if after else ""
    return (
        f"{root / classes[i]}: class folder has no images ({', '.join(sorted(IMAGE_EXTS))}); it would become "
        f"class {i} with no examples{shift}: add its images, or move the folder out of {root}"
    )
