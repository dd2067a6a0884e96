"""Reading a target profile out of an ONNX model (``edgeaug target from-onnx``).

The model is the source of truth for the tensor a pack must hold: its input
name, shape, dtype and layout, and for a statically quantized (QDQ) model the
scale and zero point of the input's QuantizeLinear.  That node is found by
following the graph from the input through shape-only ops (Reshape, Cast,
Transpose, ...), since exporters do not always put it first.  In a model whose
input quantizer was removed (``edgeaug adapt-model``), the integer input feeds
a DequantizeLinear with the same scale and zero point; in an adapted int8
model it feeds edgeaug's dequantizing head in front of the kept quantizer.

``onnx`` and ``onnxruntime`` are optional and imported only when used.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

#: Ops that only move or relabel values; the input quantizer may sit behind them.
PASS_THROUGH = ("Reshape", "Cast", "Transpose", "Identity", "Flatten", "Squeeze", "Unsqueeze")
#: ONNX TensorProto element types a target can hold.
ELEM_DTYPES = {1: "float32", 10: "float16", 2: "uint8", 3: "int8"}
DTYPE_ELEMS = {v: k for k, v in ELEM_DTYPES.items()}
#: Name prefix of the Cast/Sub/Mul head ``adapt-model`` puts in front of an int8 input's quantizer.
ADAPT_HEAD = "edgeaug_int8_head_"
DEFAULT_RAW_QUANT = {"uint8": (1 / 255, 0), "int8": (1 / 255, -128)}  # integer input, no DQ


class ModelError(ValueError):
    """A model cannot be used as asked; the message names the file and the reason."""


def require(module: str) -> Any:
    """Import an optional dependency or explain how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ModelError(f"{module} is not installed: pip install 'edgeaug[onnx]'") from None


def load_model(path: str | Path) -> Any:
    """Parse an ONNX file into a ModelProto; unreadable files raise ModelError."""
    onnx = require("onnx")
    try:
        return onnx.load(str(path))
    except OSError as e:
        raise ModelError(f"{path}: cannot read: {e.strerror or e}") from None
    except Exception as e:  # protobuf's DecodeError and friends: not an ONNX file
        raise ModelError(f"{path}: not a readable ONNX model: {type(e).__name__}: {e}") from None


def session(model: str | Path | bytes, threads: Optional[int] = None) -> Any:
    """A CPU onnxruntime session; ``threads=1`` makes results independent of scheduling."""
    ort = require("onnxruntime")
    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    src = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        where = "<model bytes>" if isinstance(model, bytes) else model
        raise ModelError(f"{where}: onnxruntime cannot load it: {e}") from None


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- graph inspection -----------------------------------------------------------


def graph_input(model: Any, name: Optional[str] = None, where: str = "<model>") -> Any:
    """The model's (single, or named) real input; initializers listed as inputs don't count."""
    inits = {i.name for i in model.graph.initializer}
    real = [i for i in model.graph.input if i.name not in inits]
    if name is not None:
        for i in real:
            if i.name == name:
                return i
        raise ModelError(f"{where}: no input named {name!r}; inputs: {[i.name for i in real]}")
    if len(real) != 1:
        raise ModelError(f"{where}: {len(real)} inputs {[i.name for i in real]}; choose one with --input")
    return real[0]


def input_signature(vi: Any, where: str) -> Tuple[List[Any], str]:
    """(dims, dtype) of a graph input: dims are ints, or the symbolic name / None when dynamic."""
    t = vi.type.tensor_type
    if t.elem_type not in ELEM_DTYPES:
        raise ModelError(
            f"{where}: input {vi.name!r} has element type {t.elem_type}; a pack holds one of {sorted(DTYPE_ELEMS)}"
        )
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
    return dims, ELEM_DTYPES[t.elem_type]


def constant_value(graph: Any, name: str) -> Optional[np.ndarray]:
    """The value of an initializer or Constant node output, else None."""
    from onnx import numpy_helper

    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
    return None


