"""Augmentation ops: sampling is separate from applying.

Every op is a class registered by name in :data:`OPS`.  An instance holds the
recipe's parameter ranges and probability ``p``:

* ``sample(rng, size) -> dict`` draws concrete parameters from the generator
  it is given (``size`` is the current frame's ``(w, h)``); every random
  choice happens here, so the stored parameters fully determine the output;
* geometric ops return ``matrix(params, size) -> (M, new_size)``, a 3x3
  matrix in continuous pixel coordinates (pixel ``i`` covers ``[i, i+1)``);
  the pipeline multiplies them and resamples once;
* photometric ops ``apply(image, labels, params)`` on the target-size uint8
  RGB image without touching any RNG; ops that are per-pixel tone curves
  also offer ``curve(x, params)`` so consecutive ones fuse into one lookup;
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
        w, h = size
        lr = (math.log(self.ranges["ratio"][0]), math.log(self.ranges["ratio"][1]))
        for _ in range(10):  # torchvision's rejection sampling, bounded
            area = w * h * self.uniform(rng, "scale")
            ratio = math.exp(lr[0] + (lr[1] - lr[0]) * rng.random())
            cw, ch = math.sqrt(area * ratio), math.sqrt(area / ratio)
            # Rounding must not reject (or nearly keep) the whole frame.
            cw, ch = (w if abs(cw - w) < 1e-9 * w else cw), (h if abs(ch - h) < 1e-9 * h else ch)
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
    RANGES = {"hue": ((-10.0, 10.0), (-180.0, 180.0)),
              "saturation": ((0.8, 1.2), (0.0, 10.0))}

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

    @classmethod
    def check(cls, ranges, options):
        if not 1 <= options["tile_grid"] <= 64:
            return "tile_grid", f"{options['tile_grid']} is outside 1..64"
        return super().check(ranges, options)

    def apply(self, image, labels, params):
        import cv2
        g = int(self.options["tile_grid"])
        clahe = cv2.createCLAHE(clipLimit=params["clip_limit"], tileGridSize=(g, g))
        return _on_luma(image, clahe.apply), labels


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
class MotionBlur(Op):
    """Average along a line ``length`` output pixels long at ``angle`` degrees."""

    name = "motion_blur"
    RANGES = {"length": ((3.0, 9.0), (0.0, 64.0)), "angle": ((0.0, 360.0), (-360.0, 360.0))}

    def apply(self, image, labels, params):
        import cv2
        if params["length"] <= 0:
            return image, labels
        k = motion_kernel(params["length"], params["angle"])
        out = cv2.filter2D(image, -1, k, borderType=cv2.BORDER_REFLECT_101)
        return out.reshape(image.shape), labels


def motion_kernel(length: float, angle: float) -> np.ndarray:
    """A normalized line kernel, splatted bilinearly so any length and angle work."""
    r, a = length / 2.0, math.radians(angle)
    c = math.ceil(r) + 1
    t = np.linspace(-r, r, max(2, math.ceil(4 * length) + 1))
    xs, ys = c + t * math.cos(a), c - t * math.sin(a)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    k = np.zeros((2 * c + 1, 2 * c + 1), np.float32)
    for dx, dy, wt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                       (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(k, (y0 + dy, x0 + dx), wt)
    return k / k.sum()


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
        gen = np.random.Generator(np.random.PCG64(params["seed"]))
        noise = gen.standard_normal(image.shape, dtype=np.float32)
        noise *= np.float32(255.0 * params["sigma"])
        noise += image
        return np.clip(np.rint(noise), 0, 255).astype(np.uint8), labels


@register
class JpegQuality(Op):
    """Round-trip through a JPEG encoder at ``quality`` (an integer, 1..100)."""

    name = "jpeg"
    RANGES = {"quality": ((50.0, 95.0), (1.0, 100.0))}
    INTEGERS = ("quality",)

    def sample(self, rng, size):
        return {"quality": self.integer(rng, "quality")}

    def apply(self, image, labels, params):
        import cv2
        bgr = image[..., ::-1] if image.shape[2] == 3 else image
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(bgr),
                               [cv2.IMWRITE_JPEG_QUALITY, int(params["quality"])])
        flag = cv2.IMREAD_COLOR if image.shape[2] == 3 else cv2.IMREAD_GRAYSCALE
        out = cv2.imdecode(buf, flag).reshape(image.shape)
        return (np.ascontiguousarray(out[..., ::-1]) if image.shape[2] == 3 else out), labels


@register
class Cutout(Op):
    """Fill ``count`` rectangles, sides a fraction ``size`` of the image, with grey level ``fill``.

    Coarse dropout: several holes per image, one fill value per record.
    """

    name = "cutout"
    RANGES = {"count": ((1.0, 3.0), (0.0, 64.0)), "size": ((0.1, 0.25), (0.0, 1.0)),
              "fill": ((0.0, 0.0), (0.0, 255.0))}
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
            out[y0:y0 + int(round(fh * h)), x0:x0 + int(round(fw * w))] = params.get("fill", 0)
        return out, labels


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


from . import ops_onnx  # noqa: E402,F401  registers "onnx"
