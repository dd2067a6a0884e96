"""Augmentation ops: sampling is separate from applying.

Every op is a class registered by name in :data:`OPS`.  An instance holds the
recipe's parameter ranges and probability ``p``:

* ``sample(rng, size) -> dict`` draws concrete parameters from the generator
  it is given (``size`` is the current frame's ``(w, h)``); every random
  choice happens here, so the stored parameters fully determine the output;
* geometric ops return ``matrix(params, size) -> (M, new_size)``, a 3x3
  matrix in continuous pixel coordinates (pixel ``i`` covers ``[i, i+1)``);
  the pipeline multiplies them and resamples once;
* photometric ops (:mod:`edgeaug.photometric`) ``apply(image, labels,
  params)`` on the target-size uint8 RGB image without touching any RNG;
  ops that are per-pixel tone curves also offer ``curve(x, params)`` so
  consecutive ones fuse into one lookup;
* composite ops (``one_of``, ``some_of``) hold child ops and ``choose`` which
  of them fire; :class:`edgeaug.augment.Augmenter` walks them.

Parameters are plain JSON numbers and lists, so they are stored with each record.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

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
    required (e.g. a model path).  ``INTEGERS`` names ranges sampled as
    integers.  Recipes validate all of them and call :meth:`check`.
    """

    name = ""
    geometric = False
    composite = False
    RANGES: Dict[str, Tuple[Tuple[float, float], Tuple[float, float]]] = {}
    OPTIONS: Dict[str, Tuple[type, Any]] = {}
    INTEGERS: Tuple[str, ...] = ()

    def __init__(self, p: float = 1.0, **kw: Any) -> None:
        self.p = p
        self.ranges = {k: tuple(kw.get(k, d)) for k, (d, _) in self.RANGES.items()}
        self.options = {k: kw.get(k, d) for k, (_, d) in self.OPTIONS.items()}

    @classmethod
    def check(cls, ranges: Dict[str, Tuple[float, float]],
              options: Dict[str, Any]) -> Optional[Tuple[str, str]]:
        """Cross-field validation beyond the bounds: ``(field, message)`` or None."""
        for key in cls.INTEGERS:
            lo, hi = ranges[key]
            if math.ceil(lo) > math.floor(hi):
                return key, f"[{lo}, {hi}] contains no integer"
        return None

    def uniform(self, rng: np.random.Generator, key: str) -> float:
        lo, hi = self.ranges[key]
        return float(lo + (hi - lo) * rng.random())

    def integer(self, rng: np.random.Generator, key: str) -> int:
        """A uniform integer in the range, both ends included."""
        lo, hi = self.ranges[key]
        return int(rng.integers(math.ceil(lo), math.floor(hi) + 1))

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
class Rot90(Op):
    """Rotate by ``k`` quarter turns counter-clockwise; odd ``k`` swaps width and height."""

    name, geometric = "rot90", True
    RANGES = {"k": ((0.0, 3.0), (0.0, 3.0))}
    INTEGERS = ("k",)

    def sample(self, rng, size):
        return {"k": self.integer(rng, "k")}

    def matrix(self, params, size):
        m, (w, h) = np.eye(3), size
        for _ in range(int(params["k"]) % 4):
            # (x, y) -> (y, w - x): the top-right corner goes to the top-left.
            m = np.array([[0, 1, 0], [-1, 0, w], [0, 0, 1]], np.float64) @ m
            w, h = h, w
        return m, (w, h)


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
class Perspective(Op):
    """Move each corner by up to ``distortion`` x the frame side; a projective matrix."""

    name, geometric = "perspective", True
    RANGES = {"distortion": ((0.0, 0.1), (0.0, 0.45))}

    def sample(self, rng, size):
        d = self.uniform(rng, "distortion")
        return {"corners": [float(d * u) for u in rng.uniform(-1.0, 1.0, 8)]}

    def matrix(self, params, size):
        off = np.asarray(params["corners"], np.float64).reshape(4, 2)
        if not off.any():
            return np.eye(3), size  # exactly the identity, not a solver's near-identity
        w, h = size
        src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
        return homography(src, src + off * [w, h]), size


def homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3x3 projective matrix taking four points ``src`` to ``dst``."""
    a, b = np.zeros((8, 8)), np.zeros(8)
    for i, ((x, y), (u, v)) in enumerate(zip(src, dst)):
        a[2 * i] = [x, y, 1, 0, 0, 0, -u * x, -u * y]
        a[2 * i + 1] = [0, 0, 0, x, y, 1, -v * x, -v * y]
        b[2 * i], b[2 * i + 1] = u, v
    return np.append(np.linalg.solve(a, b), 1.0).reshape(3, 3)


@register
class RandomResizedCrop(Op):
    """Crop a random area fraction and aspect ratio (the final resize fills the target)."""

    name, geometric = "random_resized_crop", True
    RANGES = {"scale": ((0.35, 1.0), (0.01, 1.0)),
              "ratio": ((0.75, 1.3333333333333333), (0.1, 10.0))}

    def sample(self, rng, size):
        """Whole-pixel crops, like torchvision's (and the warp can become a plain resize)."""
        w, h = size
        lr = (math.log(self.ranges["ratio"][0]), math.log(self.ranges["ratio"][1]))
        for _ in range(10):  # torchvision's rejection sampling, bounded
            area = w * h * self.uniform(rng, "scale")
            ratio = math.exp(lr[0] + (lr[1] - lr[0]) * rng.random())
            cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < cw <= w and 0 < ch <= h:
                return {"x": float(rng.integers(0, math.floor(w - cw) + 1)),
                        "y": float(rng.integers(0, math.floor(h - ch) + 1)), "w": float(cw), "h": float(ch)}
        return {"x": 0.0, "y": 0.0, "w": float(w), "h": float(h)}

    def matrix(self, params, size):
        return translate(-params["x"], -params["y"]), (params["w"], params["h"])


# --- composition -----------------------------------------------------------

class Composite(Op):
    """Holds child ops (``ops = [...]`` in the recipe) and chooses which of them fire.

    The children's ``p`` are selection weights; a chosen child always fires.
    """

    composite = True

    def __init__(self, p: float = 1.0, ops: Sequence[Op] = (), **kw: Any) -> None:
        super().__init__(p, **kw)
        self.children: List[Op] = list(ops)

    def weights(self) -> Optional[np.ndarray]:
        w = np.array([c.p for c in self.children], np.float64)
        return w / w.sum() if w.sum() > 0 else None

    def choose(self, rng: np.random.Generator) -> List[int]:
        raise NotImplementedError


@register
class OneOf(Composite):
    """Exactly one child, picked with probability proportional to its ``p``."""

    name = "one_of"

    def choose(self, rng):
        w = self.weights()
        return [] if w is None else [int(rng.choice(len(w), p=w))]


@register
class SomeOf(Composite):
    """``n`` distinct children (weighted by ``p``), applied in recipe order."""

    name = "some_of"
    RANGES = {"n": ((1.0, 2.0), (0.0, 64.0))}
    INTEGERS = ("n",)

    def choose(self, rng):
        w = self.weights()
        n = self.integer(rng, "n")
        n = 0 if w is None else min(n, int(np.count_nonzero(w)))
        return sorted(int(i) for i in rng.choice(len(w), size=n, replace=False, p=w)) if n else []


# Registers the photometric ops; re-exported so edgeaug.ops keeps naming every op class.
from .photometric import (CLAHE, Brightness, Contrast, Cutout, Equalize, Gamma,  # noqa: E402,F401
                          GaussianBlur, GaussianNoise, Grayscale, HueSaturation, JpegQuality,
                          MotionBlur, ToneOp, motion_kernel)
from . import ops_onnx  # noqa: E402,F401  registers "onnx"