def consumers(graph: Any) -> Dict[str, List[Any]]:
    out: Dict[str, List[Any]] = {}
    for node in graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


@dataclass(frozen=True)
class InputQuant:
    """The quantizer on a model input: ``node`` is a QuantizeLinear (QDQ model) or,
    in an adapted model, the DequantizeLinear the integer input feeds."""

    node: Any
    path: Tuple[Any, ...]  # shape-only nodes between the graph input and ``node``
    scale: float
    zero_point: int
    dtype: str  # "uint8" or "int8"

    @property
    def adapted(self) -> bool:
        """The input already takes integers: a DequantizeLinear, or edgeaug's int8 head."""
        return self.node.op_type == "DequantizeLinear" or any(n.name.startswith(ADAPT_HEAD) for n in self.path)

    @property
    def removable(self) -> bool:
        return not self.adapted


def find_input_quant(model: Any, input_name: str, where: str = "<model>") -> Tuple[Optional[InputQuant], str]:
    """Follow the input through shape-only ops to its quantizer.

    Returns ``(InputQuant, "")`` or ``(None, reason)``; the reason says where the
    walk stopped, for error messages.
    """
    graph, users = model.graph, consumers(model.graph)
    name, path = input_name, []
    while True:
        nodes = users.get(name, [])
        if len(nodes) != 1:
            return None, f"{name!r} feeds {len(nodes)} nodes ({', '.join(n.op_type for n in nodes)})"
        node = nodes[0]
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and node.input[0] == name:
            return _quant_params(graph, node, tuple(path), where), ""
        head = node.name.startswith(ADAPT_HEAD)  # an adapted int8 model's Cast/Sub/Mul
        if (node.op_type not in PASS_THROUGH and not head) or node.input[0] != name:
            return None, f"{name!r} feeds {node.op_type} ({node.name or node.output[0]}), not a QuantizeLinear"
        path.append(node)
        name = node.output[0]


