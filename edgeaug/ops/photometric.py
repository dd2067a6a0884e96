"""Photometric ops: applied to the target-size uint8 RGB image after the one warp.

They never touch an RNG in ``apply``: everything random (a noise seed, a JPEG
quality, cutout holes) is drawn in ``sample`` and stored with the record.
Pixel-sized parameters (a blur's sigma, a motion blur's length) are in
output pixels.  :class:`ToneOp` subclasses are per-pixel curves that the
pipeline fuses into one lookup table.  Registered in :data:`edgeaug.ops.OPS`.
"""

from __future__ import annotations

import math

import numpy as np

from edgeaug.ops.base import MagnitudeOp, Op, register


class ToneOp(Op):
    """A per-pixel tone curve on [0, 255]; fusable into one lookup table."""

    def curve(self, x: np.ndarray, params) -> np.ndarray:
        raise NotImplementedError

    def apply(self, image, labels, params):
        import cv2

        lut = np.clip(np.rint(self.curve(np.arange(256, dtype=np.float64), params)), 0, 255)
        return cv2.LUT(image, lut.astype(np.uint8)).reshape(image.shape), labels


@register
class Brightness(ToneOp):
    """Add ``delta`` (a fraction of full scale)."""

    name = "brightness"
    RANGES = {"delta": ((-0.2, 0.2), (-1.0, 1.0))}

    def curve(self, x, params):
        return x + 255.0 * params["delta"]


@register
class Contrast(ToneOp):
    """Scale by ``factor`` about mid-grey."""

    name = "contrast"
    RANGES = {"factor": ((0.8, 1.2), (0.0, 10.0))}

    def curve(self, x, params):
        return (x - 127.5) * params["factor"] + 127.5


@register
class Gamma(ToneOp):
    name = "gamma"
    RANGES = {"gamma": ((0.8, 1.25), (0.05, 20.0))}

    def curve(self, x, params):
        return 255.0 * (np.clip(x, 0, 255) / 255.0) ** params["gamma"]


@register
class HueSaturation(Op):
    """Shift hue by ``hue`` degrees and scale saturation by ``saturation``."""

    name = "hue_saturation"
    RANGES = {"hue": ((-10.0, 10.0), (-180.0, 180.0)), "saturation": ((0.8, 1.2), (0.0, 10.0))}

    def apply(self, image, labels, params):
        import cv2

        if image.shape[2] != 3 or (params["hue"] == 0 and params["saturation"] == 1):
            return image, labels  # the HSV round trip alone is lossy
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL)  # hue on 0..255
        x = np.arange(256, dtype=np.float64)
        hue = np.mod(np.rint(x + params["hue"] * 256.0 / 360.0), 256)
        sat = np.clip(np.rint(x * params["saturation"]), 0, 255)
        table = np.stack([hue, sat, x], -1).astype(np.uint8).reshape(1, 256, 3)  # one pass, V kept
        return cv2.cvtColor(cv2.LUT(hsv, table), cv2.COLOR_HSV2RGB_FULL), labels


@register
class Grayscale(Op):
    """Replace colour by luma (ITU-R 601 weights), kept as three equal channels."""

    name = "grayscale"

    def apply(self, image, labels, params):
        import cv2

        if image.shape[2] != 3:
            return image, labels
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        return cv2.merge([gray, gray, gray]), labels


def _on_luma(image: np.ndarray, fn) -> np.ndarray:
    """Run ``fn`` on the luma channel (YCrCb) only, so colours keep their hue."""
    import cv2

    if image.shape[2] != 3:
        return fn(np.ascontiguousarray(image[..., 0]))[..., None]
    y, cr, cb = cv2.split(cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb))
    return cv2.cvtColor(cv2.merge([fn(y), cr, cb]), cv2.COLOR_YCrCb2RGB)


@register
class Equalize(Op):
    """Global histogram equalization of the luma channel."""

    name = "equalize"

    def apply(self, image, labels, params):
        import cv2

        return _on_luma(image, cv2.equalizeHist), labels


@register
class CLAHE(Op):
    """Contrast-limited adaptive equalization of luma on a ``tile_grid`` x ``tile_grid`` grid."""

    name = "clahe"
    RANGES = {"clip_limit": ((1.0, 4.0), (0.01, 100.0))}
    OPTIONS = {"tile_grid": (int, 8)}
    BOUNDS = {"tile_grid": (1, 64)}

    def apply(self, image, labels, params):
        import cv2

        g = int(self.options["tile_grid"])
        clahe = cv2.createCLAHE(clipLimit=params["clip_limit"], tileGridSize=(g, g))
        return _on_luma(image, clahe.apply), labels


@register
class GaussianBlur(MagnitudeOp):
    name, KEY = "gaussian_blur", "sigma"
    RANGES = {"sigma": ((0.1, 1.5), (0.0, 20.0))}

    def effect(self, image, s, params):
        import cv2

        k = 2 * math.ceil(3 * s) + 1
        return cv2.GaussianBlur(image, (k, k), s, s, borderType=cv2.BORDER_REFLECT_101).reshape(image.shape)


