"""COCO instances JSON: ``images``, ``annotations`` (``bbox`` xywh, ``keypoints``), ``categories``."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from edgeaug.sources.base import Source, SourceError, SourceSet, majority
from edgeaug.sources.segments import Segment, coco_segment

#: Annotation fields edgeaug reads, or that carry nothing more than those (``area``, ``num_keypoints``, ``id``).
#: Any other field is dropped with one warning per build; add a field here once it is used.
ANNOTATION_FIELDS = frozenset(
    {"id", "image_id", "category_id", "bbox", "iscrowd", "keypoints", "num_keypoints", "area", "segmentation"}
)


def scan_coco(p: Path, root: Optional[Path] = None) -> SourceSet:
    """A COCO instances JSON: ``images``, ``annotations`` (``bbox`` xywh, ``keypoints``), ``categories``.

    Image ``file_name`` resolves against the JSON's folder, then ``root`` (the
    dataset folder; default: the JSON's folder, or the folder above it when that
    is COCO's ``annotations/``) and its ``images/`` subfolder;
    source paths are relative to ``root``.  Categories sort by id into class
    indices.  ``iscrowd`` annotations are skipped (a crowd region is not one
    object: it would be a wrong box and mask), as before.  ``segmentation``
    (polygons, RLE, compressed RLE) makes the dataset an instance set: every
    annotation of every image then has an instance (one without a
    segmentation gets its ``bbox`` as a rectangle), and each box becomes its
    mask's bounding box when the image is rendered.  A category with K keypoint
    names contributes exactly K keypoints per annotation, in annotation order;
    names ``left_X`` and ``right_X`` make a pair that swaps when the image is
    mirrored.  Annotation fields outside :data:`ANNOTATION_FIELDS` (e.g.
    ``attributes``) are dropped, with one warning per field in
    ``SourceSet.warnings``.  Images may sit behind symlinks inside the dataset
    folder (``images/`` itself may be one), as for the other kinds.
    """
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise SourceError(f"{p}: cannot read COCO JSON: {e}") from None
    if not isinstance(data, dict):
        raise SourceError(f"{p}: expected a JSON object with images, annotations, categories")
    cats = sorted(_coco_categories(p, _list(p, data, "categories")), key=lambda c: c[0])
    index = {cid: i for i, (cid, _, _) in enumerate(cats)}
    nkp = {cid: len(kp) for cid, _, kp in cats}
    pairs = {cid: flip_pairs(kp) for cid, _, kp in cats}
    if root is None:  # coco/annotations/x.json names the same sources as coco/
        root = p.parent.parent if p.parent.name == "annotations" else p.parent
    root = root.resolve()
    images = _coco_images(p, root, _list(p, data, "images"))
    boxes: Dict[Any, List[tuple]] = {i: [] for i in images}
    kps: Dict[Any, List[tuple]] = {i: [] for i in images}
    flips: Dict[Any, List[int]] = {i: [] for i in images}
    segs: Dict[Any, List[Optional[Segment]]] = {i: [] for i in images}
    anns = data.get("annotations", [])
    if not isinstance(anns, list):
        raise SourceError(f"{p.name}: annotations: expected a list")
    unused: Dict[str, List[int]] = {}  # field -> [annotations carrying it, index of the first]
    for j, a in enumerate(anns):
        where = f"{p.name}: annotations[{j}]"
        if not isinstance(a, dict):
            raise SourceError(f"{where}: expected an object")
        for k in a.keys() - ANNOTATION_FIELDS:
            unused.setdefault(k, [0, j])[0] += 1
        if not _is_id(a.get("image_id")) or a["image_id"] not in images:
            raise SourceError(f"{where}.image_id: {a.get('image_id')!r} is not in images"[:160])
        if not _is_id(a.get("category_id")) or a["category_id"] not in index:
            raise SourceError(f"{where}.category_id: {a.get('category_id')!r} is not in categories")
        if a.get("iscrowd"):
            continue
        x, y, w, h = _coco_nums(a.get("bbox"), 4, f"{where}.bbox")
        if w < 0 or h < 0:
            raise SourceError(f"{where}.bbox: negative size")
        boxes[a["image_id"]].append((float(index[a["category_id"]]), x, y, x + w, y + h))
        ann = f"{p.name}: annotations[id={a['id']}]" if _is_id(a.get("id")) else where
        segs[a["image_id"]].append(coco_segment(a.get("segmentation"), index[a["category_id"]], ann))
        k = nkp[a["category_id"]]
        if k:
            raw = a.get("keypoints", [0.0] * 3 * k)
            v = _coco_nums(raw, 3 * k, f"{where}.keypoints")
            flips[a["image_id"]] += [len(kps[a["image_id"]]) + j for j in pairs[a["category_id"]]]
            kps[a["image_id"]] += [tuple(v[i : i + 3]) for i in range(0, 3 * k, 3)]
    has_instances = any(s is not None for ss in segs.values() for s in ss)
    sources = [
        Source(
            rel,
            full,
            majority(boxes[i]),
            tuple(boxes[i]) or None,
            None,
            tuple(kps[i]) or None,
            keypoint_flip=tuple(flips[i]) if flips[i] != list(range(len(flips[i]))) else None,
            label_from_boxes=True,
            segments=_instances(boxes[i], segs[i]) if has_instances else None,
        )
        for i, (rel, full) in images.items()
    ]
    with_kp = [pairs[cid] for cid, _, kp in cats if kp]
    same = with_kp[0] if len(with_kp) == 1 and with_kp[0] != list(range(len(with_kp[0]))) else None
    classes = tuple(name for _, name, _ in cats)
    notes = tuple(_unused_note(p, k, n, first, len(anns)) for k, (n, first) in sorted(unused.items()))
    srcs = tuple(sorted(sources, key=lambda s: s.rel))
    return SourceSet(root, srcs, classes, "coco", tuple(same) if same else None, notes)


def _instances(boxes: List[tuple], segs: List[Optional[Segment]]) -> Optional[Tuple[Segment, ...]]:
    """One segment per box: an annotation without ``segmentation`` is its box as a rectangle polygon."""
    out = []
    for b, s in zip(boxes, segs):
        if s is None:
            c, x0, y0, x1, y1 = b
            s = Segment(int(c), ((x0, y0, x1, y0, x1, y1, x0, y1),))
        out.append(s)
    return tuple(out) or None


def _unused_note(p: Path, field: str, n: int, first: int, total: int) -> str:
    return (
        f"{p}: annotations: field {field!r} (in {n} of {total} annotations, first annotations[{first}]) "
        f"is not used by edgeaug and is left out of the pack"
    )


def flip_pairs(names: List[str]) -> List[int]:
    """The flip permutation of one category's keypoint names: ``left_X`` and ``right_X`` swap."""
    pos = {n.casefold(): i for i, n in enumerate(names)}
    out = list(range(len(names)))
    for i, n in enumerate(names):
        low = n.casefold()
        for a, b in (("left_", "right_"), ("right_", "left_")):
            if low.startswith(a) and b + low[len(a) :] in pos:
                out[i] = pos[b + low[len(a) :]]
    return out