def _quant_params(graph: Any, node: Any, path: Tuple[Any, ...], where: str) -> InputQuant:
    scale = constant_value(graph, node.input[1])
    zp = constant_value(graph, node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if scale is None:
        raise ModelError(f"{where}: {node.op_type} {node.name!r}: scale is not a constant")
    zp = np.zeros((), np.uint8) if zp is None else zp  # ONNX's default zero point
    if zp.dtype.name not in ("uint8", "int8"):
        raise ModelError(f"{where}: input quantized to {zp.dtype.name}; a pack holds uint8 or int8")
    if np.unique(scale).size != 1 or np.unique(zp).size != 1:
        raise ModelError(
            f"{where}: input quantized per channel (scales {scale.ravel().tolist()}); "
            f"a target has one scale and zero point"
        )
    return InputQuant(node, path, float(scale.ravel()[0]), int(zp.ravel()[0]), zp.dtype.name)


def infer_layout(dims: Sequence[Any], layout: Optional[str], where: str) -> str:
    """NCHW if dim 1 is 1 or 3, NHWC if the last dim is; ``layout`` overrides."""
    if len(dims) != 4:
        raise ModelError(f"{where}: input has rank {len(dims)} {list(dims)}; a target needs a 4-d image tensor")
    if layout is not None:
        if layout not in ("NCHW", "NHWC"):
            raise ModelError(f"--layout: {layout!r} is not NCHW or NHWC")
        return layout
    nchw, nhwc = dims[1] in (1, 3), dims[3] in (1, 3)
    if nchw != nhwc:
        return "NCHW" if nchw else "NHWC"
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


def channel_values(values: Optional[Sequence[float]], channels: int, default: float, what: str) -> Tuple[float, ...]:
    """Broadcast one value to every channel; values above 1 are 0-255 units."""
    if values is None:
        return (default,) * channels
    vals = tuple(float(v) for v in values)
    if len(vals) == 1:
        vals = vals * channels
    if len(vals) != channels:
        raise ModelError(f"{what}: {len(vals)} values for {channels} channels")
    if max(abs(v) for v in vals) > 1.0:  # e.g. mean 123.675: pixel units
        vals = tuple(v / 255.0 for v in vals)
    return vals


# --- the target ---------------------------------------------------------------


def target_from_onnx(
    path: str | Path,
    name: Optional[str] = None,
    size: Optional[Tuple[int, int]] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    color: Optional[str] = None,
    layout: Optional[str] = None,
    input_name: Optional[str] = None,
    device: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """The target profile (as a TOML-shaped dict) of the model's image input.

    ``size`` is (height, width) for dynamic spatial dims.  ``mean``/``std``
    default to the model's ``metadata_props`` (keys ``mean``, ``std``) and then
    to 0 / 1; values above 1 are read as 0-255 units.  ``color`` defaults to the
    metadata key ``color``, else RGB (3 channels) or GRAY (1).
    """
    where = str(path)
    model = load_model(path)
    vi = graph_input(model, input_name, where)
    dims, dtype = input_signature(vi, where)
    lay = infer_layout(dims, layout, where)
    c_ax, h_ax, w_ax = (1, 2, 3) if lay == "NCHW" else (3, 1, 2)
    channels = dims[c_ax]
    if not isinstance(channels, int) or channels not in (1, 3):
        raise ModelError(f"{where}: input {vi.name!r} has {channels} channels; a target needs 1 or 3")
    height, width = _spatial(dims[h_ax], dims[w_ax], size, where)
    meta = {p.key: p.value for p in model.metadata_props}
    col = color or meta.get("color", "RGB" if channels == 3 else "GRAY")
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
        channel_values(mean if mean is not None else meta_numbers(meta, "mean", where), channels, 0.0, "mean")
    )
    inp["std"] = list(
        channel_values(std if std is not None else meta_numbers(meta, "std", where), channels, 1.0, "std")
    )
    dev = {"name": Path(path).stem, "arch": "any", "word_size": 64, **(device or {})}
    return {"name": name or Path(path).stem, "device": dev, "input": inp}


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


def _spatial(h: Any, w: Any, size: Optional[Tuple[int, int]], where: str) -> Tuple[int, int]:
    if size is None:
        if not isinstance(h, int) or not isinstance(w, int) or h < 1 or w < 1:
            raise ModelError(f"{where}: input height/width are dynamic ({h}, {w}); pass --size HxW")
        return h, w
    for dim, want, what in ((h, size[0], "height"), (w, size[1], "width")):
        if isinstance(dim, int) and dim > 0 and dim != want:
            raise ModelError(f"--size: the model's {what} is fixed at {dim}, not {want}")
    return int(size[0]), int(size[1])


def meta_numbers(meta: Dict[str, str], key: str, where: str) -> Optional[Tuple[float, ...]]:
    """A metadata_props entry as numbers, or None when the model has no such key."""
    return parse_numbers(meta[key], f"{where}: metadata {key!r}") if key in meta else None


def target_toml(target: Dict[str, Any], comment: str = "") -> str:
    """Format a target dict as the TOML that ``edgeaug.targets.load_target`` reads."""
    lines = [f"# {c}" for c in comment.splitlines()] + ["[device]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in target["device"].items()]
    lines += ["", "[input]"] + [f"{k} = {_toml_value(v)}" for k, v in target["input"].items()]
    return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(int(v) if isinstance(v, int) else float(v))  # repr round-trips a float exactly
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    return "[" + ", ".join(_toml_value(x) for x in v) + "]"


def write_target(model_path: str | Path, out: str | Path, **kw: Any) -> Any:
    """Derive the target from a model, validate it, write ``out`` and return the Target."""
    from edgeaug.config.targets import load_target, parse_target

    t = target_from_onnx(model_path, **kw)
    name = t.pop("name")
    parse_target(t, name, str(out))  # fail before writing anything invalid
    comment = (
        f"Target derived by `edgeaug target from-onnx` from {Path(model_path).name}\n"
        f"(sha256 {file_sha256(model_path)})."
    )
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(target_toml(t, comment), encoding="utf-8")
    return load_target(out)
