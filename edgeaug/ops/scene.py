"""Scene ops (shadow, fog, sun flare, rain) on the target-size uint8 RGB image; labels untouched.

Semantics follow Albumentations' RandomShadow, RandomFog, RandomSunFlare and
RandomRain; positions are fractions of the frame, so params do not depend on the
output size.  Shapes (shadow polygons, flare circles) are recorded in params; dense
fields (fog, rain drops) are recorded as a seed for the record's own ``PCG64``.
Registered in :data:`edgeaug.ops.OPS`.
"""

from __future__ import annotations

import math

import numpy as np

from edgeaug.ops.base import Op, register
from edgeaug.ops.noise import draw_seed, noise_rng


@register
class Shadow(Op):
    """Darken ``count`` random polygons (default [1, 2]) of ``vertices`` corners (default [5, 5]).

    Corners are uniform in the region ``x`` (default [0, 1]) by ``y`` (default
    [0.5, 1], the lower half) as fractions of the frame; inside, values are
    multiplied by ``1 - intensity`` (default [0.5, 0.5]).  Corners are joined in
    angle order about their mean, so a shadow never crosses itself.  Recorded:
    ``polygons`` (lists of [x, y] fractions) and one ``intensities`` entry each.
    """

    name = "shadow"
    RANGES = {
        "count": ((1.0, 2.0), (0.0, 16.0)),
        "vertices": ((5.0, 5.0), (3.0, 32.0)),
        "intensity": ((0.5, 0.5), (0.0, 1.0)),
        "x": ((0.0, 1.0), (0.0, 1.0)),
        "y": ((0.5, 1.0), (0.0, 1.0)),
    }
    INTEGERS = ("count", "vertices")

    def sample(self, rng, size):
        polygons, intensities = [], []
        for _ in range(self.integer(rng, "count")):
            n = self.integer(rng, "vertices")
            pts = [[self.uniform(rng, "x"), self.uniform(rng, "y")] for _ in range(n)]
            cx, cy = sum(p[0] for p in pts) / n, sum(p[1] for p in pts) / n
            polygons.append(sorted(pts, key=lambda p: math.atan2(p[1] - cy, p[0] - cx)))  # simple, not self-crossing
            intensities.append(self.uniform(rng, "intensity"))
        return {"polygons": polygons, "intensities": intensities}

    def apply(self, image, labels, params):
        import cv2

        if not params["polygons"]:
            return image, labels
        h, w = image.shape[:2]
        out = image.copy()
        x = np.arange(256, dtype=np.float64)
        for poly, k in zip(params["polygons"], params["intensities"]):
            mask = np.zeros((h, w), np.uint8)
            pts = np.rint(np.array(poly, np.float64) * (w, h)).astype(np.int32)
            cv2.fillPoly(mask, [pts], 255)
            dark = cv2.LUT(out, np.clip(np.rint(x * (1 - k)), 0, 255).astype(np.uint8))
            cv2.copyTo(dark, mask, out)
        return out, labels


@register
class Fog(Op):
    """Patchy haze: blend towards white by ``fog_coef`` (default [0.3, 0.6]; 0 is the identity).

    The haze's density varies smoothly over the frame (a 6x6 random grid from
    ``seed``, interpolated) between 60% and 100% of ``fog_coef``, and the image
    softens with a Gaussian of sigma ``1.5 * fog_coef`` pixels, as far objects do.
    """

    name = "fog"
    RANGES = {"fog_coef": ((0.3, 0.6), (0.0, 1.0))}

    def sample(self, rng, size):
        return {"fog_coef": self.uniform(rng, "fog_coef"), "seed": draw_seed(rng)}

    def apply(self, image, labels, params):
        import cv2

        c = params["fog_coef"]
        if c <= 0:
            return image, labels
        h, w = image.shape[:2]
        grid = noise_rng(params).random((6, 6), dtype=np.float32)
        field = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        alpha = np.clip(np.float32(c) * (0.6 + 0.4 * field), 0, 1)[..., None]
        s = 1.5 * c
        soft = cv2.GaussianBlur(image, (2 * math.ceil(3 * s) + 1,) * 2, s).reshape(image.shape)
        out = soft * (1 - alpha) + np.float32(255) * alpha
        return np.rint(out).astype(np.uint8), labels


