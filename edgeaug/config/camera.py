"""Camera profiles: a device camera's lens, sensor noise, white balance and JPEG, as TOML data.

A profile (shipped ones in ``edgeaug/config/cameras/``)::

    name = "mycam"
    description = "..."

    [lens]                      # OpenCV's camera model, from a calibration
    image_size = [4608, 2592]   # width, height of the calibration images
    camera_matrix = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]   # pixel centres at integers, as OpenCV
    distortion = [k1, k2, p1, p2, k3]                       # 4, 5 or 8 (rational model) numbers

    [noise]                     # Poisson-Gaussian, on linear signal in [0, 1]:
    shot = [0.0005, 0.004]      #   variance = shot * signal + read^2
    read = [0.001, 0.004]

    [white_balance]             # gains on red and blue (green = 1): the AWB's error
    red = [0.92, 1.08]
    blue = [0.92, 1.08]

    [jpeg]
    quality = [85, 95]          # [0, 0]: no JPEG round trip

Validated into a frozen :class:`CameraProfile`; errors name the file and the
field.  :func:`camera_from_opencv` reads OpenCV's calibration FileStorage YAML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Tuple

from edgeaug.config.fields import ConfigError, Fields, load_toml
from edgeaug.ops import lens

Range = Tuple[float, float]
# Generic estimates for what a calibration does not measure (from-opencv writes them; edit to taste).
GENERIC = {
    "noise": {"shot": [0.0005, 0.004], "read": [0.001, 0.004]},
    "white_balance": {"red": [0.92, 1.08], "blue": [0.92, 1.08]},
    "jpeg": {"quality": [85, 95]},
}


@dataclass(frozen=True)
class CameraProfile:
    name: str
    description: str
    image_size: Tuple[int, int]
    camera_matrix: Tuple[Tuple[float, float, float], ...]
    distortion: Tuple[float, ...]
    shot: Range
    read: Range
    red: Range
    blue: Range
    quality: Tuple[int, int]

    def to_dict(self) -> dict:
        """Plain JSON (lists, numbers), the form a recipe's ``camera`` op stores."""
        return {
            "name": self.name,
            "description": self.description,
            "lens": {
                "image_size": list(self.image_size),
                "camera_matrix": [list(r) for r in self.camera_matrix],
                "distortion": list(self.distortion),
            },
            "noise": {"shot": list(self.shot), "read": list(self.read)},
            "white_balance": {"red": list(self.red), "blue": list(self.blue)},
            "jpeg": {"quality": list(self.quality)},
        }


def camera_dir():
    """The shipped profiles' folder (package data)."""
    from importlib.resources import files

    return files("edgeaug.config") / "cameras"


def list_cameras() -> List[str]:
    """Names of the shipped camera profiles."""
    return sorted(p.name[:-5] for p in camera_dir().iterdir() if p.name.endswith(".toml"))


def load_camera(name_or_path: str, base: Optional[Path] = None) -> CameraProfile:
    """A shipped profile by name, or a profile file (relative paths start at ``base``)."""
    p = Path(name_or_path)
    if p.suffix != ".toml" and len(p.parts) == 1:
        if name_or_path not in list_cameras():
            raise ConfigError(
                f"unknown camera {name_or_path!r}: not a .toml file and not one of: {', '.join(list_cameras())}"
            )
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        text = (camera_dir() / f"{name_or_path}.toml").read_text(encoding="utf-8")
        return parse_camera(tomllib.loads(text), f"{name_or_path}.toml")
    if base is not None and not p.is_absolute():
        p = Path(base) / p
    return parse_camera(load_toml(p), str(p))


def camera_from_dict(d: Any, where: str) -> CameraProfile:
    """Validate a profile's plain form (e.g. as stored in a manifest's recipe)."""
    return parse_camera(d, where)


def _range(f: Fields, key: str, lo: float, hi: float) -> Range:
    a, b = f.nums(key, 2, lo=lo, hi=hi)
    if a > b:
        f.fail(key, f"low {a} is greater than high {b}")
    return a, b


