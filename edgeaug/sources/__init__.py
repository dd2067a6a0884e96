"""Labelled images in: dataset kinds found and read into :class:`~edgeaug.sources.base.SourceSet`.

:func:`edgeaug.sources.scan.scan` finds the kind of a path (class folders, CSV/JSONL manifests,
YOLO, COCO, mask folders) and hands it to the module for that kind; :mod:`.imagefile` sniffs and
orients image files.
"""
