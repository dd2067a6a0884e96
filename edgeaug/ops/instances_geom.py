"""Instance-aware labels and the placement step the multi-image ops share.

:class:`InstanceLabels` is :class:`edgeaug.builder.augment.Labels` plus
``instances`` (``(n, H, W)`` bool, row ``k`` the mask of box ``k``), the
record's class ``label`` and its soft label ``mix``.  When augment.Labels gains
``instances``/``label``/``mix`` fields this class can be replaced by it: the
other fields mean the same (boxes ``[class, x0, y0, x1, y1]`` and keypoints
``[x, y, visible]`` in continuous pixel coordinates, ``mask`` class ids).

:func:`place` is the one resampling step: a source image and its labels go
through one 3x3 matrix (scale, translate, flip: axis-aligned) into a pixel
rectangle of the output.  Only the pixels whose centres fall in the rectangle
are written, so a mosaic tile is resampled once, straight from its source.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import List, Optional, Sequence, Tuple

import numpy as np

from edgeaug.device.instances import instance_boxes
from edgeaug.ops.base import scale, translate

Rect = Tuple[int, int, int, int]  # x0, y0, x1, y1: whole pixels, half-open
MAX_CHANNELS = 256  # bit-packed instance planes warped per OpenCV call


@dataclass
class InstanceLabels:
    """Labels of one image, in its pixel frame; see the module docstring.

    ``instances`` None: the dataset has no instance masks (boxes stand alone).
    ``note`` says why an op changed nothing (e.g. a partner without instances).
    """

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 5), np.float32))
    keypoints: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    mask: Optional[np.ndarray] = None
    flip: Optional[np.ndarray] = None
    instances: Optional[np.ndarray] = None
    label: int = -1
    mix: Optional[List[Tuple[int, float]]] = None
    note: str = ""


def fit_matrix(src: Tuple[int, int], out: Tuple[int, int], mode: str) -> np.ndarray:
    """The recipe's final resize (``squash``, ``letterbox`` or ``center_crop``) from ``src`` (w, h) to ``out``."""
    (w, h), (tw, th) = src, out
    if mode == "squash":
        return scale(tw / w, th / h)
    s = (min if mode == "letterbox" else max)(tw / w, th / h)
    return translate((tw - w * s) / 2, (th - h * s) / 2) @ scale(s, s)


def hflip(width: float) -> np.ndarray:
    return translate(width, 0) @ scale(-1, 1)


def apply_rect(m: np.ndarray, rect: Tuple[float, float, float, float]) -> Tuple[float, float, float, float]:
    """An axis-aligned rectangle through an axis-aligned matrix."""
    x = m[0, 0] * np.array([rect[0], rect[2]]) + m[0, 2]
    y = m[1, 1] * np.array([rect[1], rect[3]]) + m[1, 2]
    return float(x.min()), float(y.min()), float(x.max()), float(y.max())


def pixel_rect(rect: Tuple[float, float, float, float], out: Tuple[int, int]) -> Rect:
    """The output pixels whose centres lie in ``[x0, x1) x [y0, y1)``, clipped to the frame."""
    w, h = out
    x0, x1 = (int(np.clip(np.ceil(v - 0.5), 0, w)) for v in (rect[0], rect[2]))
    y0, y1 = (int(np.clip(np.ceil(v - 0.5), 0, h)) for v in (rect[1], rect[3]))
    return x0, y0, max(x0, x1), max(y0, y1)


def warp_into(dst: np.ndarray, src: np.ndarray, m: np.ndarray, rect: Rect, fill: int, linear: bool) -> None:
    """Resample ``src`` through ``m`` into ``dst[rect]`` (continuous coordinates, pixel centres at +0.5)."""
    import cv2

    x0, y0, x1, y1 = rect
    if x1 <= x0 or y1 <= y0:
        return
    pix = translate(-0.5 - x0, -0.5 - y0) @ m @ translate(0.5, 0.5)
    out = cv2.warpAffine(
        src,
        pix[:2],
        (x1 - x0, y1 - y0),
        flags=cv2.INTER_LINEAR if linear else cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(fill,) * 4,
    )
    dst[y0:y1, x0:x1] = out.reshape(dst[y0:y1, x0:x1].shape)