def _list(p: Path, data: dict, key: str) -> list:
    v = data.get(key)
    if not isinstance(v, list):
        raise SourceError(f"{p.name}: {key}: expected a list")
    return v


def _coco_categories(p: Path, cats: list) -> List[Tuple[int, str, List[str]]]:
    out, seen = [], set()
    for i, c in enumerate(cats):
        where = f"{p.name}: categories[{i}]"
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or isinstance(c.get("id"), bool):
            raise SourceError(f"{where}.id: expected an integer")
        if not isinstance(c.get("name"), str) or c["id"] in seen:
            raise SourceError(f"{where}: needs a string name and a unique id")
        seen.add(c["id"])
        kp = c.get("keypoints", [])
        if not isinstance(kp, list) or not all(isinstance(n, str) for n in kp):
            raise SourceError(f"{where}.keypoints: expected a list of keypoint names")
        out.append((c["id"], c["name"], kp))
    return out


def _coco_images(p: Path, root: Path, imgs: list) -> Dict[Any, Tuple[str, Path]]:
    out: Dict[Any, Tuple[str, Path]] = {}
    seen = set()
    for i, im in enumerate(imgs):
        where = f"{p.name}: images[{i}]"
        if not isinstance(im, dict) or not isinstance(im.get("file_name"), str) or not im["file_name"]:
            raise SourceError(f"{where}.file_name: missing or not a string")
        if not _is_id(im.get("id")) or im["id"] in out:
            raise SourceError(f"{where}.id: missing, not an integer/string, or duplicate {im.get('id')!r}"[:160])
        rel, full = _image_path(p, root, im["file_name"], f"{where}.file_name")
        if rel in seen:
            raise SourceError(f"{where}.file_name: {im['file_name']!r} is listed twice")
        seen.add(rel)
        out[im["id"]] = (rel, full)
    if not out:
        raise SourceError(f"{p.name}: images: the list is empty")
    return out


def _image_path(p: Path, root: Path, name: str, where: str) -> Tuple[str, Path]:
    """(path relative to ``root``, full path) of an image ``file_name``.

    Tried beside the JSON, in ``root`` and in ``root/images``.  Paths are
    joined and normalized by name, not resolved, so symlinks inside the
    dataset folder are followed as for class folders and YOLO; a name that
    leaves the folder (``..``, or an absolute path elsewhere) is refused.
    """
    import posixpath

    json_dir = None
    for d in (Path(os.path.abspath(p.parent)), p.parent.resolve()):  # by name first: annotations/ may be a link
        try:
            json_dir = d.relative_to(root).as_posix()
            break
        except ValueError:
            pass
    if posixpath.isabs(name):
        try:
            name = Path(name).relative_to(root).as_posix()
        except ValueError:
            raise SourceError(f"{where}: {name!r} escapes the dataset folder {root}") from None
    bases = ([json_dir] if json_dir is not None else []) + ["", "images"]
    rels = [posixpath.normpath(posixpath.join(b, name)) for b in bases]
    inside = [r for r in rels if r != ".." and not r.startswith("../")]
    rel = next((r for r in inside if (root / r).is_file()), rels[0])
    if rel not in inside:
        raise SourceError(f"{where}: {name!r} escapes the dataset folder {root}")
    return rel, root / rel


def _is_id(v: Any) -> bool:
    return isinstance(v, (int, str)) and not isinstance(v, bool)


def _coco_nums(v: Any, n: int, where: str) -> List[float]:
    if (
        not isinstance(v, list)
        or len(v) != n
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
    ):
        raise SourceError(f"{where}: expected {n} finite numbers, got {v!r}"[:160])
    return [float(x) for x in v]