@register
class MotionBlur(Op):
    """Average along a line covering ``length`` output pixels at ``angle`` degrees.

    ``length`` 9 at angle 0 spans 9 pixels of one row; 1 or less is the identity.
    """

    name = "motion_blur"
    RANGES = {"length": ((3.0, 9.0), (0.0, 64.0)), "angle": ((0.0, 360.0), (-360.0, 360.0))}

    def apply(self, image, labels, params):
        import cv2

        if params["length"] <= 1:
            return image, labels
        k = motion_kernel(params["length"], params["angle"])
        out = cv2.filter2D(image, -1, k, borderType=cv2.BORDER_REFLECT_101)
        return out.reshape(image.shape), labels


def motion_kernel(length: float, angle: float) -> np.ndarray:
    """A normalized line kernel, splatted bilinearly so any length and angle work.

    The line joins pixel centres ``(length - 1) / 2`` either side of the
    middle, so the kernel is as small as the line (filter2D's cost grows fast).
    """
    r, a = max(0.0, (length - 1) / 2.0), math.radians(angle)
    c = math.ceil(r)
    t = np.linspace(-r, r, max(2, math.ceil(4 * length) + 1))
    xs, ys = c + t * math.cos(a), c - t * math.sin(a)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    k = np.zeros((2 * c + 2, 2 * c + 2), np.float32)  # one spare row/column for zero weights
    for dx, dy, wt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(k, (y0 + dy, x0 + dx), wt)
    k = k[: 2 * c + 1, : 2 * c + 1]  # the spare only ever received rounding dust
    return k / k.sum()


@register
class GaussianNoise(Op):
    """Add N(0, sigma * 255) noise per pixel and channel; the field comes from a stored seed.

    Each value's noise is one of 256 normal quantiles, picked by a byte from
    the record's own ``PCG64(seed)`` stream (never a global generator): a
    normal distribution truncated at +-2.66 sigma, and 3x faster than drawing
    float normals.  ``clip(image + noise)`` is then two saturating table
    lookups, exactly.
    """

    name = "gaussian_noise"
    RANGES = {"sigma": ((0.0, 0.04), (0.0, 1.0))}

    def sample(self, rng, size):
        return {"sigma": self.uniform(rng, "sigma"), "seed": int(rng.integers(0, 2**31))}

    def apply(self, image, labels, params):
        import cv2

        if params["sigma"] <= 0:
            return image, labels
        rng = np.random.Generator(np.random.PCG64(int(params["seed"])))
        pick = np.frombuffer(rng.bytes(image.size), np.uint8).reshape(image.shape)
        step = np.rint(_NORMAL_QUANTILES * (255.0 * params["sigma"]))
        up = np.clip(step, 0, 255).astype(np.uint8)
        down = np.clip(-step, 0, 255).astype(np.uint8)
        # Only one of up/down is non-zero per value, so this is clip(image + noise, 0, 255).
        out = cv2.subtract(cv2.add(image, cv2.LUT(pick, up)), cv2.LUT(pick, down))
        return out.reshape(image.shape), labels


def _normal_quantiles() -> np.ndarray:
    from statistics import NormalDist

    return np.array([NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)])


_NORMAL_QUANTILES = _normal_quantiles()


@register
class JpegQuality(Op):
    """Round-trip through a JPEG encoder at ``quality`` (an integer, 1..100)."""

    name = "jpeg"
    RANGES = {"quality": ((50.0, 95.0), (1.0, 100.0))}
    INTEGERS = ("quality",)

    def apply(self, image, labels, params):
        import cv2

        color = image.shape[2] == 3
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if color else image  # JPEG wants BGR
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(params["quality"])])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE)
        return (cv2.cvtColor(out, cv2.COLOR_BGR2RGB) if color else out.reshape(image.shape)), labels


@register
class Cutout(Op):
    """Fill ``count`` rectangles, sides a fraction ``size`` of the image, with grey level ``fill``.

    Coarse dropout: several holes per image, one fill value per record.
    """

    name = "cutout"
    RANGES = {"count": ((1.0, 3.0), (0.0, 64.0)), "size": ((0.1, 0.25), (0.0, 1.0)), "fill": ((0.0, 0.0), (0.0, 255.0))}
    INTEGERS = ("count",)

    def sample(self, rng, size):
        n = self.integer(rng, "count")
        holes = []
        for _ in range(n):
            fw, fh = self.uniform(rng, "size"), self.uniform(rng, "size")
            holes.append([float(rng.random()) * (1 - fw), float(rng.random()) * (1 - fh), fw, fh])
        return {"holes": holes, "fill": int(round(self.uniform(rng, "fill")))}

    def apply(self, image, labels, params):
        if not params["holes"]:
            return image, labels
        out = image.copy()
        h, w = image.shape[:2]
        for fx, fy, fw, fh in params["holes"]:
            x0, y0 = int(round(fx * w)), int(round(fy * h))
            out[y0 : y0 + int(round(fh * h)), x0 : x0 + int(round(fw * w))] = params.get("fill", 0)
        return out, labels
