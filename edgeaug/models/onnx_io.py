"""ONNX models: loading, and finding the quantizer on the input.

For a statically quantized (QDQ) model the input's QuantizeLinear gives the
pack's scale and zero point.  That node is found by
following the graph from the input through shape-only ops (Reshape, Cast,
Transpose, ...), since exporters do not always put it first.  In a model whose
input quantizer was removed (``edgeaug adapt-model``), the integer input feeds
a DequantizeLinear with the same scale and zero point; in an adapted int8
model it feeds edgeaug's dequantizing head in front of the kept quantizer.

``onnx`` and ``onnxruntime`` are optional and imported only when used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from edgeaug.models.profile import ModelError, require

#: Ops that only move or relabel values; the input quantizer may sit behind them.
PASS_THROUGH = ("Reshape", "Cast", "Transpose", "Identity", "Flatten", "Squeeze", "Unsqueeze")
#: ONNX TensorProto element types a target can hold.
ELEM_DTYPES = {1: "float32", 10: "float16", 2: "uint8", 3: "int8"}
DTYPE_ELEMS = {v: k for k, v in ELEM_DTYPES.items()}
#: Name prefix of the Cast/Sub/Mul head ``adapt-model`` puts in front of an int8 input's quantizer.
ADAPT_HEAD = "edgeaug_int8_head_"


def load_model(path: str | Path) -> Any:
    """Parse an ONNX file into a ModelProto; unreadable files raise ModelError."""
    onnx = require("onnx")
    try:
        return onnx.load(str(path))
    except OSError as e:
        raise ModelError(f"{path}: cannot read: {e.strerror or e}") from None
    except Exception as e:  # protobuf's DecodeError and friends: not an ONNX file
        raise ModelError(f"{path}: not a readable ONNX model: {type(e).__name__}: {e}") from None


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
