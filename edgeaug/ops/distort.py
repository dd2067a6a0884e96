"""Non-affine geometric ops ("field" ops) and the vignette.

A field op is geometric but no matrix: for points of the frame where it sits
in the recipe it gives ``backward(params, size, pts)``, where each output
point takes its pixel from (the op's input frame), and ``forward`` for labels
(input -> output).  Its ``matrix`` is the identity, so the frame size and the
matrix ops around it are unchanged.  :mod:`edgeaug.builder.remap` chains the
matrices and fields into one map from output pixel to source pixel and
resamples ONCE with ``cv2.remap``; when no field op fires the pipeline keeps
its single matrix warp, byte for byte.

Sizes are fractions of the frame (its shorter side for ``elastic``), so a
field means the same thing at any resolution.  Coordinates are continuous
(pixel ``i`` covers ``[i, i+1)``).
"""

from __future__ import annotations

import math

import numpy as np

from edgeaug.ops.base import FieldOp, MagnitudeOp, register


def _bspline_weights(t: np.ndarray) -> np.ndarray:
    """Uniform cubic B-spline weights (4, n) for fractional positions ``t``."""
    t2, t3 = t * t, t * t * t
    return np.stack([(1 - t) ** 3, 3 * t3 - 6 * t2 + 4, -3 * t3 + 3 * t2 + 3 * t + 1, t3]) / 6.0


