"""A reference for the online flip and shift (edgeaug.device.online), for tests/device/test_online_*.py."""

from __future__ import annotations

import numpy as np

#: The tensor dtypes and layouts a target may have.
DTYPES = ("uint8", "int8", "float16", "float32")
LAYOUTS = ("NHWC", "NCHW")


def random_batch(layout: str, dtype: str, n=5, h=7, w=9, c=3, seed=0) -> np.ndarray:
    """A batch of ``n`` random records of the shape ``layout`` orders (the full range of integer dtypes)."""
    rng = np.random.default_rng(seed)
    shape = (n, h, w, c) if layout == "NHWC" else (n, c, h, w)
    if dtype in ("uint8", "int8"):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max + 1, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def reference(rec: np.ndarray, layout: str, flip: bool, dx: int, dy: int, fill: np.ndarray) -> np.ndarray:
    """Mirror with np.flip, then translate by explicit pad-and-crop with the fill value."""
    hwc = rec if layout == "NHWC" else rec.transpose(1, 2, 0)
    if flip:
        hwc = np.flip(hwc, axis=1)
    h, w, c = hwc.shape
    p = max(abs(dx), abs(dy))
    canvas = np.empty((h + 2 * p, w + 2 * p, c), rec.dtype)
    canvas[...] = fill
    canvas[p : p + h, p : p + w] = hwc
    out = canvas[p - dy : p - dy + h, p - dx : p - dx + w]
    return np.ascontiguousarray(out if layout == "NHWC" else out.transpose(2, 0, 1))
