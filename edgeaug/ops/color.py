"""Colour ops on the target-size uint8 RGB image; labels are untouched.

``posterize``, ``solarize``, ``invert`` and ``tone_curve`` are per-pixel tone
curves (:class:`~edgeaug.ops.photometric.ToneOp`) that fuse with neighbouring
tone ops into one lookup.  The others are per-channel lookups or channel
permutations.  No op touches an RNG in ``apply``.  Registered in :data:`edgeaug.ops.OPS`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from edgeaug.ops.base import Op, register
from edgeaug.ops.photometric import ToneOp


def channel_lut(image: np.ndarray, tables) -> np.ndarray:
    """One 256-entry table per channel, applied in one ``cv2.LUT`` pass."""
    import cv2

    t = np.stack([np.clip(np.rint(t), 0, 255) for t in tables], -1).astype(np.uint8)
    return cv2.LUT(image, t.reshape(1, 256, image.shape[2])).reshape(image.shape)


@register
class ChannelShuffle(Op):
    """Permute the RGB channels; ``order`` (recorded) lists the source channel of each output channel."""

    name = "channel_shuffle"

    def sample(self, rng, size):
        return {"order": [int(i) for i in rng.permutation(3)]}

    def apply(self, image, labels, params):
        import cv2

        order = [int(i) for i in params["order"]]
        if image.shape[2] != 3 or order == [0, 1, 2]:
            return image, labels
        out = np.empty_like(image)
        cv2.mixChannels([image], [out], [order[0], 0, order[1], 1, order[2], 2])  # 5x faster than fancy indexing
        return out, labels


@register
class RGBShift(Op):
    """Add ``r_shift``, ``g_shift``, ``b_shift`` grey levels to each channel (default [-20, 20] each)."""

    name = "rgb_shift"
    RANGES = {k: ((-20.0, 20.0), (-255.0, 255.0)) for k in ("r_shift", "g_shift", "b_shift")}

    def apply(self, image, labels, params):
        shifts = [params["r_shift"], params["g_shift"], params["b_shift"]]
        if image.shape[2] != 3 or not any(shifts):
            return image, labels
        x = np.arange(256, dtype=np.float64)
        return channel_lut(image, [x + s for s in shifts]), labels


@register
class WhiteBalance(Op):
    """Planckian jitter: light the scene with a black body at ``temperature`` kelvin (default [3000, 9000]).

    The camera is assumed white-balanced for 6500 K: each channel is multiplied,
    in linear light, by the black body's RGB at ``temperature`` divided by its RGB
    at 6500 K, green kept at 1 (so 6500 is the identity, lower is warmer, higher
    bluer).  See :func:`blackbody_rgb` for where the coefficients come from.
    """

    name = "white_balance"
    RANGES = {"temperature": ((3000.0, 9000.0), (1500.0, 25000.0))}

    def apply(self, image, labels, params):
        gains = planckian_gains(round(float(params["temperature"]), 3))
        if image.shape[2] != 3 or gains == (1.0, 1.0, 1.0):
            return image, labels
        lin = (np.arange(256) / 255.0) ** 2.2
        return channel_lut(image, [255 * np.clip(lin * g, 0, 1) ** (1 / 2.2) for g in gains]), labels


@lru_cache(maxsize=4096)
def planckian_gains(kelvin: float, reference: float = 6500.0):
    """Channel gains (r, g, b), green 1, of a black body at ``kelvin`` relative to ``reference``."""
    if kelvin == reference:
        return (1.0, 1.0, 1.0)
    g = blackbody_rgb(kelvin) / blackbody_rgb(reference)
    return tuple(float(v) for v in g / g[1])


def blackbody_rgb(kelvin: float) -> np.ndarray:
    """Linear sRGB of a black body at ``kelvin``, computed, not tabulated.

    Planck's law integrated over 380-780 nm (1 nm steps) against the CIE 1931 2-degree
    colour matching functions in the multi-lobe analytic fit of Wyman, Sloan and
    Shirley, "Simple Analytic Approximations to the CIE XYZ Color Matching
    Functions", JCGT 2(2), 2013; XYZ to linear sRGB with the IEC 61966-2-1 matrix.
    Out-of-gamut (negative) components, which only very warm light reaches, clip to a tiny positive.
    """
    lam = np.arange(380.0, 781.0)
    m = lam * 1e-9
    planck = 1.0 / (m**5 * (np.exp(1.4387769e-2 / (m * kelvin)) - 1.0))
    xyz = _CMF @ planck
    rgb = _XYZ_TO_SRGB @ (xyz / xyz[1])
    return np.maximum(rgb, 1e-4)


def _lobe(lam: np.ndarray, mu: float, s1: float, s2: float) -> np.ndarray:
    return np.exp(-0.5 * ((lam - mu) / np.where(lam < mu, s1, s2)) ** 2)


def _cmf() -> np.ndarray:
    lam = np.arange(380.0, 781.0)
    x = 1.056 * _lobe(lam, 599.8, 37.9, 31.0) + 0.362 * _lobe(lam, 442.0, 16.0, 26.7)
    x -= 0.065 * _lobe(lam, 501.1, 20.4, 26.2)
    y = 0.821 * _lobe(lam, 568.8, 46.9, 40.5) + 0.286 * _lobe(lam, 530.9, 16.3, 31.1)
    z = 1.217 * _lobe(lam, 437.0, 11.8, 36.0) + 0.681 * _lobe(lam, 459.0, 26.0, 13.8)
    return np.stack([x, y, z])


_CMF = _cmf()
_XYZ_TO_SRGB = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])


@register
class Posterize(ToneOp):
    """Keep the top ``bits`` bits of each value (an integer, default [4, 8]; 8 is the identity)."""

    name = "posterize"
    RANGES = {"bits": ((4.0, 8.0), (1.0, 8.0))}
    INTEGERS = ("bits",)

    def curve(self, x, params):
        step = 2.0 ** (8 - int(params["bits"]))
        return np.floor(np.clip(np.rint(x), 0, 255) / step) * step

    def apply(self, image, labels, params):
        import cv2

        keep = (0xFF << (8 - int(params["bits"]))) & 0xFF  # the top bits: the curve, as one AND
        return cv2.bitwise_and(image, np.full_like(image, keep)), labels


@register
class Solarize(ToneOp):
    """Invert values at or above ``threshold`` grey levels (default [128, 255]; 256 is the identity)."""

    name = "solarize"
    RANGES = {"threshold": ((128.0, 255.0), (0.0, 256.0))}

    def curve(self, x, params):
        return np.where(np.rint(x) >= params["threshold"], 255.0 - x, x)

    def apply(self, image, labels, params):
        import cv2

        k = min(256, max(0, math.ceil(params["threshold"])))  # the first integer level that inverts
        table = _IDENTITY.copy()
        table[k:] = 255 - table[k:]
        return cv2.LUT(image, table).reshape(image.shape), labels


_IDENTITY = np.arange(256, dtype=np.uint8)


@register
class Invert(ToneOp):
    """Negative: ``255 - x``."""

    name = "invert"

    def curve(self, x, params):
        return 255.0 - x

    def apply(self, image, labels, params):
        import cv2

        return cv2.bitwise_not(image).reshape(image.shape), labels


@register
class ToneCurve(ToneOp):
    """A smooth random S-curve: a cubic Bezier through (0, 0) and (1, 1).

    Its inner control points sit at ``1/3 + scale * n1`` and ``2/3 + scale *
    n2`` (n normal, recorded as ``low`` and ``high``), so ``scale`` 0 is the
    identity.  ``scale`` default [0.1, 0.1].  (Albumentations' RandomToneCurve
    puts them at 1/4 and 3/4, which is not the identity at scale 0.)
    """

    name = "tone_curve"
    RANGES = {"scale": ((0.1, 0.1), (0.0, 1.0))}

    def sample(self, rng, size):
        s = self.uniform(rng, "scale")
        n1, n2 = float(rng.standard_normal()), float(rng.standard_normal())
        return {"low": min(max(1 / 3 + s * n1, 0.0), 1.0), "high": min(max(2 / 3 + s * n2, 0.0), 1.0)}

    def curve(self, x, params):
        t = np.clip(x, 0, 255) / 255.0
        lo, hi = params["low"], params["high"]
        return 255.0 * (3 * (1 - t) ** 2 * t * lo + 3 * (1 - t) * t**2 * hi + t**3)


@register
class AutoContrast(Op):
    """Stretch each channel so its ``cutoff`` percentile goes to 0 and its ``100 - cutoff`` to 255.

    As PIL's ``ImageOps.autocontrast`` (per channel); ``cutoff`` default [0, 0]
    percent.  A flat channel is left alone.
    """

    name = "autocontrast"
    RANGES = {"cutoff": ((0.0, 0.0), (0.0, 49.0))}

    def apply(self, image, labels, params):
        import cv2

        cut, tables = params["cutoff"], []
        for c in range(image.shape[2]):
            if cut <= 0:  # the plain stretch needs only the extremes
                lo, hi = (int(v) for v in cv2.minMaxLoc(image[..., c])[:2])
            else:
                cdf = np.cumsum(cv2.calcHist([image], [c], None, [256], [0, 256]).ravel())
                n = cdf[-1] * cut / 100.0
                lo, hi = int(np.searchsorted(cdf, n, side="right")), int(np.searchsorted(cdf, cdf[-1] - n, side="left"))
            tables.append(_stretch(lo, hi) if hi > lo else _IDENTITY)
        if all(t is _IDENTITY for t in tables):
            return image, labels
        return cv2.LUT(image, np.stack(tables, -1).reshape(1, 256, -1)).reshape(image.shape), labels


def _stretch(lo: int, hi: int) -> np.ndarray:
    """The uint8 table mapping ``lo`` to 0 and ``hi`` to 255, rounded and clipped."""
    return np.clip(np.rint((np.arange(256) - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)
