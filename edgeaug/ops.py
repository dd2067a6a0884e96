"""Augmentation ops: sampling is separate from applying.

Every op is a class registered by name in :data:`OPS`.  An instance holds the
recipe's parameter ranges and probability ``p``:

* ``sample(rng, size) -> dict`` draws concrete parameters from the generator
  it is given (``size`` is the current frame's ``(w, h)``);
* geometric ops return ``matrix(params, size) -> (M, new_size)``, a 3x3
  matrix in continuous pixel coordinates (pixel ``i`` covers ``[i, i+1)``);
  the pipeline multiplies them and resamples once;
* photometric ops ``apply(image, labels, params)`` on the target-size uint8
  RGB image without touching any RNG; ops that are per-pixel tone curves
  also offer ``curve(x, params)`` so consecutive ones fuse into one lookup.

Parameters are plain JSON numbers, so they are stored with each record.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Tuple

import numpy as np

Size = Tuple[float, float]
OPS: Dict[str, type] = {}


def register(cls: type) -> type:
    OPS[cls.name] = cls
    return cls


def translate(tx: float, ty: float) -> np.ndarray:
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], np.float64)


def scale(sx: float, sy: float) -> np.ndarray:
    return np.array([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], np.float64)


def about_center(m: np.ndarray, size: Size) -> np.ndarray:
    cx, cy = size[0] / 2, size[1] / 2
    return translate(cx, cy) @ m @ translate(-cx, -cy)


class Op:
    """Base op.

    ``RANGES`` maps each sampled parameter to (default range, bounds);
    ``OPTIONS`` maps each fixed setting to (type, default), ``None`` meaning
    required (e.g. a model path).  Recipes validate both.
    """

    name = ""
    geometric = False
    RANGES: Dict[str, Tuple[Tuple[float, float], Tuple[float, float]]] = {}
    OPTIONS: Dict[str, Tuple[type, Any]] = {}

    def __init__(self, p: float = 1.0, **kw: Any) -> None:
        self.p = p
        self.ranges = {k: tuple(kw.get(k, d)) for k, (d, _) in self.RANGES.items()}
        self.options = {k: kw.get(k, d) for k, (_, d) in self.OPTIONS.items()}

    def uniform(self, rng: np.random.Generator, key: str) -> float:
        lo, hi = self.ranges[key]
        return float(lo + (hi - lo) * rng.random())

    def sample(self, rng: np.random.Generator, size: Size) -> Dict[str, Any]:
        return {k: self.uniform(rng, k) for k in self.RANGES}

    def apply(self, image: np.ndarray, labels: Any, params: Dict[str, Any]):
        raise NotImplementedError


# --- geometric -------------------------------------------------------------

@register
class HFlip(Op):
    name, geometric = "hflip", True

    def matrix(self, params, size):
        return translate(size[0], 0) @ scale(-1, 1), size


@register
class VFlip(Op):
    name, geometric = "vflip", True

    def matrix(self, params, size):
        return translate(0, size[1]) @ scale(1, -1), size


@register
class Rotate(Op):
    """Rotate about the centre by ``degrees`` (counter-clockwise positive)."""

    name, geometric = "rotate", True
    RANGES = {"degrees": ((-15.0, 15.0), (-180.0, 180.0))}

    def matrix(self, params, size):
        a = math.radians(params["degrees"])
        c, s = math.cos(a), math.sin(a)
        r = np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]], np.float64)
        return about_center(r, size), size


@register
class Affine(Op):
    """Scale, translate (fraction of the frame) and shear (degrees) about the centre."""

    name, geometric = "affine", True
    RANGES = {"scale": ((0.9, 1.1), (0.05, 20.0)),
              "translate": ((-0.1, 0.1), (-1.0, 1.0)),
              "shear": ((0.0, 0.0), (-60.0, 60.0))}

    def sample(self, rng, size):
        return {"scale": self.uniform(rng, "scale"), "tx": self.uniform(rng, "translate"),
                "ty": self.uniform(rng, "translate"), "shear": self.uniform(rng, "shear")}

    def matrix(self, params, size):
        sh = np.eye(3)
        sh[0, 1] = math.tan(math.radians(params["shear"]))
        m = about_center(scale(params["scale"], params["scale"]) @ sh, size)
        return translate(params["tx"] * size[0], params["ty"] * size[1]) @ m, size


@register
class RandomResizedCrop(Op):
    """Crop a random area fraction and aspect ratio (the final resize fills the target)."""

    name, geometric = "random_resized_crop", True
    RANGES = {"scale": ((0.35, 1.0), (0.01, 1.0)),
              "ratio": ((0.75, 1.3333333333333333), (0.1, 10.0))}

    def sample(self, rng, size):
        w, h = size
        lr = (math.log(self.ranges["ratio"][0]), math.log(self.ranges["ratio"][1]))
        for _ in range(10):  # torchvision's rejection sampling, bounded
            area = w * h * self.uniform(rng, "scale")
            ratio = math.exp(lr[0] + (lr[1] - lr[0]) * rng.random())
            cw, ch = math.sqrt(area * ratio), math.sqrt(area / ratio)
            if cw <= w and ch <= h:
                return {"x": float(rng.random() * (w - cw)), "y": float(rng.random() * (h - ch)),
                        "w": cw, "h": ch}
        return {"x": 0.0, "y": 0.0, "w": float(w), "h": float(h)}

    def matrix(self, params, size):
        return translate(-params["x"], -params["y"]), (params["w"], params["h"])


# --- photometric -----------------------------------------------------------

class ToneOp(Op):
    """A per-pixel tone curve on [0, 255]; fusable into one lookup table."""

    def curve(self, x: np.ndarray, params) -> np.ndarray:
        raise NotImplementedError

    def apply(self, image, labels, params):
        lut = np.clip(np.rint(self.curve(np.arange(256, dtype=np.float64), params)), 0, 255)
        return lut.astype(np.uint8)[image], labels


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
    RANGES = {"hue": ((-10.0, 10.0), (-180.0, 180.0)),
              "saturation": ((0.8, 1.2), (0.0, 10.0))}

    def apply(self, image, labels, params):
        import cv2
        if image.shape[2] != 3:
            return image, labels
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL)  # hue on 0..255
        x = np.arange(256, dtype=np.float64)
        hue = np.mod(np.rint(x + params["hue"] * 256.0 / 360.0), 256).astype(np.uint8)
        sat = np.clip(np.rint(x * params["saturation"]), 0, 255).astype(np.uint8)
        hsv[..., 0], hsv[..., 1] = hue[hsv[..., 0]], sat[hsv[..., 1]]
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL), labels


@register
class GaussianBlur(Op):
    name = "gaussian_blur"
    RANGES = {"sigma": ((0.1, 1.5), (0.0, 20.0))}

    def apply(self, image, labels, params):
        import cv2
        s = params["sigma"]
        if s <= 0:
            return image, labels
        k = 2 * math.ceil(3 * s) + 1
        out = cv2.GaussianBlur(image, (k, k), s, s, borderType=cv2.BORDER_REFLECT_101)
        return out.reshape(image.shape), labels


@register
class GaussianNoise(Op):
    """Add N(0, sigma * 255) noise; the noise field comes from a stored seed."""

    name = "gaussian_noise"
    RANGES = {"sigma": ((0.0, 0.04), (0.0, 1.0))}

    def sample(self, rng, size):
        return {"sigma": self.uniform(rng, "sigma"), "seed": int(rng.integers(0, 2**63))}

    def apply(self, image, labels, params):
        if params["sigma"] <= 0:
            return image, labels
        noise = np.random.Generator(np.random.PCG64(params["seed"])).standard_normal(image.shape)
        out = image + noise * (255.0 * params["sigma"])
        return np.clip(np.rint(out), 0, 255).astype(np.uint8), labels


@register
class Cutout(Op):
    """Zero ``count`` rectangles whose sides are a fraction ``size`` of the image."""

    name = "cutout"
    RANGES = {"count": ((1.0, 3.0), (0.0, 64.0)), "size": ((0.1, 0.25), (0.0, 1.0))}

    def sample(self, rng, size):
        n = int(rng.integers(int(self.ranges["count"][0]), int(self.ranges["count"][1]) + 1))
        holes = []
        for _ in range(n):
            fw, fh = self.uniform(rng, "size"), self.uniform(rng, "size")
            holes.append([float(rng.random()) * (1 - fw), float(rng.random()) * (1 - fh), fw, fh])
        return {"holes": holes}

    def apply(self, image, labels, params):
        out = image.copy()
        h, w = image.shape[:2]
        for fx, fy, fw, fh in params["holes"]:
            x0, y0 = int(round(fx * w)), int(round(fy * h))
            out[y0:y0 + int(round(fh * h)), x0:x0 + int(round(fw * w))] = 0
        return out, labels
