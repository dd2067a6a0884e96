"""What every model tool shares: errors, the input's layout and normalization, and writing a target profile.

A target profile (see :mod:`edgeaug.config.targets`) is read from a model's
input by :mod:`edgeaug.models.from_model` (ONNX) and :mod:`edgeaug.models.litert`
(TFLite); both build the same TOML-shaped dict and write it here.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from edgeaug.config.targets import Target, load_target, parse_target, target_toml

#: Integer inputs with no quantization hold raw pixels: (scale, zero point) per dtype.
DEFAULT_RAW_QUANT = {"uint8": (1 / 255, 0), "int8": (1 / 255, -128)}


class ModelError(ValueError):
    """A model cannot be used as asked; the message names the file and the reason."""


def require(module: str, extra: str = "onnx") -> Any:
    """Import an optional dependency or explain how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ModelError(f"{module} is not installed: pip install 'edgeaug[{extra}]'") from None


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, read in 1 MB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def infer_layout(dims: Sequence[Any], layout: Optional[str], where: str, default: Optional[str] = None) -> str:
    """NCHW if only dim 1 is 1 or 3, NHWC if only the last dim is; ``layout`` overrides.

    When both or neither are, ``default`` decides (TFLite: NHWC), else ModelError asks for ``--layout``.
    """
    if len(dims) != 4:
        raise ModelError(f"{where}: input has rank {len(dims)} {list(dims)}; a target needs a 4-d image tensor")
    if layout is not None:
        if layout not in ("NCHW", "NHWC"):
            raise ModelError(f"--layout: {layout!r} is not NCHW or NHWC")
        return layout
    nchw, nhwc = dims[1] in (1, 3), dims[3] in (1, 3)
    if nchw != nhwc:
        return "NCHW" if nchw else "NHWC"
    if default is not None:
        return default
    raise ModelError(f"{where}: cannot tell the layout of input shape {list(dims)}; pass --layout NCHW|NHWC")


def parse_numbers(text: str, where: str) -> Tuple[float, ...]:
    """'0.485,0.456,0.406', '[0.485, 0.456, 0.406]' or '0.5' -> floats."""
    parts = [p for p in re.split(r"[\s,\[\]()]+", text.strip()) if p]
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        raise ModelError(f"{where}: {text!r} is not a list of numbers") from None
    if not vals or not all(np.isfinite(vals)):
        raise ModelError(f"{where}: {text!r} is not a list of finite numbers")
    return vals


def channel_values(
    values: Optional[Sequence[float]], channels: int, default: float, what: str, pixel_units: Optional[bool] = None
) -> Tuple[float, ...]:
    """Broadcast to every channel, in [0, 1] units.

    ``pixel_units`` True divides by 255 (TFLite metadata); None divides only
    when some value is above 1 (e.g. mean 123.675 from a flag or ONNX metadata).
    """
    if values is None:
        return (default,) * channels
    vals = tuple(float(v) for v in values)
    if len(vals) == 1:
        vals = vals * channels
    if len(vals) != channels:
        raise ModelError(f"{what}: {len(vals)} values for {channels} channels")
    if not all(np.isfinite(vals)):
        raise ModelError(f"{what}: {list(vals)} are not finite numbers")
    if pixel_units or (pixel_units is None and max(abs(v) for v in vals) > 1.0):
        vals = tuple(v / 255.0 for v in vals)
    return vals


def spatial(h: Any, w: Any, size: Optional[Tuple[int, int]], where: str) -> Tuple[int, int]:
    """(height, width): the model's fixed dims, or ``size`` for dynamic ones (it must agree with fixed ones)."""
    fixed = [isinstance(d, int) and d > 0 for d in (h, w)]
    if size is None:
        if not all(fixed):
            raise ModelError(f"{where}: input height/width are dynamic ({h}, {w}); pass --size HxW")
        return h, w
    for dim, ok, want, what in ((h, fixed[0], size[0], "height"), (w, fixed[1], size[1], "width")):
        if ok and dim != want:
            raise ModelError(f"--size: the model's {what} is fixed at {dim}, not {want}")
    return int(size[0]), int(size[1])


@dataclass(frozen=True)
class TargetRequest:
    """What ``target from-onnx`` / ``from-tflite`` ask of the derived profile; None means: from the model.

    ``size`` is (height, width) for dynamic spatial dims; ``mean``/``std`` in
    [0, 1] units (values above 1 are read as 0-255); ``device`` overrides the
    profile's device table (name, arch, word_size).
    """

    name: Optional[str] = None
    size: Optional[Tuple[int, int]] = None
    mean: Optional[Sequence[float]] = None
    std: Optional[Sequence[float]] = None
    color: Optional[str] = None
    layout: Optional[str] = None
    input_name: Optional[str] = None
    device: Optional[Dict[str, Any]] = None

    def geometry(self, dims: Sequence[Any], where: str, what: str, default_layout: Optional[str] = None):
        """(layout, channels, height, width) of a 4-d image input; ModelError unless it has 1 or 3 channels."""
        lay = infer_layout(dims, self.layout, where, default_layout)
        c_ax, h_ax, w_ax = (1, 2, 3) if lay == "NCHW" else (3, 1, 2)
        channels = dims[c_ax]
        if not isinstance(channels, int) or channels not in (1, 3):
            raise ModelError(f"{where}: {what} has {channels} channels ({lay}); a target needs 1 or 3")
        return (lay, channels, *spatial(dims[h_ax], dims[w_ax], self.size, where))

    def profile(self, path: str | Path, inp: Dict[str, Any]) -> Dict[str, Any]:
        """The TOML-shaped target: ``inp`` with a name and device (by default the model's file name)."""
        dev = {"name": Path(path).stem, "arch": "any", "word_size": 64, **(self.device or {})}
        return {"name": self.name or Path(path).stem, "device": dev, "input": inp}


def write_target_file(target: Dict[str, Any], out: str | Path, command: str, model_path: str | Path) -> Target:
    """Validate a derived target dict (with its ``name``), write it as TOML at ``out`` and load it back."""
    t = dict(target)
    name = t.pop("name")
    parse_target(t, name, str(out))  # fail before writing anything invalid
    comment = f"Target derived by `edgeaug {command}` from {Path(model_path).name}\n(sha256 {file_sha256(model_path)})."
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(target_toml(t, comment), encoding="utf-8")
    return load_target(out)
