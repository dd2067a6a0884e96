"""Lens distortion (OpenCV's camera model) and the ``camera`` op built on a camera profile.

The source image is taken as an ideal pinhole image; the output is what the
lens makes of it.  A source point maps to the output exactly as
``cv2.projectPoints`` maps its normalized ray (the forward map, used for
labels, is analytic); each output pixel samples the source where OpenCV's
iterative undistortion puts it (the backward map, used for pixels).
OpenCV's pixel coordinates put pixel centres at integers; ours at ``i + 0.5``,
hence the half-pixel shifts below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from edgeaug.ops.base import FieldOp, register

# Reading profiles belongs to edgeaug.config.camera, a layer above the ops; importing it (as
# edgeaug.config.recipe does) installs ``load(name_or_path, base)`` and ``parse(dict, where)`` here.
PROFILES: Dict[str, Callable[..., Any]] = {}
UNDISTORT_ITERATIONS = 40
_DECODE = (np.arange(256, dtype=np.float32) / 255.0) ** np.float32(2.2)  # sRGB-ish to linear, one table
FAR = -1.0e5  # where output pixels with no undistorted preimage sample from: outside, the border fill


def _coeffs(dist: Sequence[float]) -> np.ndarray:
    d = np.zeros(8)
    d[: len(dist)] = dist
    return d


def distort_normalized(xy: np.ndarray, dist: Sequence[float]) -> np.ndarray:
    """OpenCV's distortion of normalized points (n, 2): k1, k2, p1, p2[, k3[, k4, k5, k6]]."""
    k1, k2, p1, p2, k3, k4, k5, k6 = _coeffs(dist)
    x, y = xy[:, 0], xy[:, 1]
    r2 = x * x + y * y
    radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([xd, yd], 1)


def undistort_normalized(xyd: np.ndarray, dist: Sequence[float], tol: float) -> np.ndarray:
    """Invert :func:`distort_normalized` by OpenCV's fixed-point iteration.

    Points whose result does not distort back to within ``tol`` (beyond the
    fold of a strong barrel lens) get :data:`FAR`.
    """
    k1, k2, p1, p2, k3, k4, k5, k6 = _coeffs(dist)
    xd, yd = xyd[:, 0], xyd[:, 1]
    x, y = xd.copy(), yd.copy()
    live = np.arange(len(xd))  # points still moving: each stops once its own step is <= 1e-13
    with np.errstate(all="ignore"):  # points beyond a fold may run off to inf: they end up FAR
        for _ in range(UNDISTORT_ITERATIONS):
            xl, yl, xdl, ydl = x[live], y[live], xd[live], yd[live]
            r2 = xl * xl + yl * yl
            icdist = (1 + r2 * (k4 + r2 * (k5 + r2 * k6))) / (1 + r2 * (k1 + r2 * (k2 + r2 * k3)))
            xn = (xdl - 2 * p1 * xl * yl - p2 * (r2 + 2 * xl * xl)) * icdist
            yn = (ydl - p1 * (r2 + 2 * yl * yl) - 2 * p2 * xl * yl) * icdist
            x[live], y[live] = xn, yn
            # NaN never counts as converged; a pure function of each point's input.
            live = live[~((np.abs(xn - xl) <= 1e-13) & (np.abs(yn - yl) <= 1e-13))]
            if not len(live):
                break
        xy = np.stack([x, y], 1)
        bad = ~(np.abs(distort_normalized(xy, dist) - xyd).max(1) <= tol)
    xy[bad] = FAR
    return xy


class Lens:
    """A camera matrix (continuous coordinates of one frame) and distortion coefficients."""

    def __init__(self, fx: float, fy: float, cx: float, cy: float, dist: Sequence[float]) -> None:
        self.f, self.c, self.dist = np.array([fx, fy]), np.array([cx, cy]), list(dist)

    def distort(self, pts: np.ndarray) -> np.ndarray:
        return distort_normalized((pts - self.c) / self.f, self.dist) * self.f + self.c

    def undistort(self, pts: np.ndarray) -> np.ndarray:
        xy = undistort_normalized((pts - self.c) / self.f, self.dist, tol=1e-3 / float(self.f.max()))
        out = xy * self.f + self.c
        out[xy[:, 0] == FAR] = FAR
        return out


def profile_lens(lens: Dict[str, Any], size: Tuple[float, float]) -> Lens:
    """A profile's lens in a frame of ``size``: the calibration image scaled to cover it, centred.

    Same aspect ratio: a plain scale.  Otherwise the frame is the calibration
    image's centre crop (as a sensor mode of another aspect crops).
    """
    (fx, _, cx), (_, fy, cy), _ = lens["camera_matrix"]
    cw, ch = lens["image_size"]
    s = max(size[0] / cw, size[1] / ch)
    # OpenCV's cx is a pixel index: +0.5 makes it continuous, then scale about the image centre.
    return Lens(
        fx * s, fy * s, (cx + 0.5 - cw / 2) * s + size[0] / 2, (cy + 0.5 - ch / 2) * s + size[1] / 2, lens["distortion"]
    )


