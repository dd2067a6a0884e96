"""Device target profiles: the exact input tensor of one device's model.

A profile is a TOML file (the shipped ones: :func:`shipped_target_dir`) validated into a frozen
:class:`Target`.  :func:`quantize` turns an augmented uint8 image into that
tensor; the loader never converts anything afterwards.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

import numpy as np

from edgeaug.config.fields import ConfigError, Fields, load_toml
from edgeaug.device.format import DTYPES, FormatError, tensor_shape

LAYOUTS = ("NHWC", "NCHW")
COLORS = {"RGB": 3, "BGR": 3, "GRAY": 1}
QRANGE = {"uint8": (0, 255), "int8": (-128, 127)}


def shipped_target_dir() -> Path:
    """The folder of the shipped profiles.

    In a source checkout (editable install, or PYTHONPATH) it is the top-level
    targets/, the one to edit; an installed wheel holds it as the package data
    edgeaug/config/profiles/ (pyproject maps targets/ there).  A folder beside
    the package that is not this project's checkout (site-packages/targets of
    another distribution) is never read.
    """
    root = Path(__file__).resolve().parents[2]
    if _is_checkout(root):
        return root / "targets"
    from importlib.resources import files

    return Path(str(files("edgeaug.config") / "profiles"))


def _is_checkout(root: Path) -> bool:
    try:
        text = (root / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return False
    return (root / "targets").is_dir() and 'name = "edgeaug"' in text


@dataclass(frozen=True)
class Device:
    name: str
    arch: str  # "aarch64", "armv7l", "x86_64" or "any"
    word_size: int  # 32 or 64


@dataclass(frozen=True)
class Target:
    """A validated device profile; ``to_dict`` is what the manifest stores."""

    name: str
    device: Device
    input_name: str
    height: int
    width: int
    channels: int
    layout: str
    color: str
    dtype: str
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    scale: float = 1.0
    zero_point: int = 0
    # How the build stores tensors: (codec, level) for edgeaug.device.codec; not a device property,
    # so not in to_dict (the manifest's target): the manifest records it under "compression".
    compress: Tuple[str, int] = ("none", 0)

    @property
    def shape(self) -> Tuple[int, ...]:
        return tensor_shape(self.to_dict())

    @property
    def size(self) -> Tuple[int, int]:
        """(width, height), the order OpenCV wants."""
        return self.width, self.height

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        del d["compress"]
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d


def list_targets() -> List[Path]:
    """Shipped profiles, by name."""
    d = shipped_target_dir()
    return sorted(d.glob("*.toml"), key=lambda p: p.stem) if d.is_dir() else []


def load_target(name_or_path: str | Path) -> Target:
    """Load a shipped profile by name, or any profile file by path."""
    p = Path(name_or_path)
    if p.suffix != ".toml" or not p.exists():
        shipped = shipped_target_dir() / f"{name_or_path}.toml"
        if len(p.parts) != 1 or not shipped.is_file():
            names = ", ".join(t.stem for t in list_targets())
            raise ConfigError(f"unknown target {str(name_or_path)!r}: not a file and not one of: {names}")
        p = shipped
    return parse_target(load_toml(p), p.stem, p.name)


def target_toml(target: dict, comment: str = "") -> str:
    """A target table (``device`` and ``input``, no name) as TOML text that :func:`load_target` reads.

    Written with tomli-w, so any string (quotes, control or non-BMP characters
    in a model's input name) comes out as valid TOML.
    """
    import tomli_w  # the [build] extra; only writing targets needs it

    head = "".join(f"# {line}\n" for line in comment.splitlines())
    body = {"device": dict(target["device"]), "input": dict(target["input"])}
    return head + tomli_w.dumps(body)


def parse_target(data: dict, name: str, where: str = "<target>") -> Target:
    """Validate a parsed TOML table into a Target; errors name file and field."""
    top = Fields(data, where)
    dev, inp, pack = top.sub("device"), top.sub("input"), top.sub("pack", required=False)
    top.done()
    device = Device(dev.str("name"), dev.str("arch"), dev.int("word_size"))
    if device.word_size not in (32, 64):
        dev.fail("word_size", "must be 32 or 64")
    dev.done()
    color = inp.str("color", choices=COLORS)
    channels = inp.int("channels", lo=1, hi=4)
    if channels != COLORS[color]:
        inp.fail("channels", f"{channels} does not match color {color} ({COLORS[color]} channels)")
    dtype = inp.str("dtype", choices=DTYPES)
    kw = dict(
        name=name,
        device=device,
        input_name=inp.str("name", default="input"),
        height=inp.int("height", lo=1, hi=8192),
        width=inp.int("width", lo=1, hi=8192),
        channels=channels,
        layout=inp.str("layout", choices=LAYOUTS),
        color=color,
        dtype=dtype,
        mean=inp.nums("mean", channels, default=[0.0] * channels, lo=-1e6, hi=1e6),
        std=inp.nums("std", channels, default=[1.0] * channels, lo=1e-12, hi=1e6),
    )
    if dtype in QRANGE:
        kw["scale"] = inp.num("scale", lo=1e-12, hi=1e6)
        lo, hi = QRANGE[dtype]
        kw["zero_point"] = inp.int("zero_point", default=0, lo=lo, hi=hi)
    inp.done()
    kw["compress"] = _pack_storage(pack)
    return Target(**kw)


def _pack_storage(pack: Fields) -> Tuple[str, int]:
    """The optional ``[pack]`` table: how ``edgeaug build`` stores tensors for this target unless told.

    ``compress = "none" | "zlib" | "zstd"`` and ``level`` (the codec's default when left out).
    """
    from edgeaug.device.codec import CODECS, DEFAULT_LEVELS, LEVEL_RANGES

    codec = pack.str("compress", default="none", choices=CODECS)
    lo, hi = LEVEL_RANGES[codec]
    level = pack.int("level", default=DEFAULT_LEVELS[codec], lo=lo, hi=hi)
    pack.done()
    return codec, level


def target_from_dict(d: dict) -> Target:
    """Rebuild a Target from a manifest's ``target`` entry (types checked by the loader); a missing field is a
    FormatError naming it."""
    names = [f.name for f in dataclasses.fields(Target) if f.name != "compress"]
    missing = [f"target.{k}" for k in names if k not in d] + [
        f"target.device.{f.name}" for f in dataclasses.fields(Device) if _missing(d.get("device"), f.name)
    ]
    if missing:
        raise FormatError(f"manifest: {', '.join(missing)}: missing (this command needs the whole target)")
    kw = {k: d[k] for k in names}
    dev = {f.name: d["device"][f.name] for f in dataclasses.fields(Device)}
    return Target(**{**kw, "device": Device(**dev), "mean": tuple(d["mean"]), "std": tuple(d["std"])})


def _missing(table, key: str) -> bool:
    return not isinstance(table, dict) or key not in table


def quantization_lut(t: Target) -> np.ndarray:
    """(256, channels) table from a pixel value to the stored tensor value.

    Inputs are uint8, so every output is a table lookup: exact, and the same
    on every machine.  ``q = clip(rint(((p / 255) - mean) / std / scale) + zp)``
    for integer dtypes; ``(p / 255 - mean) / std`` cast for float dtypes.
    """
    p = np.arange(256, dtype=np.float64)[:, None] / 255.0
    x = (p - np.asarray(t.mean)) / np.asarray(t.std)
    if t.dtype in QRANGE:
        lo, hi = QRANGE[t.dtype]
        x = np.clip(np.rint(x / t.scale) + t.zero_point, lo, hi)
    return x.astype(np.dtype(DTYPES[t.dtype]))


def to_color(image: np.ndarray, color: str) -> np.ndarray:
    """Convert an RGB uint8 image (H, W, 3) to the target's colour order."""
    if color == "RGB":
        return image
    if color == "BGR":
        return np.ascontiguousarray(image[:, :, ::-1])
    import cv2

    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None]


def quantize(image: np.ndarray, t: Target, lut: np.ndarray | None = None) -> np.ndarray:
    """The target's tensor for one RGB uint8 image of the target's size."""
    if image.shape[:2] != (t.height, t.width) or image.dtype != np.uint8:
        raise ValueError(f"expected uint8 {t.height}x{t.width} image, got {image.dtype} {image.shape}")
    img = to_color(image, t.color)
    lut = quantization_lut(t) if lut is None else lut
    out = lut[img, np.arange(t.channels)]  # (H, W, C) lookup per channel
    if t.layout == "NCHW":
        out = out.transpose(2, 0, 1)
    return np.ascontiguousarray(out)
