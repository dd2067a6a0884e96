"""Sensor noise ops: applied to the target-size uint8 RGB image after the one warp.

Every noise field comes from the record's own ``PCG64(seed)`` generator, the
seed drawn in ``sample`` and stored with the record; ``apply`` never touches a
shared RNG.  Labels are untouched.  Registered in :data:`edgeaug.ops.OPS`.
"""

from __future__ import annotations

import math

import numpy as np

from edgeaug.ops.base import Op, register


def noise_rng(params) -> np.random.Generator:
    """The record's own generator, from the seed stored in its params."""
    return np.random.Generator(np.random.PCG64(int(params["seed"])))


def draw_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31))


def _to_uint8(x: np.ndarray, shape) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(shape)


@register
class ISONoise(Op):
    """Camera ISO noise: hue jitter and Poisson luminance noise in HLS (as Albumentations 1.x' ISONoise).

    Params: ``color_shift`` (default [0.01, 0.05]: hue noise std, a fraction of
    360 degrees, times ``intensity``), ``intensity`` (default [0.1, 0.5]:
    luminance noise is Poisson with mean ``intensity * 255 * std(L)``, added as
    ``L += noise / 255 * (1 - L)``), ``seed``.  Like ``gaussian_noise``, each
    value's noise is one of 256 quantiles of its distribution, picked by a byte of
    the record's ``PCG64(seed)`` stream (tails beyond 1/512 are cut).
    """

    name = "iso_noise"
    RANGES = {"color_shift": ((0.01, 0.05), (0.0, 1.0)), "intensity": ((0.1, 0.5), (0.0, 10.0))}

    def sample(self, rng, size):
        return {**super().sample(rng, size), "seed": draw_seed(rng)}

    def apply(self, image, labels, params):
        import cv2

        if image.shape[2] != 3 or params["intensity"] <= 0:
            return image, labels
        hls = cv2.cvtColor(image.astype(np.float32) * np.float32(1 / 255), cv2.COLOR_RGB2HLS)
        std = float(cv2.meanStdDev(hls)[1][1, 0])
        h, w = image.shape[:2]
        pick = np.frombuffer(noise_rng(params).bytes(2 * h * w), np.uint8).reshape(2, h, w)
        lum = poisson_quantiles(std * params["intensity"] * 255).astype(np.float32) * np.float32(1 / 255)
        hue = (QUANTILES * (params["color_shift"] * 360 * params["intensity"])).astype(np.float32)
        hls[..., 0] = np.mod(hls[..., 0] + hue[pick[0]], 360)
        hls[..., 1] += lum[pick[1]] * (1 - hls[..., 1])
        rgb = cv2.cvtColor(_clip_lightness(hls), cv2.COLOR_HLS2RGB)
        return _to_uint8(rgb * 255, image.shape), labels


def _clip_lightness(hls: np.ndarray) -> np.ndarray:
    np.clip(hls[..., 1], 0, 1, out=hls[..., 1])
    return hls


def _normal_quantiles() -> np.ndarray:
    from statistics import NormalDist

    return np.array([NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)])


QUANTILES = _normal_quantiles()  # the standard normal at the 256 mid-quantiles


def poisson_quantiles(lam: float) -> np.ndarray:
    """Poisson(``lam``) at the 256 mid-quantiles (i + 0.5) / 256, from its cumulative distribution."""
    if lam <= 0:
        return np.zeros(256)
    k = np.arange(int(lam + 12 * math.sqrt(lam) + 20))
    logpmf = k * math.log(lam) - lam - np.array([math.lgamma(i + 1) for i in k])
    cdf = np.cumsum(np.exp(logpmf))
    return np.minimum(np.searchsorted(cdf, (np.arange(256) + 0.5) / 256), len(k) - 1).astype(np.float64)