@register
class SunFlare(Op):
    """A bright light source with lens-flare circles along a line through it.

    The source sits at (``x``, ``y``) (fractions; default [0, 1] x [0, 0.5], the
    upper half) and glows over ``src_radius`` (fraction of the width, default
    [0.2, 0.4]).  ``circles`` (default [6, 10]) ghosts lie on the line at
    ``angle`` degrees (default [0, 360]), each recorded as ``[x, y, radius, alpha,
    grey]`` (radius a fraction of the width, alpha 0.05-0.2, grey 205-255).
    """

    name = "sun_flare"
    RANGES = {
        "x": ((0.0, 1.0), (0.0, 1.0)),
        "y": ((0.0, 0.5), (0.0, 1.0)),
        "angle": ((0.0, 360.0), (-360.0, 360.0)),
        "circles": ((6.0, 10.0), (0.0, 64.0)),
        "src_radius": ((0.2, 0.4), (0.0, 2.0)),
    }
    INTEGERS = ("circles",)

    def sample(self, rng, size):
        x, y, a = self.uniform(rng, "x"), self.uniform(rng, "y"), math.radians(self.uniform(rng, "angle"))
        circles = []
        for _ in range(self.integer(rng, "circles")):
            t = float(rng.uniform(-1.0, 1.0))  # along the line, in frame widths
            r, alpha, grey = float(rng.uniform(0.01, 0.06)), float(rng.uniform(0.05, 0.2)), int(rng.integers(205, 256))
            circles.append([x + t * math.cos(a), y + t * math.sin(a), r, alpha, grey])
        return {"x": x, "y": y, "src_radius": self.uniform(rng, "src_radius"), "circles": circles}

    def apply(self, image, labels, params):
        import cv2

        h, w = image.shape[:2]
        out = image.copy()
        for cx, cy, r, alpha, grey in params["circles"]:
            x, y, rad = round(cx * w), round(cy * h), max(1, round(r * w))
            x0, y0, x1, y1 = max(0, x - rad), max(0, y - rad), min(w, x + rad + 1), min(h, y + rad + 1)
            if x0 >= x1 or y0 >= y1:
                continue  # off the frame
            roi = out[y0:y1, x0:x1]  # blend only the circle's square: the rest would blend with itself
            overlay = roi.copy()
            cv2.circle(overlay, (x - x0, y - y0), rad, (int(grey),) * 3, -1)
            cv2.addWeighted(overlay, alpha, roi, 1 - alpha, 0, dst=roi)
        rad = params["src_radius"] * w
        sx, sy = params["x"] * w, params["y"] * h
        x0, y0 = max(0, math.floor(sx - rad)), max(0, math.floor(sy - rad))
        x1, y1 = min(w, math.ceil(sx + rad) + 1), min(h, math.ceil(sy + rad) + 1)
        if rad <= 0 or x0 >= x1 or y0 >= y1:
            return out, labels
        yy, xx = np.ogrid[y0:y1, x0:x1]
        d2 = ((xx + np.float32(0.5 - sx)) ** 2 + (yy + np.float32(0.5 - sy)) ** 2).astype(np.float32)
        glow = (np.maximum(1 - np.sqrt(d2) / np.float32(rad), 0) ** 2)[..., None]  # zero beyond the radius
        roi = out[y0:y1, x0:x1]
        roi[:] = np.rint(roi + (255 - roi.astype(np.float32)) * glow).astype(np.uint8)
        return out, labels


@register
class Rain(Op):
    """Rain streaks, as Albumentations' RandomRain: light grey lines added to the image, which darkens.

    ``density`` drops per pixel (default [0.001, 0.003]), each ``drop_length``
    (fraction of the height, default [0.08, 0.08]) long, ``slant`` degrees off
    vertical (default [-10, 10]); the drop layer is box-blurred by ``blur``
    pixels (option, default 3), added with grey ``drop_grey`` (option, default
    200), then the image is scaled by ``brightness`` (default [0.7, 0.7]).
    Drop positions come from ``seed``; ``density`` 0 is the identity.
    """

    name = "rain"
    RANGES = {
        "density": ((0.001, 0.003), (0.0, 0.05)),
        "drop_length": ((0.08, 0.08), (0.0, 1.0)),
        "slant": ((-10.0, 10.0), (-60.0, 60.0)),
        "brightness": ((0.7, 0.7), (0.0, 1.0)),
    }
    OPTIONS = {"blur": (int, 3), "drop_grey": (int, 200), "drop_width": (int, 1)}
    BOUNDS = {"blur": (1, 31), "drop_grey": (0, 255), "drop_width": (1, 16)}

    def sample(self, rng, size):
        return {**super().sample(rng, size), "seed": draw_seed(rng)}

    def apply(self, image, labels, params):
        import cv2

        h, w = image.shape[:2]
        n = int(round(params["density"] * w * h))
        if n <= 0:
            return image, labels
        length = params["drop_length"] * h
        dx, dy = length * math.sin(math.radians(params["slant"])), length * math.cos(math.radians(params["slant"]))
        u = noise_rng(params).random((n, 2))
        starts = np.c_[u[:, 0] * (w + abs(dx)) - max(dx, 0.0), u[:, 1] * (h + dy) - dy]  # streaks may enter the frame
        lines = np.stack([starts, starts + (dx, dy)], 1)
        layer = np.zeros_like(image)
        g = self.options["drop_grey"]
        cv2.polylines(layer, np.rint(lines).astype(np.int32), False, (g,) * 3, self.options["drop_width"], cv2.LINE_4)
        if self.options["blur"] > 1:
            layer = cv2.blur(layer, (self.options["blur"],) * 2)
        out = cv2.add(image, layer.reshape(image.shape))
        b = params["brightness"]
        if b != 1:
            out = cv2.LUT(out, np.rint(np.arange(256) * b).astype(np.uint8))
        return out.reshape(image.shape), labels