def spline_field(nodes: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Evaluate a cubic B-spline over ``nodes`` (c, ny, nx) at grid coordinates: (n, c).

    Plain numpy: exact to float64 at any point (cv2.remap quantizes positions
    to 1/32 of a cell), so the forward map can invert it by iteration.
    """
    c, ny, nx = nodes.shape
    gx, gy = np.clip(gx, 1, nx - 3 - 1e-9), np.clip(gy, 1, ny - 3 - 1e-9)  # constant beyond the margin
    ix, iy = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
    wx, wy = _bspline_weights(gx - ix), _bspline_weights(gy - iy)
    flat = nodes.reshape(c, -1)
    base = (iy - 1) * nx + (ix - 1)  # the top-left of each point's 4 x 4 nodes, in the flat array
    out = np.zeros((c, len(gx)))
    for j in range(4):
        row = sum(wx[i] * flat[:, base + (j * nx + i)] for i in range(4))
        out += wy[j] * row
    return out.T


@register
class Elastic(FieldOp):
    """Smooth random displacements (elastic deformation).

    The field is a cubic B-spline over normal noise on a grid of spacing
    ``sigma`` (fraction of the frame's shorter side), from the stored
    ``seed``; ``alpha`` is its rms displacement (fraction of the shorter side).
    The field's slope is about ``6 alpha / sigma`` at worst (measured: 0.59 at
    ``alpha = sigma / 10`` over 40 seeds), so the recipe check requires
    ``alpha <= sigma / 10``: the map cannot fold, and labels use its inverse
    by 30 fixed-point iterations (a contraction by <= 0.6 each), accurate to
    ~1e-5 px.
    """

    name = "elastic"
    smooth = False  # C2, but its spline cells can be as small as the coarse grid's: estimate conservatively
    RANGES = {"alpha": ((0.0, 0.01), (0.0, 0.1)), "sigma": ((0.1, 0.2), (0.02, 1.0))}
    ITERATIONS = 30

    @classmethod
    def check(cls, ranges, options):
        if ranges["alpha"][1] > ranges["sigma"][0] / 10 + 1e-12:
            return "alpha", f"{ranges['alpha'][1]} exceeds sigma / 10 = {ranges['sigma'][0] / 10}: the field could fold"
        return super().check(ranges, options)

    def sample(self, rng, size):
        return {
            "alpha": self.uniform(rng, "alpha"),
            "sigma": self.uniform(rng, "sigma"),
            "seed": int(rng.integers(0, 2**31)),
        }

    def is_identity(self, params):
        return params["alpha"] <= 0

    def _displacement(self, params, size, pts):
        short = min(size)
        cell = params["sigma"] * short
        nx, ny = math.ceil(size[0] / cell) + 5, math.ceil(size[1] / cell) + 5  # 2 spare nodes a side
        g = np.random.Generator(np.random.PCG64(int(params["seed"]))).standard_normal((2, ny, nx))
        # A B-spline of unit normals has rms ~0.5: scale so the field's rms is alpha.
        d = spline_field(g, pts[:, 0] / cell + 2, pts[:, 1] / cell + 2)
        return d * (2.0 * params["alpha"] * short)

    def backward(self, params, size, pts, channel=None):
        return pts + self._displacement(params, size, pts)

    def backward_grid(self, params, size, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """:meth:`backward` at every point of the grid ``xs`` x ``ys``: (len(ys), len(xs), 2).

        The spline is a tensor product, so its weights are computed per column
        and per row: exact, at a fraction of the pointwise cost.
        """
        short = min(size)
        cell = params["sigma"] * short
        nx, ny = math.ceil(size[0] / cell) + 5, math.ceil(size[1] / cell) + 5
        g = np.random.Generator(np.random.PCG64(int(params["seed"]))).standard_normal((2, ny, nx))
        gx, gy = np.clip(xs / cell + 2, 1, nx - 3 - 1e-9), np.clip(ys / cell + 2, 1, ny - 3 - 1e-9)
        ix, iy = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
        wx, wy = _bspline_weights(gx - ix), _bspline_weights(gy - iy)
        out = np.empty((len(ys), len(xs), 2))
        for c in range(2):
            cols = sum(wx[i] * g[c][:, ix - 1 + i] for i in range(4))  # (ny, len(xs))
            out[..., c] = sum(wy[j][:, None] * cols[iy - 1 + j] for j in range(4))
        out *= 2.0 * params["alpha"] * short
        out[..., 0] += xs[None, :]
        out[..., 1] += ys[:, None]
        return out

    def forward(self, params, size, pts):
        # Solve q + D(q) = p by fixed-point iteration; a contraction while |D'| < 1.
        q = pts.copy()
        for _ in range(self.ITERATIONS):
            q = pts - self._displacement(params, size, q)
        return q


@register
class GridDistortion(FieldOp):
    """Stretch or squeeze the columns and rows of a ``steps`` x ``steps`` grid.

    Each column's width (and row's height) is scaled by ``1 + d``, ``d``
    drawn from ``distort``, then the widths are renormalized so the frame
    still maps onto itself.  The map is separable and piecewise linear, so its
    inverse (for labels) is exact.
    """

    name = "grid_distortion"
    smooth, separable = False, True  # piecewise linear, each axis on its own
    RANGES = {"distort": ((-0.3, 0.3), (-0.9, 0.9))}
    OPTIONS = {"steps": (int, 5)}
    BOUNDS = {"steps": (1, 64)}

    def sample(self, rng, size):
        n = int(self.options["steps"])
        return {
            "dx": [self.uniform(rng, "distort") for _ in range(n)],
            "dy": [self.uniform(rng, "distort") for _ in range(n)],
        }

    def is_identity(self, params):
        return not any(params["dx"]) and not any(params["dy"])

    @staticmethod
    def _knots(d, length):
        w = 1.0 + np.asarray(d, np.float64)
        src = np.concatenate([[0.0], np.cumsum(w) / w.sum()]) * length
        return np.linspace(0.0, length, len(w) + 1), src

    def _map(self, params, size, pts, inverse):
        out = np.empty_like(pts)
        for axis, key in ((0, "dx"), (1, "dy")):
            uniform, src = self._knots(params[key], size[axis])
            a, b = (src, uniform) if inverse else (uniform, src)
            v = pts[:, axis]
            # np.interp clamps; outside the frame the edge cells' slopes continue.
            out[:, axis] = np.interp(v, a, b)
            lo, hi = v < a[0], v > a[-1]
            out[lo, axis] = b[0] + (v[lo] - a[0]) * (b[1] - b[0]) / (a[1] - a[0])
            out[hi, axis] = b[-1] + (v[hi] - a[-1]) * (b[-1] - b[-2]) / (a[-1] - a[-2])
        return out

    def backward(self, params, size, pts, channel=None):
        return self._map(params, size, pts, inverse=False)

    def forward(self, params, size, pts):
        return self._map(params, size, pts, inverse=True)


@register
class ChromaticAberration(FieldOp):
    """Lateral chromatic aberration: red and blue magnified by ``1 + red`` / ``1 + blue`` about the centre.

    Each channel is resampled through its own map (one remap per channel, all
    from the source).  Green is the reference: labels and masks follow it,
    so they do not move.

    Speed (written reason, issue 24): about 1.5x slower than Albumentations'
    ``ChromaticAberration`` (1.1 vs 0.72 ms per 224x224 image): three remaps
    where it does two, because green too goes through the record's other
    geometry in the same single resampling.
    """

    name = "chromatic_aberration"
    per_channel, separable = True, True
    RANGES = {"red": ((-0.005, 0.005), (-0.1, 0.1)), "blue": ((-0.005, 0.005), (-0.1, 0.1))}

    def is_identity(self, params):
        return params["red"] == 0 and params["blue"] == 0

    def backward(self, params, size, pts, channel=None):
        s = {0: params["red"], 2: params["blue"]}.get(channel, 0.0)
        if s == 0:
            return pts
        c = np.array([size[0] / 2, size[1] / 2])
        return c + (pts - c) / (1.0 + s)

    def forward(self, params, size, pts):
        return pts  # labels follow the green channel


@register
class Vignette(MagnitudeOp):
    """Darken towards the corners: gain ``1 - strength * (r / r_corner)^2`` about the centre.

    Photometric (a per-pixel gain on the output image), so it needs no field.
    """

    name, KEY = "vignette", "strength"
    RANGES = {"strength": ((0.2, 0.5), (0.0, 1.0))}

    def effect(self, image, s, params):
        h, w = image.shape[:2]
        y, x = np.ogrid[0:h, 0:w]
        r2 = ((x + 0.5 - w / 2) ** 2 + (y + 0.5 - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
        gain = (1.0 - s * r2).astype(np.float32)[..., None]
        return np.rint(image.astype(np.float32) * gain).astype(np.uint8)