@register
class ShotNoise(Op):
    """Poisson-Gaussian sensor noise in linear light (gamma 2.2, as Albumentations' ShotNoise).

    A linear value ``v`` in [0, 1] becomes ``scale * Poisson(v / scale) +
    N(0, read_noise)``: photon noise whose variance grows with the signal
    (``scale`` is full scale per photon, default [0.001, 0.01]) plus signal-free
    read noise (``read_noise``, a fraction of full scale, default [0, 0.01]).
    ``seed`` picks the field.  ``scale`` 0 and ``read_noise`` 0 is the identity.
    """

    name = "shot_noise"
    RANGES = {"scale": ((0.001, 0.01), (0.0, 1.0)), "read_noise": ((0.0, 0.01), (0.0, 1.0))}

    def sample(self, rng, size):
        return {**super().sample(rng, size), "seed": draw_seed(rng)}

    def apply(self, image, labels, params):
        s, r = params["scale"], params["read_noise"]
        if s <= 0 and r <= 0:
            return image, labels
        rng = noise_rng(params)
        lin = _LINEAR[image]
        if s > 0:
            lin = rng.poisson(lin / s).astype(np.float32) * np.float32(s)
        if r > 0:
            lin = lin + rng.standard_normal(image.shape, dtype=np.float32) * np.float32(r)
        out = np.power(np.clip(lin, 0, 1), np.float32(1 / 2.2)) * 255
        return _to_uint8(out, image.shape), labels


_LINEAR = (np.arange(256, dtype=np.float32) / 255) ** np.float32(2.2)


@register
class SaltPepper(Op):
    """Set a fraction ``amount`` (default [0.01, 0.06]) of pixels to white or black (all channels).

    ``salt_vs_pepper`` (default [0.4, 0.6]) is the white share; ``seed`` picks
    the pixels (as Albumentations' SaltAndPepper).
    """

    name = "salt_pepper"
    RANGES = {"amount": ((0.01, 0.06), (0.0, 1.0)), "salt_vs_pepper": ((0.4, 0.6), (0.0, 1.0))}

    def sample(self, rng, size):
        return {**super().sample(rng, size), "seed": draw_seed(rng)}

    def apply(self, image, labels, params):
        if params["amount"] <= 0:
            return image, labels
        h, w = image.shape[:2]
        u = noise_rng(params).random((h, w), dtype=np.float32)
        salt_end = np.float32(params["amount"] * params["salt_vs_pepper"])
        out = image.copy()
        out[u < salt_end] = 255
        out[(u >= salt_end) & (u < np.float32(params["amount"]))] = 0
        return out, labels


@register
class MultiplicativeNoise(Op):
    """Multiply each pixel by a factor uniform in [``low``, ``high``] (speckle noise).

    ``multiplier`` (default [0.9, 1.1]) is the range; ``per_channel`` (default
    false) draws one factor per channel instead of one per pixel;
    ``elementwise`` (default true) false draws one factor for the whole image
    (Albumentations' default), which is then a brightness scale.  The factors
    come from ``seed``.  ``multiplier`` 1 is the identity.
    """

    name = "multiplicative_noise"
    RANGES = {"multiplier": ((0.9, 1.1), (0.0, 10.0))}
    OPTIONS = {"per_channel": (bool, False), "elementwise": (bool, True)}

    def sample(self, rng, size):
        lo, hi = self.ranges["multiplier"]
        return {"low": float(lo), "high": float(hi), "seed": draw_seed(rng)}

    def apply(self, image, labels, params):
        lo, hi = params["low"], params["high"]
        if lo == hi == 1:
            return image, labels
        rng = noise_rng(params)
        h, w, c = image.shape
        shape = (h if self.options["elementwise"] else 1, w if self.options["elementwise"] else 1)
        shape += (c if self.options["per_channel"] else 1,)
        m = np.float32(lo) + np.float32(hi - lo) * rng.random(shape, dtype=np.float32)
        return _to_uint8(image * m, image.shape), labels
