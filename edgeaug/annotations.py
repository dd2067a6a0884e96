"""Importers for annotated datasets: YOLO txt, COCO JSON, segmentation mask folders.

Each returns the sources of :mod:`edgeaug.sources` with boxes ``[class, x0,
y0, x1, y1]``, keypoints ``[x, y, visible]`` and a mask path.  YOLO
coordinates stay normalized (``Source.normalized``) until the image is
decoded and its size is known; COCO coordinates are pixels.

A detection source's record label is the most frequent class among its boxes
(ties: the lowest class id), or -1 when it has none; mask-only datasets
label every record -1.  Nothing here executes data: ``data.yaml`` is read by
a tiny parser that understands only ``names`` and ``kpt_shape``.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .sources import IMAGE_EXTS, Source, SourceError, SourceSet

YAML_FILES = ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml")


# --- a tiny, safe reader for data.yaml's `names` and `kpt_shape` ------------------

def yaml_entry(text: str, key: str, where: str) -> Any:
    """The value of top-level ``key``: a flow list/map, a scalar, or an indented block.

    Blocks are ``- item`` lines (a list) or ``id: name`` lines (a map).
    Returns None if the key is absent.
    """
    lines = text.splitlines()
    for n, line in enumerate(lines):
        if not line.startswith(key + ":"):
            continue
        rest = _uncomment(line[len(key) + 1:]).strip()
        if rest:
            return _flow(rest, f"{where}:{n + 1}")
        block = []
        for m in range(n + 1, len(lines)):
            item = _uncomment(lines[m]).strip()
            if not item:
                continue
            if not lines[m][0].isspace() and not lines[m].startswith("-"):
                break  # the next top-level key ("- item" may sit at column 0)
            block.append((f"{where}:{m + 1}", item))
        return _block(block, f"{where}:{n + 1}")
    return None


def _uncomment(s: str) -> str:
    """Drop a ``# comment`` that is not inside quotes."""
    quote = None
    for i, ch in enumerate(s):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or s[i - 1].isspace()):
            return s[:i]
    return s


def _split(s: str) -> List[str]:
    """Split on commas outside quotes."""
    parts, cur, quote = [], "", None
    for ch in s:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == ",":
            parts.append(cur)
            cur = ""
            continue
        cur += ch
    return [p.strip() for p in parts + [cur] if p.strip()]


def _scalar(s: str) -> str:
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    return s


def _flow(s: str, where: str) -> Any:
    if s[0] == "[":
        if s[-1] != "]":
            raise SourceError(f"{where}: unterminated [ list")
        return [_scalar(x) for x in _split(s[1:-1])]
    if s[0] == "{":
        if s[-1] != "}":
            raise SourceError(f"{where}: unterminated {{ map")
        return _block([(where, x) for x in _split(s[1:-1])], where)
    return _scalar(s)


def _block(items: Sequence[Tuple[str, str]], where: str) -> Any:
    if not items:
        raise SourceError(f"{where}: empty value")
    if all(it.startswith("-") for _, it in items):
        return [_scalar(it[1:]) for _, it in items]
    out: Dict[int, str] = {}
    for w, it in items:
        k, sep, v = it.partition(":")
        if not sep or not k.strip().isdigit():
            raise SourceError(f"{w}: expected '- name' or 'id: name', got {it!r}"[:160])
        out[int(k)] = _scalar(v)
    if sorted(out) != list(range(len(out))):
        raise SourceError(f"{where}: class ids must be 0..{len(out) - 1}, got {sorted(out)}"[:160])
    return [out[i] for i in range(len(out))]


def class_names(root: Path) -> Tuple[Optional[List[str]], Optional[Tuple[int, int]]]:
    """Class names (and YOLO pose ``kpt_shape``) from data.yaml or classes.txt, if present."""
    for name in YAML_FILES:
        p = root / name
        if p.is_file():
            text = _read_text(p)
            names, kpt = yaml_entry(text, "names", p.name), yaml_entry(text, "kpt_shape", p.name)
            if names is not None and not isinstance(names, list):
                raise SourceError(f"{p}: names: expected a list or an id: name map")
            return names, _kpt_shape(kpt, p) if kpt is not None else None
    for p in (root / "classes.txt", root / "labels" / "classes.txt"):
        if p.is_file():
            return [ln.strip() for ln in _read_text(p).splitlines() if ln.strip()], None
    return None, None


