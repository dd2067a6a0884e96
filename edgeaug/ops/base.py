"""Augmentation ops: sampling is separate from applying.

Every op is a class registered by name in :data:`OPS` (complete once
:mod:`edgeaug.ops.registry` has imported every op module).  An instance holds the
recipe's parameter ranges and probability ``p``:

* ``sample(rng, size) -> dict`` draws concrete parameters from the generator
  it is given (``size`` is the current frame's ``(w, h)``); every random
  choice happens here, so the stored parameters fully determine the output;
* geometric ops return ``matrix(params, size) -> (M, new_size)``, a 3x3
  matrix in continuous pixel coordinates (pixel ``i`` covers ``[i, i+1)``);
  the pipeline multiplies them and resamples once;
* photometric ops (:mod:`edgeaug.ops.photometric`) ``apply(image, labels,
  params)`` on the target-size uint8 RGB image without touching any RNG;
  ops that are per-pixel tone curves also offer ``curve(x, params)`` so
  consecutive ones fuse into one lookup;
* composite ops (``one_of``, ``some_of``) hold child ops and ``choose`` which
  of them fire; :class:`edgeaug.builder.augment.Augmenter` walks them.

Parameters are plain JSON numbers and lists, so they are stored with each record.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

Size = Tuple[float, float]
OPS: Dict[str, type] = {}


class OpError(ValueError):
    """An op cannot run on this record (e.g. a recipe/dataset mismatch); the CLI prints it as one line."""


def register(cls: type) -> type:
    OPS[cls.name] = cls
    return cls


class RecipePath(str):
    """A path as the recipe spells it (what the manifest stores), remembering the resolved file or folder.

    It serializes (manifest, JSON) as the recipe's own relative spelling, so no
    absolute path enters a pack, while worker processes (it pickles with the
    path) still find the file.
    """

    def __new__(cls, text: str, path: str) -> "RecipePath":
        obj = super().__new__(cls, text)
        obj.path = str(path)
        return obj

    def __reduce__(self):
        return RecipePath, (str(self), self.path)


def confined_path(text: str, roots: Tuple[Path, ...], fields: Any, key: str, noun: str, folder: bool) -> Path:
    """The file (or ``folder``) a pack's recipe names in option ``key``, which must lie inside one of ``roots``.

    A pack is untrusted: the path must be relative, without '..', and,
    symlinks resolved, stay inside the root it is found in; else ``fields.fail``
    (which raises) names ``key``.  ``noun`` says what the option names ("model").
    """
    where, kind = " or ".join(str(r) for r in roots), "folder" if folder else "file"
    if not text or Path(text).is_absolute() or text.startswith(("/", "\\")) or ".." in Path(text).parts:
        fields.fail(key, f"{text!r}: a pack's recipe may name a {noun} only by a relative path inside {where}")
    for root in roots:
        base = Path(root).resolve()
        path = (base / text).resolve()
        if not path.is_relative_to(base):
            fields.fail(key, f"{text!r} leads to {path}, outside {root} (a symlink?): refused")
        if path.is_dir() if folder else path.is_file():
            return path
    fields.fail(key, f"{text!r}: no such {kind} in {where} (pass the build recipe's folder with --recipe-dir)")
    raise AssertionError("unreachable")  # fields.fail raises


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
    required (e.g. a model path); ``BOUNDS`` maps numeric options to their
    inclusive ``(lo, hi)``.  ``INTEGERS`` names ranges sampled as integers.
    Recipes validate all of them and call :meth:`check`.  The default
    :meth:`sample` draws each range in ``RANGES`` order.
    """

    name = ""
    geometric = False
    composite = False
    RANGES: Dict[str, Tuple[Tuple[float, float], Tuple[float, float]]] = {}
    OPTIONS: Dict[str, Tuple[type, Any]] = {}
    INTEGERS: Tuple[str, ...] = ()
    BOUNDS: Dict[str, Tuple[float, float]] = {}

    def __init__(self, p: float = 1.0, **kw: Any) -> None:
        self.p = p
        self.ranges = {k: tuple(kw.get(k, d)) for k, (d, _) in self.RANGES.items()}
        self.options = {k: kw.get(k, d) for k, (_, d) in self.OPTIONS.items()}

    @classmethod
    def check(cls, ranges: Dict[str, Tuple[float, float]], options: Dict[str, Any]) -> Optional[Tuple[str, str]]:
        """Cross-field validation beyond the bounds: ``(field, message)`` or None."""
        for key, (lo, hi) in cls.BOUNDS.items():
            if not lo <= options[key] <= hi:
                return key, f"{options[key]} is outside {lo}..{hi}"
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
        return {k: self.integer(rng, k) if k in self.INTEGERS else self.uniform(rng, k) for k in self.RANGES}

    def apply(self, image: np.ndarray, labels: Any, params: Dict[str, Any]):
        raise NotImplementedError


class FieldOp(Op):
    """Base of non-affine geometric ops (:mod:`edgeaug.ops.distort`, :mod:`edgeaug.ops.lens`).

    For points of the frame where the op sits it gives ``backward`` (output
    point -> where it samples the op's input) and ``forward`` (for labels);
    ``matrix`` is the identity.  The pipeline chains fields and matrices and
    resamples once (:mod:`edgeaug.builder.remap`).
    """

    geometric, field = True, True
    per_channel = False  # True: backward depends on the channel (chromatic aberration)
    pixels = False  # True: also runs ``apply`` with the photometric ops (the camera op)
    smooth = True  # backward is twice differentiable (False: kinks, e.g. piecewise linear): see builder.remap
    separable = False  # backward's x depends on x alone and y on y alone (grid distortion, a centred scale)

    def matrix(self, params, size):
        return np.eye(3), size

    def is_identity(self, params: Dict[str, Any]) -> bool:
        """Whether the field moves nothing (zero magnitude): the pipeline then skips it."""
        return False

    def backward(self, params, size, pts: np.ndarray, channel: Optional[int] = None) -> np.ndarray:
        """Output points (n, 2) float64 -> where they sample the op's input frame."""
        raise NotImplementedError

    def forward(self, params, size, pts: np.ndarray) -> np.ndarray:
        """Input points (n, 2) -> their output positions: the inverse of :meth:`backward`."""
        raise NotImplementedError


class MagnitudeOp(Op):
    """An op with one magnitude parameter ``KEY``: at 0 (or below) it leaves the image unchanged.

    Subclasses implement :meth:`effect`; the identity rule is written once here.
    """

    KEY = ""

    def apply(self, image: np.ndarray, labels: Any, params: Dict[str, Any]):
        s = params[self.KEY]
        return (image, labels) if s <= 0 else (self.effect(image, s, params), labels)

    def effect(self, image: np.ndarray, s: float, params: Dict[str, Any]) -> np.ndarray:
        raise NotImplementedError
