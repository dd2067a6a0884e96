"""A plain RGB uint8 NHWC target of any size for the op and augmenter tests (x / 255, no mean or std)."""

from __future__ import annotations

from edgeaug.config.targets import Device, Target


def rgb_target(w: int, h: int) -> Target:
    """A ``w`` x ``h`` RGB uint8 target on a 64-bit device of any architecture."""
    return Target(
        "t", Device("test", "any", 64), "input", h, w, 3, "NHWC", "RGB", "uint8", (0.0,) * 3, (1.0,) * 3, 1 / 255
    )
