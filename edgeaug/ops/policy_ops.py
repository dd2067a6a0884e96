"""The member ops of the auto policies (:mod:`edgeaug.ops.auto`), as torchvision's ``_apply_op``.

Each takes a magnitude in torchvision's units.  The geometric members
(ShearX/Y, TranslateX/Y, Rotate) warp the output image a second time (nearest
neighbour, torchvision's default, in numpy: exact and independent of OpenCV's
threads) and move the labels with it: boxes (clipped, dropped below
``min_visibility``), keypoints (invisible outside the frame) and the mask.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from edgeaug.ops.boxgeom import transform_points, warp_boxes

GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
# Label fields a geometric member knows how to move; ``flip`` is metadata of the source's keypoint names.
MOVABLE = ("boxes", "keypoints", "mask", "flip")


def has_labels(labels: Any) -> bool:
    """Whether ``labels`` hold anything a warp would have to move."""
    if labels is None:
        return False
    for f in dataclasses.fields(labels):
        v = getattr(labels, f.name)
        if f.name != "flip" and v is not None and np.size(v):
            return True
    return False


def member_matrix(name: str, magnitude: float, unit: str, w: int, h: int) -> np.ndarray:
    """A geometric member's 3x3 forward matrix in continuous pixel coordinates (pixel i covers [i, i+1))."""
    m = np.eye(3)
    if name == "ShearX":  # about the top-left corner, as torchvision's center=[0, 0]
        m[0, 1] = magnitude
    elif name == "ShearY":
        m[1, 0] = magnitude
    elif name in ("TranslateX", "TranslateY"):
        size = w if name == "TranslateX" else h
        m[0 if name == "TranslateX" else 1, 2] = int(magnitude * size if unit == "frac" else magnitude)
    elif name == "Rotate":  # counter-clockwise about the centre
        a = math.radians(magnitude)
        c, s = math.cos(a), math.sin(a)
        cx, cy = w / 2, h / 2
        m[:2] = [[c, s, cx - c * cx - s * cy], [-s, c, cy + s * cx - c * cy]]
    return m


def apply_member(image: np.ndarray, labels: Any, entry: dict, fill: int, min_vis: float):
    """Apply one recorded member ``{"name", "magnitude"[, "unit"]}``."""
    name, mag = entry["name"], float(entry.get("magnitude", 0.0))
    if name in GEOMETRIC:
        h, w = image.shape[:2]
        m = member_matrix(name, mag, entry.get("unit", "px"), w, h)
        return warp_image(image, m, fill), warp_labels(labels, m, w, h, min_vis)
    return PIXEL[name](image, mag), labels


def warp_image(image: np.ndarray, m: np.ndarray, fill: int) -> np.ndarray:
    """Nearest-neighbour warp by the forward matrix ``m``; uncovered pixels get ``fill``.

    Written in numpy rather than ``cv2.warpAffine``: OpenCV's nearest-neighbour warp
    rounds ties differently with its thread count, which would make a verify run with
    more threads than the build disagree.  Each output pixel centre maps back through
    ``m``'s inverse and takes the source pixel that contains it (pixel i covers [i, i+1)).
    """
    h, w = image.shape[:2]
    inv = affine_inverse(m)
    xs, ys = np.arange(w) + 0.5, np.arange(h) + 0.5
    sx = np.floor(inv[0, 0] * xs[None, :] + inv[0, 1] * ys[:, None] + inv[0, 2]).astype(np.intp)
    sy = np.floor(inv[1, 0] * xs[None, :] + inv[1, 1] * ys[:, None] + inv[1, 2]).astype(np.intp)
    inside = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
    out = image[np.where(inside, sy, 0), np.where(inside, sx, 0)]
    out[~inside] = fill
    return out


