"""Blur and sharpness ops on the target-size uint8 RGB image (sizes in output pixels).

No op touches an RNG in ``apply``; labels are untouched.  Registered in :data:`edgeaug.ops.OPS`.
"""

from __future__ import annotations

import math

import numpy as np

from edgeaug.ops.base import Op, register

REFLECT = 4  # cv2.BORDER_REFLECT_101, without importing cv2 at module load
INTERPOLATIONS = ("nearest", "linear", "area", "cubic")


class OddKernelOp(Op):
    """An op with an odd kernel size ``ksize`` drawn uniformly from the odd integers of its range.

    Subclasses give ``filter(image, k)``; ``ksize`` 1 is the identity.
    """

    @classmethod
    def check(cls, ranges, options):
        lo, hi = ranges["ksize"]
        if not _odds(lo, hi):
            return "ksize", f"[{lo}, {hi}] contains no odd integer"
        return super().check(ranges, options)

    def sample(self, rng, size):
        odds = _odds(*self.ranges["ksize"])
        return {"ksize": odds[int(rng.integers(len(odds)))]}

    def apply(self, image, labels, params):
        k = int(params["ksize"])
        return (image if k <= 1 else self.filter(image, k).reshape(image.shape)), labels


def _odds(lo: float, hi: float):
    return [k for k in range(math.ceil(lo), math.floor(hi) + 1) if k % 2]


@register
class MedianBlur(OddKernelOp):
    """Median of each ``ksize`` x ``ksize`` window (odd, default [3, 7]); 1 is the identity."""

    name = "median_blur"
    RANGES = {"ksize": ((3.0, 7.0), (1.0, 31.0))}

    def filter(self, image, k):
        import cv2

        return cv2.medianBlur(image, k)


@register
class BoxBlur(OddKernelOp):
    """Mean of each ``ksize`` x ``ksize`` window (odd, default [3, 7]); 1 is the identity."""

    name = "box_blur"
    RANGES = {"ksize": ((3.0, 7.0), (1.0, 63.0))}

    def filter(self, image, k):
        import cv2

        return cv2.blur(image, (k, k), borderType=REFLECT)


@register
class Defocus(Op):
    """An out-of-focus lens: a disc kernel of ``radius`` pixels, softened by a Gaussian of ``alias_blur``.

    As Albumentations' Defocus.  ``radius`` default [1, 3] (an integer; 0 is the
    identity), ``alias_blur`` default [0.1, 0.5] (sigma of the kernel's softening).
    """

    name = "defocus"
    RANGES = {"radius": ((1.0, 3.0), (0.0, 32.0)), "alias_blur": ((0.1, 0.5), (0.0, 10.0))}
    INTEGERS = ("radius",)

    def apply(self, image, labels, params):
        import cv2

        r = int(params["radius"])
        if r <= 0:
            return image, labels
        k = np.zeros((2 * r + 1, 2 * r + 1), np.float32)
        cv2.circle(k, (r, r), r, 1.0, -1)
        s = params["alias_blur"]
        if s > 0:
            k = cv2.GaussianBlur(k, (2 * math.ceil(3 * s) + 1,) * 2, s)
        return cv2.filter2D(image, -1, k / k.sum(), borderType=REFLECT).reshape(image.shape), labels


@register
class ZoomBlur(Op):
    """The mean of the image zoomed about its centre by 1, 1 + step, ... up to ``max_factor``.

    As Albumentations' ZoomBlur: ``max_factor`` default [1, 1.31] (1 is the
    identity), ``step_factor`` default [0.01, 0.03].
    """

    name = "zoom_blur"
    RANGES = {"max_factor": ((1.0, 1.31), (1.0, 3.0)), "step_factor": ((0.01, 0.03), (0.001, 1.0))}

    def apply(self, image, labels, params):
        import cv2

        zooms = np.arange(1.0, params["max_factor"], params["step_factor"])[1:]
        if not len(zooms):
            return image, labels
        h, w = image.shape[:2]
        acc = image.astype(np.float32)
        for z in zooms:
            # Enlarge, keep the centre: 4x faster than the equivalent warpAffine.  The size rounds up to
            # whole pixels and the crop to whole offsets (<= half a pixel off centre), as Albumentations.
            zw, zh = math.ceil(w * z), math.ceil(h * z)
            big = cv2.resize(image, (zw, zh), interpolation=cv2.INTER_LINEAR)
            top, left = (zh - h) // 2, (zw - w) // 2
            cv2.accumulate(big[top : top + h, left : left + w], acc)
        return np.rint(acc * np.float32(1 / (len(zooms) + 1))).astype(np.uint8).reshape(image.shape), labels