def _kpt_shape(v: Any, p: Path) -> Tuple[int, int]:
    try:
        k, d = (int(x) for x in v)
    except (TypeError, ValueError):
        raise SourceError(f"{p}: kpt_shape: expected [keypoints, 2 or 3], got {v!r}") from None
    if k < 1 or d not in (2, 3):
        raise SourceError(f"{p}: kpt_shape: expected [keypoints, 2 or 3], got {v!r}")
    return k, d


def _read_text(p: Path) -> str:
    try:
        return p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(f"{p}: cannot read: {e}") from None


# --- YOLO -----------------------------------------------------------------------

def scan_yolo(root: Path) -> SourceSet:
    """``root/images/**`` with ``root/labels/**.txt`` (``class cx cy w h`` normalized).

    Pose datasets declare ``kpt_shape: [K, 2|3]`` in data.yaml and append K
    keypoints per line.  An image without a label file has no boxes.
    """
    names, kpt = class_names(root)
    masks = root / "masks" if (root / "masks").is_dir() else None
    sources, max_id = [], -1
    for img in _images(root / "images"):
        rel = img.relative_to(root / "images")
        lab = root / "labels" / rel.with_suffix(".txt")
        boxes, kps = _yolo_file(lab, kpt, names) if lab.is_file() else ((), ())
        max_id = max([max_id] + [int(b[0]) for b in boxes])
        sources.append(Source(img.relative_to(root).as_posix(), img, _majority(boxes), boxes or None,
                              _mask_of(root, masks, rel), kps or None, normalized=True))
    classes = tuple(names) if names is not None else tuple(str(i) for i in range(max_id + 1))
    return SourceSet(root, tuple(sorted(sources, key=lambda s: s.rel)), classes, "yolo")


