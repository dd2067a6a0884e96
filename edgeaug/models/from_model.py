"""A target profile read from an ONNX model (``edgeaug target from-onnx``).

The model is the source of truth for the tensor a pack must hold: its input
name, shape, dtype and layout, and for a statically quantized (QDQ) model the
scale and zero point of the input's quantizer (:func:`edgeaug.models.onnx_io.find_input_quant`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from edgeaug.config.targets import Target
from edgeaug.models.onnx_io import find_input_quant, graph_input, input_signature, load_model
from edgeaug.models.profile import (
    DEFAULT_RAW_QUANT,
    TargetRequest,
    channel_values,
    parse_numbers,
    write_target_file,
)


def target_from_onnx(path: str | Path, **kw: Any) -> Dict[str, Any]:
    """The target profile (as a TOML-shaped dict) of the model's image input; ``kw``: :class:`TargetRequest`'s fields.

    ``size`` is (height, width) for dynamic spatial dims.  ``mean``/``std``
    default to the model's ``metadata_props`` (keys ``mean``, ``std``) and then
    to 0 / 1; values above 1 are read as 0-255 units.  ``color`` defaults to the
    metadata key ``color``, else RGB (3 channels) or GRAY (1).
    """
    req, where = TargetRequest(**kw), str(path)
    model = load_model(path)
    vi = graph_input(model, req.input_name, where)
    dims, dtype = input_signature(vi, where)
    lay, channels, height, width = req.geometry(dims, where, f"input {vi.name!r}")
    meta = {p.key: p.value for p in model.metadata_props}
    col = req.color or meta.get("color", "RGB" if channels == 3 else "GRAY")
    inp: Dict[str, Any] = {
        "name": vi.name,
        "height": height,
        "width": width,
        "channels": channels,
        "layout": lay,
        "color": col,
    }
    fields, raw = _dtype_fields(model, vi.name, dtype, where)
    inp.update(fields)
    if raw:
        meta = {}  # metadata normalization describes the model's inside, not the stored bytes
    inp["mean"] = list(
        channel_values(req.mean if req.mean is not None else meta_numbers(meta, "mean", where), channels, 0.0, "mean")
    )
    inp["std"] = list(
        channel_values(req.std if req.std is not None else meta_numbers(meta, "std", where), channels, 1.0, "std")
    )
    return req.profile(path, inp)


def _dtype_fields(model: Any, name: str, dtype: str, where: str) -> Tuple[Dict[str, Any], bool]:
    """dtype (and scale, zero_point) of the stored tensor; True when it holds raw pixels."""
    quant, reason = find_input_quant(model, name, where)
    if quant is not None and quant.removable != dtype.startswith("float"):
        quant = None  # a float input is quantized by Q, an integer one dequantized by DQ
    if quant is None and any(n.op_type == "QuantizeLinear" for n in model.graph.node):
        warnings.warn(
            f"{where}: the model quantizes inside, but not at its input ({reason}): the target keeps the {dtype} input",
            stacklevel=3,
        )
    if quant is not None:
        return {"dtype": quant.dtype, "scale": quant.scale, "zero_point": quant.zero_point}, False
    if dtype in DEFAULT_RAW_QUANT:  # an integer input with no quantizer: raw pixels
        s, zp = DEFAULT_RAW_QUANT[dtype]
        return {"dtype": dtype, "scale": s, "zero_point": zp}, True
    return {"dtype": dtype}, False


def meta_numbers(meta: Dict[str, str], key: str, where: str) -> Optional[Tuple[float, ...]]:
    """A metadata_props entry as numbers, or None when the model has no such key."""
    return parse_numbers(meta[key], f"{where}: metadata {key!r}") if key in meta else None


def write_target(model_path: str | Path, out: str | Path, **kw: Any) -> Target:
    """Derive the target from an ONNX model (``kw``: :func:`target_from_onnx`'s), validate, write ``out``, load it."""
    return write_target_file(target_from_onnx(model_path, **kw), out, "target from-onnx", model_path)