@register
class LensDistortion(FieldOp):
    """Radial (k1, k2, k3) and tangential (p1, p2) distortion, OpenCV's model.

    The camera matrix is centred with ``fx = fy = focal x`` half the frame's
    diagonal: the corners sit at normalized radius ``1 / focal``.  k1 < 0 is
    barrel, k1 > 0 pincushion.  For a calibrated camera use ``camera``.

    Speed (written reason, issue 24): about 7x slower than Albumentations'
    ``OpticalDistortion`` (4.3 vs 0.64 ms per 224x224 image, k1 = -0.1).
    That transform samples each output pixel at its own *distorted*
    coordinates (the forward polynomial, no iteration), so its output is the
    undistortion of the input.  This op outputs what the lens makes of a
    pinhole image, with labels where ``cv2.projectPoints`` puts them: every
    output pixel needs the polynomial's inverse, OpenCV's fixed-point
    iteration (up to 40 steps), run on a 4-px grid and densely only near a
    strong barrel's fold, where the map is too steep to interpolate.
    """

    name = "lens_distortion"
    RANGES = {
        "k1": ((-0.15, 0.15), (-1.0, 1.0)),
        "k2": ((0.0, 0.0), (-1.0, 1.0)),
        "p1": ((0.0, 0.0), (-0.05, 0.05)),
        "p2": ((0.0, 0.0), (-0.05, 0.05)),
        "k3": ((0.0, 0.0), (-1.0, 1.0)),
        "focal": ((1.0, 1.0), (0.25, 4.0)),
    }

    def is_identity(self, params):
        return not any(params[k] for k in ("k1", "k2", "p1", "p2", "k3"))

    def lens(self, params, size) -> Lens:
        f = params["focal"] * float(np.hypot(*size)) / 2
        return Lens(f, f, size[0] / 2, size[1] / 2, [params[k] for k in ("k1", "k2", "p1", "p2", "k3")])

    def backward(self, params, size, pts, channel=None):
        return self.lens(params, size).undistort(pts)

    def forward(self, params, size, pts):
        return self.lens(params, size).distort(pts)


@register
class Camera(FieldOp):
    """Make an image look taken by one camera: its lens, sensor noise, white balance and JPEG.

    ``profile`` is a shipped camera (``edgeaug.config.camera.list_cameras``) or
    a profile TOML, relative to the recipe's folder.  When the recipe is read
    the profile's values are copied into ``values`` (so the pack's manifest
    pins them and ``verify --source`` needs no profile file); a recipe that
    already carries ``values`` uses them and reads no file.  The lens is a
    field (resampled once with the other geometry); the rest runs on the
    output image in recipe order: Poisson-Gaussian noise and white-balance
    gains in linear light (sRGB decoded with gamma 2.2), then a JPEG round trip.
    Noise is per output pixel.
    """

    name = "camera"
    pixels = True
    OPTIONS = {"profile": (str, "rpi_camera_module_3"), "values": (dict, {})}

    @classmethod
    def resolve_options(cls, options: Dict[str, Any], base: Optional[Path], fields: Any) -> Dict[str, Any]:
        if options["values"]:
            prof = PROFILES["parse"](options["values"], f"{fields.where}: {fields.prefix}.values")
        else:
            prof = PROFILES["load"](options["profile"], base)
        return {**options, "values": prof.to_dict()}

    def profile(self) -> Dict[str, Any]:
        if not self.options["values"]:  # built directly, not from a recipe
            self.options["values"] = PROFILES["load"](self.options["profile"], None).to_dict()
        return self.options["values"]

    def sample(self, rng, size):
        prof = self.profile()
        pick = lambda lo_hi: float(lo_hi[0] + (lo_hi[1] - lo_hi[0]) * rng.random())  # noqa: E731
        q = prof["jpeg"]["quality"]
        return {
            "shot": pick(prof["noise"]["shot"]),
            "read": pick(prof["noise"]["read"]),
            "wb": [pick(prof["white_balance"]["red"]), pick(prof["white_balance"]["blue"])],
            "quality": int(rng.integers(q[0], q[1] + 1)) if q[1] > 0 else 0,
            "seed": int(rng.integers(0, 2**31)),
        }

    def backward(self, params, size, pts, channel=None):
        return profile_lens(self.profile()["lens"], size).undistort(pts)

    def forward(self, params, size, pts):
        return profile_lens(self.profile()["lens"], size).distort(pts)

    def apply(self, image, labels, params):
        import cv2

        lin = _DECODE[image]
        rng = np.random.Generator(np.random.PCG64(int(params["seed"])))
        sd = np.sqrt(params["shot"] * lin + params["read"] ** 2)
        lin = lin + sd * rng.standard_normal(lin.shape, np.float32)
        if image.shape[2] == 3:
            lin *= np.array([params["wb"][0], 1.0, params["wb"][1]], np.float32)
        out = np.rint(255.0 * np.clip(lin, 0, 1) ** (1 / 2.2)).astype(np.uint8)
        if params["quality"] > 0:
            ok, buf = cv2.imencode(
                ".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, params["quality"]]
            )
            out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return out, labels