def _yolo_file(p: Path, kpt: Optional[Tuple[int, int]], names: Optional[List[str]]):
    boxes, kps = [], []
    want = 5 + (kpt[0] * kpt[1] if kpt else 0)
    for n, line in enumerate(_read_text(p).splitlines(), 1):
        if not line.strip():
            continue
        where = f"{p}:{n}"
        vals = _numbers(line.split(), where)
        if len(vals) != want:
            raise SourceError(f"{where}: expected {want} numbers (class cx cy w h"
                              f"{' + keypoints per kpt_shape' if kpt else ''}), got {len(vals)}")
        c, cx, cy, w, h = vals[:5]
        if c != int(c) or c < 0 or (names is not None and c >= len(names)):
            raise SourceError(f"{where}: class {vals[0]:g} is not a class id"
                              + (f" 0..{len(names) - 1}" if names else ""))
        if w < 0 or h < 0:
            raise SourceError(f"{where}: negative box size {w:g} x {h:g}")
        boxes.append((float(c), cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        if kpt:
            k, d = kpt
            pts = [vals[5 + i * d:5 + (i + 1) * d] for i in range(k)]
            kps += [(x[0], x[1], x[2] if d == 3 else 2.0) for x in pts]
    return tuple(boxes), tuple(kps)


def _numbers(tokens: Sequence[str], where: str) -> List[float]:
    try:
        vals = [float(t) for t in tokens]
    except ValueError:
        raise SourceError(f"{where}: expected numbers, got {' '.join(tokens)!r}"[:160]) from None
    if not all(math.isfinite(v) for v in vals):
        raise SourceError(f"{where}: non-finite number")
    return vals


def _majority(boxes: Sequence[Sequence[float]]) -> int:
    """The record label of a detection source: most frequent box class, lowest on ties."""
    if not boxes:
        return -1
    counts = Counter(int(b[0]) for b in boxes)
    return min(counts, key=lambda c: (-counts[c], c))


# --- segmentation masks ---------------------------------------------------------

def scan_masks(root: Path) -> SourceSet:
    """``root/images/**`` with ``root/masks/**.png`` of class ids; classes from classes.txt."""
    names, _ = class_names(root)
    sources = [Source(img.relative_to(root).as_posix(), img, -1, None,
                      _mask_of(root, root / "masks", img.relative_to(root / "images")))
               for img in _images(root / "images")]
    return SourceSet(root, tuple(sorted(sources, key=lambda s: s.rel)), tuple(names or ()), "masks")


def _mask_of(root: Path, masks: Optional[Path], rel: Path) -> Optional[str]:
    if masks is None:
        return None
    m = masks / rel.with_suffix(".png")
    if not m.is_file():
        raise SourceError(f"{root}: images/{rel.as_posix()} has no mask masks/{rel.with_suffix('.png').as_posix()}")
    return str(m)


def _images(d: Path) -> List[Path]:
    found = [f for f in sorted(d.rglob("*"))
             if f.is_file() and f.suffix.lower() in IMAGE_EXTS and not f.name.startswith(".")]
    if not found:
        raise SourceError(f"{d}: no images ({', '.join(sorted(IMAGE_EXTS))})")
    return found


# --- COCO -----------------------------------------------------------------------

def scan_coco(p: Path) -> SourceSet:
    """A COCO instances JSON: ``images``, ``annotations`` (``bbox`` xywh, ``keypoints``), ``categories``.

    Image ``file_name`` resolves against the JSON's folder, then its
    ``images/`` subfolder.  Categories sort by id into class indices.
    ``iscrowd`` annotations are skipped.  A category with K keypoint names
    contributes exactly K keypoints per annotation, in annotation order.
    """
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise SourceError(f"{p}: cannot read COCO JSON: {e}") from None
    if not isinstance(data, dict):
        raise SourceError(f"{p}: expected a JSON object with images, annotations, categories")
    cats = sorted(_coco_categories(p, _list(p, data, "categories")), key=lambda c: c[0])
    index = {cid: i for i, (cid, _, _) in enumerate(cats)}
    nkp = {cid: k for cid, _, k in cats}
    root = p.parent.resolve()
    images = _coco_images(p, root, _list(p, data, "images"))
    boxes: Dict[Any, List[tuple]] = {i: [] for i in images}
    kps: Dict[Any, List[tuple]] = {i: [] for i in images}
    anns = data.get("annotations", [])
    if not isinstance(anns, list):
        raise SourceError(f"{p.name}: annotations: expected a list")
    for j, a in enumerate(anns):
        where = f"{p.name}: annotations[{j}]"
        if not isinstance(a, dict):
            raise SourceError(f"{where}: expected an object")
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
        k = nkp[a["category_id"]]
        if k:
            raw = a.get("keypoints", [0.0] * 3 * k)
            v = _coco_nums(raw, 3 * k, f"{where}.keypoints")
            kps[a["image_id"]] += [tuple(v[i:i + 3]) for i in range(0, 3 * k, 3)]
    sources = [Source(rel, full, _majority(boxes[i]), tuple(boxes[i]) or None, None, tuple(kps[i]) or None)
               for i, (rel, full) in images.items()]
    return SourceSet(root, tuple(sorted(sources, key=lambda s: s.rel)),
                     tuple(name for _, name, _ in cats), "coco")


def _list(p: Path, data: dict, key: str) -> list:
    v = data.get(key)
    if not isinstance(v, list):
        raise SourceError(f"{p.name}: {key}: expected a list")
    return v


def _coco_categories(p: Path, cats: list) -> List[Tuple[int, str, int]]:
    out, seen = [], set()
    for i, c in enumerate(cats):
        where = f"{p.name}: categories[{i}]"
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or isinstance(c.get("id"), bool):
            raise SourceError(f"{where}.id: expected an integer")
        if not isinstance(c.get("name"), str) or c["id"] in seen:
            raise SourceError(f"{where}: needs a string name and a unique id")
        seen.add(c["id"])
        kp = c.get("keypoints", [])
        out.append((c["id"], c["name"], len(kp) if isinstance(kp, list) else 0))
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
        cands = [(root / im["file_name"]).resolve(), (root / "images" / im["file_name"]).resolve()]
        full = next((c for c in cands if c.is_file()), cands[0])
        try:
            rel = full.relative_to(root).as_posix()
        except ValueError:
            raise SourceError(f"{where}.file_name: {im['file_name']!r} escapes the JSON's directory") from None
        if rel in seen:
            raise SourceError(f"{where}.file_name: {im['file_name']!r} is listed twice")
        seen.add(rel)
        out[im["id"]] = (rel, full)
    if not out:
        raise SourceError(f"{p.name}: images: the list is empty")
    return out


def _is_id(v: Any) -> bool:
    return isinstance(v, (int, str)) and not isinstance(v, bool)


def _coco_nums(v: Any, n: int, where: str) -> List[float]:
    if (not isinstance(v, list) or len(v) != n
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)):
        raise SourceError(f"{where}: expected {n} finite numbers, got {v!r}"[:160])
    return [float(x) for x in v]