def parse_camera(data: Any, where: str) -> CameraProfile:
    """Validate a parsed profile table; errors name ``where`` (the file) and the field."""
    top = Fields(data, where)
    lens, noise, wb, jpeg = top.sub("lens"), top.sub("noise"), top.sub("white_balance"), top.sub("jpeg")
    name, desc = top.str("name"), top.str("description", default="")
    top.done()
    size = lens.nums("image_size", 2, lo=1, hi=100000)
    if any(v != int(v) for v in size):
        lens.fail("image_size", f"expected two integers, got {list(size)}")
    k = _matrix(lens)
    dist = lens.nums("distortion", None, lo=-1e4, hi=1e4)
    if len(dist) not in (4, 5, 8):
        lens.fail(
            "distortion", f"expected 4, 5 or 8 coefficients (k1, k2, p1, p2[, k3[, k4, k5, k6]]), got {len(dist)}"
        )
    lens.done()
    prof = dict(shot=_range(noise, "shot", 0.0, 1.0), read=_range(noise, "read", 0.0, 0.5))
    noise.done()
    prof.update(red=_range(wb, "red", 0.25, 4.0), blue=_range(wb, "blue", 0.25, 4.0))
    wb.done()
    q = _range(jpeg, "quality", 0, 100)
    if q != (0, 0) and (q[0] < 1 or any(v != int(v) for v in q)):
        jpeg.fail("quality", f"expected integers in 1..100, or [0, 0] for no JPEG, got {list(q)}")
    jpeg.done()
    return CameraProfile(name, desc, (int(size[0]), int(size[1])), k, dist, quality=(int(q[0]), int(q[1])), **prof)


def _matrix(lens: Fields) -> Tuple[Tuple[float, float, float], ...]:
    rows = lens.raw("camera_matrix", None)
    ok = isinstance(rows, list) and len(rows) == 3 and all(isinstance(r, list) and len(r) == 3 for r in rows)
    vals = [v for r in rows for v in r] if ok else []
    if not ok or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in vals):
        lens.fail("camera_matrix", "expected [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (finite numbers)")
    (fx, skew, cx), (r10, fy, cy), last = rows
    if fx <= 0 or fy <= 0:
        lens.fail("camera_matrix", f"focal lengths must be positive, got fx={fx}, fy={fy}")
    if skew != 0 or r10 != 0 or list(last) != [0, 0, 1]:
        lens.fail("camera_matrix", "only [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] is supported (no skew)")
    return tuple(tuple(float(v) for v in r) for r in rows)


def camera_from_opencv(path: Path, name: str) -> CameraProfile:
    """A profile from OpenCV's calibration output (``cv2.FileStorage`` YAML or XML).

    Reads ``camera_matrix``, ``distortion_coefficients``, ``image_width`` and
    ``image_height``; noise, white balance and JPEG get :data:`GENERIC` estimates.
    """
    import cv2
    import numpy as np

    if not Path(path).is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
        ok = fs.isOpened()
    except (cv2.error, SystemError) as e:  # a YAML syntax error surfaces as SystemError
        raise ConfigError(f"{path}: not an OpenCV FileStorage file: {str(e).strip().splitlines()[-1]}") from None
    if not ok:
        raise ConfigError(f"{path}: not an OpenCV FileStorage file")

    def node(key: str):
        n = fs.getNode(key)
        if n.empty():
            raise ConfigError(f"{path}: {key}: missing (OpenCV's calibration sample writes it)")
        return n

    k, d = node("camera_matrix").mat(), node("distortion_coefficients").mat()
    if k is None or k.shape != (3, 3):
        raise ConfigError(f"{path}: camera_matrix: expected a 3x3 matrix, got {None if k is None else k.shape}")
    if d is None or d.size not in (4, 5, 8):
        raise ConfigError(
            f"{path}: distortion_coefficients: expected 4, 5 or 8 numbers, got {None if d is None else d.size}"
        )
    size = []
    for key in ("image_width", "image_height"):
        n = node(key)
        if not n.isInt() or n.real() < 1:
            raise ConfigError(f"{path}: {key}: expected a positive integer")
        size.append(int(n.real()))
    fs.release()
    data = {
        "name": name,
        "description": f"converted from the OpenCV calibration {Path(path).name}",
        "lens": {"image_size": size, "camera_matrix": k.astype(np.float64).tolist(), "distortion": d.ravel().tolist()},
        **GENERIC,
    }
    return parse_camera(data, str(path))


def camera_toml(prof: CameraProfile, comment: str = "") -> str:
    """A profile as TOML text that :func:`load_camera` reads back to the same profile."""
    import tomli_w

    head = "".join(f"# {line}\n" for line in comment.splitlines())
    return head + tomli_w.dumps(prof.to_dict())


lens.PROFILES.update(load=load_camera, parse=camera_from_dict)  # the camera op reads profiles through these