def affine_inverse(m: np.ndarray) -> np.ndarray:
    """The inverse of an affine 3x3 matrix, written out: np.linalg.inv's LAPACK call wakes OpenBLAS's threads."""
    (a, b, c), (d, e, f) = m[0], m[1]
    det = a * e - b * d
    return np.array([[e, -b, b * f - c * e], [-d, a, c * d - a * f], [0.0, 0.0, det]]) / det


def warp_labels(labels: Any, m: np.ndarray, w: int, h: int, min_vis: float) -> Any:
    if not has_labels(labels):
        return labels
    unknown = [
        f.name for f in dataclasses.fields(labels) if f.name not in MOVABLE and getattr(labels, f.name) is not None
    ]
    if unknown:
        raise ValueError(f"the auto policies' geometric ops cannot move label field(s) {unknown}")
    kp = labels.keypoints.copy()
    if len(kp):
        kp[:, :2] = transform_points(m, kp[:, :2])
        inside = (kp[:, 0] >= 0) & (kp[:, 0] < w) & (kp[:, 1] >= 0) & (kp[:, 1] < h)
        kp[:, 2] = np.where(inside, kp[:, 2], 0)
    mask = None if labels.mask is None else warp_image(labels.mask, m, 0)
    return dataclasses.replace(labels, boxes=warp_boxes(labels.boxes, m, w, h, min_vis), keypoints=kp, mask=mask)


def _lut(image: np.ndarray, table: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.LUT(image, np.clip(np.rint(table), 0, 255).astype(np.uint8)).reshape(image.shape)


def _blend(image: np.ndarray, other, ratio: float) -> np.ndarray:
    """``ratio * image + (1 - ratio) * other``, as torchvision's ``_blend``, rounded."""
    out = np.float32(ratio) * image.astype(np.float32) + np.float32(1 - ratio) * other
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _gray(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.shape[2] == 3 else image[..., 0]


def _sharpness(image: np.ndarray, mag: float) -> np.ndarray:
    """torchvision's adjust_sharpness: blend with a 3x3 smoothing (centre 5/13) kept off the border."""
    import cv2

    k = np.ones((3, 3), np.float32)
    k[1, 1] = 5
    soft = cv2.filter2D(image, -1, k / 13).reshape(image.shape)
    soft[0], soft[-1], soft[:, 0], soft[:, -1] = image[0], image[-1], image[:, 0], image[:, -1]
    return _blend(image, soft.astype(np.float32), 1 + mag)


def _autocontrast(image: np.ndarray, mag: float) -> np.ndarray:
    import cv2

    x, tables = np.arange(256, dtype=np.float64), []
    for c in range(image.shape[2]):
        lo, hi = int(image[..., c].min()), int(image[..., c].max())
        tables.append(x if hi <= lo else (x - lo) * (255.0 / (hi - lo)))
    t = np.clip(np.rint(np.stack(tables, -1)), 0, 255).astype(np.uint8).reshape(1, 256, image.shape[2])
    return cv2.LUT(image, t).reshape(image.shape)


def _equalize(image: np.ndarray, mag: float) -> np.ndarray:
    import cv2

    return np.stack([cv2.equalizeHist(np.ascontiguousarray(image[..., c])) for c in range(image.shape[2])], -1)


_X = np.arange(256, dtype=np.float64)
PIXEL = {
    "Identity": lambda img, m: img,
    "Brightness": lambda img, m: _lut(img, _X * (1 + m)),
    "Color": lambda img, m: _blend(img, _gray(img)[..., None].astype(np.float32), 1 + m),
    "Contrast": lambda img, m: _blend(img, np.float32(_gray(img).mean()), 1 + m),
    "Sharpness": _sharpness,
    "Posterize": lambda img, m: _lut(img, np.bitwise_and(np.arange(256), 0xFF << (8 - int(m)) & 0xFF)),
    "Solarize": lambda img, m: _lut(img, np.where(_X >= m, 255 - _X, _X)),
    "AutoContrast": _autocontrast,
    "Equalize": _equalize,
}
