"""Quantization audit: how much of the data the target's tensor format clips or rounds away.

Inputs are uint8, so the stored value depends only on (channel, pixel value).
Workers count a 256-bin histogram per channel of every rendered record; the
audit weighs the target's exact per-value error by that histogram:

* ``clip_low`` / ``clip_high``: fraction of values that saturate at qmin/qmax
  (their unrounded quantized value lies beyond the representable range);
* ``mae`` / ``max_error``: mean and max |dequantized - ideal| in the model's
  normalized input units ((pixel/255 - mean)/std).
"""

from __future__ import annotations

from typing import Any, Dict, List

import numpy as np

from edgeaug.config.targets import QRANGE, Target, quantization_lut, to_color

#: Warn when more than this fraction of a channel's values is clipped.
CLIP_WARN = 0.01


def histogram(image: np.ndarray, target: Target) -> np.ndarray:
    """(channels, 256) counts of pixel values, in the target's colour order."""
    import cv2

    img = np.ascontiguousarray(to_color(image, target.color))
    # calcHist counts exactly (float32 holds counts up to 2**24, far above one image's pixels).
    return np.stack([cv2.calcHist([img], [c], None, [256], [0, 256]).ravel() for c in range(target.channels)]).astype(
        np.int64
    )


def per_value_error(target: Target) -> Dict[str, np.ndarray]:
    """For every (pixel value, channel): clipped low/high flags and abs error."""
    p = np.arange(256, dtype=np.float64)[:, None] / 255.0
    ideal = (p - np.asarray(target.mean)) / np.asarray(target.std)
    q = quantization_lut(target).astype(np.float64)
    if target.dtype in QRANGE:
        lo, hi = QRANGE[target.dtype]
        raw = ideal / target.scale + target.zero_point
        deq = (q - target.zero_point) * target.scale
        low, high = np.rint(raw) < lo, np.rint(raw) > hi
    else:
        deq = q
        low = high = np.zeros_like(ideal, bool)
    return {"low": low, "high": high, "err": np.abs(deq - ideal)}


def audit(hist: np.ndarray, target: Target) -> Dict[str, Any]:
    """The manifest's ``quantization_audit`` entry for summed histograms."""
    e = per_value_error(target)
    channels: List[Dict[str, float]] = []
    for c in range(target.channels):
        h = hist[c].astype(np.float64)
        n = max(h.sum(), 1.0)
        used = h > 0
        channels.append(
            {
                "clip_low": float(h[e["low"][:, c]].sum() / n),
                "clip_high": float(h[e["high"][:, c]].sum() / n),
                "mae": float((h * e["err"][:, c]).sum() / n),
                "max_error": float(e["err"][used, c].max()) if used.any() else 0.0,
            }
        )
    worst = max((ch["clip_low"] + ch["clip_high"] for ch in channels), default=0.0)
    return {
        "channels": channels,
        "values": int(hist.sum()),
        "clip_warn_threshold": CLIP_WARN,
        "warning": worst > CLIP_WARN,
    }


def warnings_for(entry: Dict[str, Any]) -> List[str]:
    """Human-readable warnings for an audit entry (empty when all is well)."""
    out = []
    for c, ch in enumerate(entry.get("channels", [])):
        clipped = ch["clip_low"] + ch["clip_high"]
        if clipped > entry.get("clip_warn_threshold", CLIP_WARN):
            out.append(
                f"channel {c}: {clipped:.1%} of values clipped "
                f"({ch['clip_low']:.1%} at qmin, {ch['clip_high']:.1%} at qmax); "
                f"check the target's scale/zero point"
            )
    return out