def warp_masks(masks: np.ndarray, m: np.ndarray, rect: Rect, out: Tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour warp of ``(n, h, w)`` bool masks into ``rect`` of an ``out`` frame.

    Each output pixel takes the source pixel under its centre.  Axis-aligned
    matrices (every multi-image op's) gather rows and columns directly; others
    go through OpenCV with eight masks bit-packed per channel.
    """
    n = masks.shape[0]
    res = np.zeros((n, out[1], out[0]), bool)
    x0, y0, x1, y1 = rect
    if n == 0 or x1 <= x0 or y1 <= y0:
        return res
    if m[0, 1] == 0 and m[1, 0] == 0 and m[2, 0] == 0 and m[2, 1] == 0 and m[2, 2] == 1:
        sx, vx = _source_index(m[0, 0], m[0, 2], x0, x1, masks.shape[2])
        sy, vy = _source_index(m[1, 1], m[1, 2], y0, y1, masks.shape[1])
        res[:, y0:y1, x0:x1] = masks[:, sy[:, None], sx[None, :]] & (vy[:, None] & vx[None, :])
        return res
    planes = np.packbits(masks, axis=0).transpose(1, 2, 0)  # (h, w, ceil(n/8))
    dst = np.zeros((out[1], out[0], planes.shape[2]), np.uint8)
    for c in range(0, planes.shape[2], MAX_CHANNELS):
        part = np.ascontiguousarray(planes[:, :, c : c + MAX_CHANNELS])
        tmp = np.zeros(dst.shape[:2] + part.shape[2:], np.uint8)
        warp_into(tmp, part, m, rect, 0, linear=False)
        dst[:, :, c : c + MAX_CHANNELS] = tmp
    return np.unpackbits(dst, axis=2, count=n).transpose(2, 0, 1).astype(bool)


def _source_index(a: float, b: float, lo: int, hi: int, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """For output pixels ``lo..hi-1`` of ``x' = a x + b``: the source pixel under each centre, and whether it exists."""
    src = np.floor((np.arange(lo, hi) + 0.5 - b) / a).astype(np.intp)
    valid = (src >= 0) & (src < size)
    return np.clip(src, 0, size - 1), valid


def count(masks: np.ndarray) -> np.ndarray:
    """Pixels per mask of ``(n, H, W)`` bool: one whole-array count_nonzero per mask (an axis sum converts
    every pixel to an integer first, several times slower)."""
    return np.array([np.count_nonzero(x) for x in masks], np.int64)


def boxes_from_instances(classes: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """``[class, x0, y0, x1, y1]`` rows: each box the bounding box of its mask."""
    return np.c_[np.asarray(classes, np.float32).reshape(-1, 1), instance_boxes(masks)].astype(np.float32)


def place(lab: InstanceLabels, m: np.ndarray, rect: Rect, out: Tuple[int, int], min_vis: float) -> InstanceLabels:
    """``lab`` through ``m`` into ``rect`` of the output: what is outside ``rect`` is cut away.

    A box (an instance) is kept when the fraction of its transformed area
    (pixels) inside ``rect`` is at least ``min_vis`` and not zero; a keypoint
    outside ``rect`` becomes ``(0, 0, 0)``.  ``mask`` is the whole output frame,
    0 outside ``rect``.
    """
    det = abs(float(m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]))
    res = InstanceLabels(label=lab.label, flip=lab.flip)
    if lab.instances is not None:
        warped = warp_masks(lab.instances, m, rect, out)
        kept = visible(count(warped), count(lab.instances) * det, min_vis)
        res.instances = warped[kept]
        res.boxes = boxes_from_instances(lab.boxes[kept, 0], res.instances)
    else:
        res.boxes = clip_boxes(transform_boxes(lab.boxes, m), rect, min_vis)
    res.keypoints = transform_keypoints(lab.keypoints, m, rect)
    if lab.mask is not None:
        res.mask = np.zeros((out[1], out[0]), np.uint8)
        warp_into(res.mask, lab.mask, m, rect, 0, linear=False)
    return res


def visible(after: np.ndarray, before: np.ndarray, min_vis: float) -> np.ndarray:
    """Which objects keep enough of their area: ``after > 0`` and ``after >= min_vis * before``."""
    return (after > 0) & (after >= min_vis * np.asarray(before, np.float64) - 1e-9)


def transform_boxes(boxes: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``[class, x0, y0, x1, y1]`` rows through an axis-aligned matrix (flips reorder the corners)."""
    if not len(boxes):
        return np.zeros((0, 5), np.float32)
    b = np.asarray(boxes, np.float64)
    x = b[:, [1, 3]] * m[0, 0] + m[0, 2]
    y = b[:, [2, 4]] * m[1, 1] + m[1, 2]
    return np.c_[b[:, 0], x.min(1), y.min(1), x.max(1), y.max(1)]


def clip_boxes(boxes: np.ndarray, rect: Rect, min_vis: float) -> np.ndarray:
    """Clip boxes to ``rect``; drop those keeping less than ``min_vis`` of their area (or none of it)."""
    if not len(boxes):
        return np.zeros((0, 5), np.float32)
    b = np.asarray(boxes, np.float64)
    c = b.copy()
    c[:, [1, 3]] = np.clip(b[:, [1, 3]], rect[0], rect[2])
    c[:, [2, 4]] = np.clip(b[:, [2, 4]], rect[1], rect[3])
    area = (b[:, 3] - b[:, 1]) * (b[:, 4] - b[:, 2])
    kept = (c[:, 3] - c[:, 1]) * (c[:, 4] - c[:, 2])
    return c[visible(kept, area, min_vis)].astype(np.float32)


def transform_keypoints(kp: np.ndarray, m: np.ndarray, rect: Rect) -> np.ndarray:
    """Keypoints through ``m``; invisible ones and those outside ``rect`` become ``(0, 0, 0)``."""
    k = np.asarray(kp, np.float64).reshape(-1, 3)
    xy = k[:, :2] @ m[:2, :2].T + m[:2, 2]
    inside = (xy[:, 0] >= rect[0]) & (xy[:, 0] < rect[2]) & (xy[:, 1] >= rect[1]) & (xy[:, 1] < rect[3])
    keep = inside & (k[:, 2] > 0)
    return np.where(keep[:, None], np.c_[xy, k[:, 2]], 0).astype(np.float32)


def concat(parts: Sequence[InstanceLabels], label: int = -1) -> InstanceLabels:
    """Labels of several placed pieces in one output frame, in order.

    Instances survive only when every piece has them (or no boxes); masks
    add up (pieces cover disjoint pixels, or the caller occluded first).
    """
    boxes = np.concatenate([p.boxes for p in parts]).astype(np.float32).reshape(-1, 5)
    kps = np.concatenate([p.keypoints for p in parts]).astype(np.float32).reshape(-1, 3)
    inst = None
    if all(p.instances is not None or not len(p.boxes) for p in parts) and any(p.instances is not None for p in parts):
        shape = next(p.instances.shape[1:] for p in parts if p.instances is not None)
        inst = np.concatenate([p.instances if p.instances is not None else np.zeros((0, *shape), bool) for p in parts])
    masks = [p.mask for p in parts if p.mask is not None]
    mask = None if not masks else np.maximum.reduce(masks)
    return InstanceLabels(boxes, kps, mask, _concat_flips(parts), inst, label)


def _concat_flips(parts: Sequence[InstanceLabels]) -> Optional[np.ndarray]:
    if all(p.flip is None for p in parts):
        return None
    out, off = [], 0
    for p in parts:
        n = len(p.keypoints)
        out.append((np.arange(n) if p.flip is None else np.asarray(p.flip)) + off)
        off += n
    return np.concatenate(out).astype(np.intp)


def occlude(lab: InstanceLabels, cover: np.ndarray, min_vis: float) -> InstanceLabels:
    """Remove the pixels of ``cover`` ((H, W) bool) from ``lab``: what a pasted patch hides.

    Instances lose the covered pixels and are dropped below ``min_vis`` of
    their area before; boxes follow their masks.  Without instances a box is
    dropped by the same rule on its pixels and otherwise shrinks to the
    bounding box of what stays visible when the cover is a rectangle
    (:func:`shrink_box`).  A covered keypoint keeps its place but is no longer
    visible (COCO's v=1, labelled but occluded).  The semantic mask is left
    for the caller to composite.
    """
    res = replace(lab)
    if lab.instances is not None:
        cut = lab.instances & ~cover
        kept = visible(count(cut), count(lab.instances), min_vis)
        res.instances = cut[kept]
        res.boxes = boxes_from_instances(lab.boxes[kept, 0], res.instances)
    elif len(lab.boxes):
        res.boxes = _occlude_boxes(lab.boxes, cover, min_vis)
    k = lab.keypoints.copy()
    if len(k):
        h, w = cover.shape
        xi, yi = np.clip(k[:, 0].astype(int), 0, w - 1), np.clip(k[:, 1].astype(int), 0, h - 1)
        hidden = cover[yi, xi] & (k[:, 2] > 1)
        k[hidden, 2] = 1
        res.keypoints = k
    return res


def _occlude_boxes(boxes: np.ndarray, cover: np.ndarray, min_vis: float) -> np.ndarray:
    ys, xs = np.nonzero(cover)
    rect = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) if len(xs) else None
    is_rect = rect is not None and len(xs) == (rect[2] - rect[0]) * (rect[3] - rect[1])
    sat = np.pad(cover.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # summed-area table
    out = []
    for b in boxes:
        x0, y0, x1, y1 = (int(np.clip(np.ceil(v - 0.5), 0, lim)) for v, lim in zip(b[1:], cover.shape[::-1] * 2))
        area = (x1 - x0) * (y1 - y0)
        hid = sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0] if area > 0 else 0
        if area <= 0 or not visible(np.array([area - hid]), np.array([area]), min_vis)[0]:
            continue
        out.append(shrink_box(b, rect) if is_rect else b)
    return np.array(out, np.float32).reshape(-1, 5)


def shrink_box(box: np.ndarray, rect: Tuple[float, float, float, float]) -> np.ndarray:
    """The bounding box of ``box`` minus the rectangle ``rect`` (a covered side moves in)."""
    c, x0, y0, x1, y1 = (float(v) for v in box)
    rx0, ry0, rx1, ry1 = rect
    if ry0 <= y0 and ry1 >= y1:  # the cover spans the box's height: x shrinks
        if rx0 <= x0 < rx1:
            x0 = min(max(x0, rx1), x1)
        if rx0 < x1 <= rx1:
            x1 = max(min(x1, rx0), x0)
    if rx0 <= x0 and rx1 >= x1:  # spans its width: y shrinks
        if ry0 <= y0 < ry1:
            y0 = min(max(y0, ry1), y1)
        if ry0 < y1 <= ry1:
            y1 = max(min(y1, ry0), y0)
    return np.array([c, x0, y0, x1, y1], np.float32)
