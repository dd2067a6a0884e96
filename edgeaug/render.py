"""Rendering one source: decode once, then every variant's record bytes.

Shared by the builder's workers and by ``edgeaug verify --source``, which
regenerates records and compares them byte for byte.
"""
from __future__ import annotations

import hashlib
from typing import Any, Dict, List, Tuple

import numpy as np

from .augment import Augmenter, Labels, record_rng
from .format import SPLITS, encode_record, pack_labels

MAX_PIXELS = 120_000_000  # refuse decompression bombs


class SourceDecodeError(ValueError):
    """A source image cannot be used; the message is the reason."""


def decode(data: bytes) -> np.ndarray:
    """Decode image bytes to RGB uint8 (H, W, 3)."""
    import cv2
    if not data:
        raise SourceDecodeError("empty file")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise SourceDecodeError("not a decodable image (corrupt, truncated or unsupported)")
    if img.shape[0] * img.shape[1] > MAX_PIXELS:
        raise SourceDecodeError(f"{img.shape[1]}x{img.shape[0]} exceeds {MAX_PIXELS} pixels")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def working_image(image: np.ndarray, aug: Augmenter) -> np.ndarray:
    """Shrink very large sources once with area averaging, shared by all variants.

    The one warp then interpolates from an image at most ~2x the target, which
    avoids aliasing; params stay in original-image coordinates.
    """
    import cv2
    h, w = image.shape[:2]
    f = min(w / aug.target.width, h / aug.target.height) / 2.0
    if f < 2.0:
        return image
    size = (max(1, int(round(w / f))), max(1, int(round(h / f))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def source_labels(source: Any, size: Tuple[int, int] | None = None) -> Labels:
    """Source annotations in original-image pixel coordinates.

    ``size`` (w, h) of the decoded image scales normalized (YOLO) coordinates.
    """
    lab = Labels()
    f = np.ones(2, np.float64)
    if getattr(source, "normalized", False):
        if size is None:
            raise ValueError(f"{source.rel}: normalized labels need the image size")
        f = np.asarray(size, np.float64)
    if source.boxes:
        b = np.asarray(source.boxes, np.float64).reshape(-1, 5)
        b[:, 1:] *= np.tile(f, 2)
        lab.boxes = b.astype(np.float32)
    if source.keypoints:
        k = np.asarray(source.keypoints, np.float64).reshape(-1, 3)
        k[:, :2] *= f
        lab.keypoints = k.astype(np.float32)
    return lab


def render_variant(aug: Augmenter, work: np.ndarray, labels: Labels, src_size: Tuple[int, int],
                   seed: int, source: Any, variant: int,
                   hist: np.ndarray | None = None) -> Tuple[np.ndarray, Labels, List[Dict]]:
    """One variant: (tensor, labels, sampled params). Variant 0 is the original.

    ``hist`` (channels, 256), if given, accumulates the quantization audit's counts.
    """
    # Variant 0 has no params, so render applies only the resize (zip stops early).
    params = [] if variant == 0 else aug.sample(record_rng(seed, source.key, variant), src_size)
    img, lab = aug.render(work, labels, params, src_size)
    if hist is not None:
        from .audit import histogram
        hist += histogram(img, aug.target)
    return aug.tensor(img), lab, params


def render_source(task: Any, aug: Augmenter, seed: int):
    """All records of one planned task, or the reason it was skipped."""
    from .build import SourceResult
    res = SourceResult(task.index)
    try:
        with open(task.source.path, "rb") as f:
            data = f.read()
    except OSError as e:
        res.error = f"cannot read: {e.strerror or e}"
        return res
    res.sha256 = hashlib.sha256(data).hexdigest()
    try:
        image = decode(data)
        labels = source_labels(task.source, image.shape[1::-1])
        labels.mask = load_mask(task.source)
        if labels.mask is not None and labels.mask.shape != image.shape[:2]:
            raise SourceDecodeError(f"mask: size {labels.mask.shape[::-1]} "
                                    f"differs from the image's {image.shape[1::-1]}")
    except SourceDecodeError as e:
        res.error = str(e)
        return res
    src_size = (image.shape[1], image.shape[0])
    work = working_image(image, aug)
    res.hist = np.zeros((aug.target.channels, 256), np.int64)
    for v in task.variants:
        tensor, lab, params = render_variant(aug, work, labels, src_size, seed, task.source, v,
                                             res.hist)
        packed = pack_labels(lab.boxes, lab.keypoints, lab.mask)
        res.records.append(encode_record(tensor, task.source.label, task.index, v,
                                         SPLITS[task.split], packed, {"ops": params}))
    return res


def load_mask(source: Any):
    """The source's segmentation mask (class ids, uint8), or None."""
    if not source.mask:
        return None
    import cv2
    m = cv2.imread(str(source.mask), cv2.IMREAD_UNCHANGED)
    if m is None:
        raise SourceDecodeError("mask: not a readable PNG")  # no absolute path into the manifest
    if m.ndim != 2 or m.dtype not in (np.uint8, np.uint16) or m.max(initial=0) > 255:
        raise SourceDecodeError("mask: expected a single-channel PNG of class ids 0..255")
    return m.astype(np.uint8)