@register
class Sharpen(Op):
    """A 3x3 sharpening kernel blended with the identity by ``alpha`` (as Albumentations' Sharpen).

    Kernel ``(1 - alpha) * I + alpha * [[-1,-1,-1],[-1,8+lightness,-1],[-1,-1,-1]]``;
    ``alpha`` default [0.2, 0.5] (0 is the identity), ``lightness`` default [0.5, 1.0].
    """

    name = "sharpen"
    RANGES = {"alpha": ((0.2, 0.5), (0.0, 1.0)), "lightness": ((0.5, 1.0), (0.0, 10.0))}

    def apply(self, image, labels, params):
        import cv2

        a = params["alpha"]
        if a <= 0:
            return image, labels
        effect = -np.ones((3, 3), np.float32)
        effect[1, 1] = 8 + params["lightness"]
        ident = np.zeros((3, 3), np.float32)
        ident[1, 1] = 1
        k = (1 - a) * ident + a * effect
        return cv2.filter2D(image, -1, k, borderType=REFLECT).reshape(image.shape), labels


@register
class UnsharpMask(Op):
    """Add ``alpha`` times the detail (image minus its Gaussian blur of ``sigma``) where it exceeds ``threshold``.

    As Albumentations' UnsharpMask (a soft threshold mask, blurred like the
    image): ``sigma`` default [0.5, 2.0], ``alpha`` default [0.2, 0.5] (0 is the
    identity), ``threshold`` default [10, 10] grey levels.
    """

    name = "unsharp_mask"
    RANGES = {
        "sigma": ((0.5, 2.0), (0.1, 20.0)),
        "alpha": ((0.2, 0.5), (0.0, 10.0)),
        "threshold": ((10.0, 10.0), (0.0, 255.0)),
    }

    def apply(self, image, labels, params):
        import cv2

        a, s = params["alpha"], params["sigma"]
        if a <= 0:
            return image, labels
        k = (2 * math.ceil(3 * s) + 1,) * 2
        img = image.astype(np.float32)
        blur = cv2.GaussianBlur(img, k, s, borderType=REFLECT).reshape(img.shape)
        detail = img - blur
        mask = (np.abs(detail) > np.float32(params["threshold"])).astype(np.float32)
        soft = cv2.GaussianBlur(mask, k, s, borderType=REFLECT).reshape(img.shape)
        sharp = np.clip(img + np.float32(a) * detail, 0, 255)
        return np.rint(img + soft * (sharp - img)).astype(np.uint8), labels


@register
class Downscale(Op):
    """Shrink by ``scale`` (default [0.25, 0.5]; 1 is the identity) and enlarge back: low-resolution look.

    ``down`` (default "area") and ``up`` (default "linear") name the
    interpolations: nearest, linear, area or cubic.
    """

    name = "downscale"
    RANGES = {"scale": ((0.25, 0.5), (0.01, 1.0))}
    OPTIONS = {"down": (str, "area"), "up": (str, "linear")}

    @classmethod
    def check(cls, ranges, options):
        for key in ("down", "up"):
            if options[key] not in INTERPOLATIONS:
                return key, f"{options[key]!r} is not one of {', '.join(INTERPOLATIONS)}"
        return super().check(ranges, options)

    def apply(self, image, labels, params):
        import cv2

        if params["scale"] >= 1:
            return image, labels
        flag = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA}
        flag["cubic"] = cv2.INTER_CUBIC
        h, w = image.shape[:2]
        small = (max(1, round(w * params["scale"])), max(1, round(h * params["scale"])))
        low = cv2.resize(image, small, interpolation=flag[self.options["down"]])
        return cv2.resize(low, (w, h), interpolation=flag[self.options["up"]]).reshape(image.shape), labels
