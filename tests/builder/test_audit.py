"""Quantization audit: clipping fractions and errors from pixel histograms."""

import numpy as np
import pytest

from edgeaug.builder.audit import audit, histogram, per_value_error, warnings_for
from edgeaug.builder.pipeline import build
from edgeaug.config.targets import parse_target
from edgeaug.device.loader import Pack


def _target(dtype="int8", scale=1 / 255, zp=-128, channels=1):
    return parse_target(
        {
            "device": {"name": "d", "arch": "aarch64", "word_size": 64},
            "input": {
                "height": 4,
                "width": 4,
                "channels": channels,
                "layout": "NHWC",
                "color": "GRAY" if channels == 1 else "RGB",
                "dtype": dtype,
                "scale": scale,
                "zero_point": zp,
            },
        },
        "t",
    )


def test_lossless_target_has_no_clipping_and_tiny_error():
    t = _target()
    hist = np.ones((1, 256), np.int64)
    a = audit(hist, t)
    ch = a["channels"][0]
    assert ch["clip_low"] == ch["clip_high"] == 0.0
    assert ch["max_error"] < 1e-9 and not a["warning"]
    assert warnings_for(a) == []


def test_clipping_fraction_matches_the_histogram():
    t = _target(scale=2 / 255, zp=0)  # values above pixel ~ 254 clip at 127... count exactly
    e = per_value_error(t)
    hist = np.zeros((1, 256), np.int64)
    hist[0, 10] = 3  # in range
    hist[0, 255] = 1  # raw = 127.5 -> rint 128 > 127: clipped high
    a = audit(hist, t)
    assert bool(e["high"][255, 0]) and not e["high"][10, 0]
    assert a["channels"][0]["clip_high"] == pytest.approx(0.25)
    assert a["warning"] and "25.0% of values clipped" in warnings_for(a)[0]


def test_histogram_counts_in_target_colour():
    img = np.zeros((4, 4, 3), np.uint8)
    img[..., 0] = 255
    h = histogram(img, _target(channels=3, dtype="uint8", scale=1 / 255, zp=0))
    assert h.shape == (3, 256) and h[0, 255] == 16 and h[1, 0] == 16


def test_build_stores_the_audit(shapes_dir, tmp_path):
    out = tmp_path / "c.lmdb"
    build(shapes_dir, out, "coral-edgetpu", variants=1, workers=1)
    with Pack(str(out)) as p:
        a = p.manifest["quantization_audit"]
    assert len(a["channels"]) == 3 and a["values"] == 24 * 2 * 224 * 224 * 3  # every value of every channel
    # Coral maps pixel 255 to raw 256 -> clipped high; nothing clips low.
    assert all(ch["clip_low"] == 0 for ch in a["channels"])
    assert any(ch["clip_high"] > 0 for ch in a["channels"])
    assert all(0 < ch["mae"] < 1 / 128 for ch in a["channels"])
