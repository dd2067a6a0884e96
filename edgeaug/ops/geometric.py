"""Geometric ops: each returns a 3x3 matrix; the pipeline composes them and resamples once."""

from __future__ import annotations

import math

import numpy as np

from edgeaug.ops.base import Op, about_center, register, scale, translate


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
    RANGES = {
        "scale": ((0.9, 1.1), (0.05, 20.0)),
        "translate": ((-0.1, 0.1), (-1.0, 1.0)),
        "shear": ((0.0, 0.0), (-60.0, 60.0)),
    }

    def sample(self, rng, size):
        return {
            "scale": self.uniform(rng, "scale"),
            "tx": self.uniform(rng, "translate"),
            "ty": self.uniform(rng, "translate"),
            "shear": self.uniform(rng, "shear"),
        }

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
    RANGES = {"scale": ((0.35, 1.0), (0.01, 1.0)), "ratio": ((0.75, 1.3333333333333333), (0.1, 10.0))}

    def sample(self, rng, size):
        """Whole-pixel crops, like torchvision's (and the warp can become a plain resize)."""
        w, h = size
        lr = (math.log(self.ranges["ratio"][0]), math.log(self.ranges["ratio"][1]))
        for _ in range(10):  # torchvision's rejection sampling, bounded
            area = w * h * self.uniform(rng, "scale")
            ratio = math.exp(lr[0] + (lr[1] - lr[0]) * rng.random())
            cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < cw <= w and 0 < ch <= h:
                return {
                    "x": float(rng.integers(0, math.floor(w - cw) + 1)),
                    "y": float(rng.integers(0, math.floor(h - ch) + 1)),
                    "w": float(cw),
                    "h": float(ch),
                }
        return {"x": 0.0, "y": 0.0, "w": float(w), "h": float(h)}

    def matrix(self, params, size):
        return translate(-params["x"], -params["y"]), (params["w"], params["h"])
