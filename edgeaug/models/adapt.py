"""Adapting a model to take the pack's tensor as is (``edgeaug adapt-model``).

* A statically quantized (QDQ) model takes float input and quantizes it with a
  QuantizeLinear.  Removing that node and giving the graph an integer input
  lets it take the pack's pre-quantized bytes; since QuantizeLinear rounds half
  to even and saturates, ``clip(rint(x / scale) + zp)`` fed to the adapted
  model gives bit-identical outputs to ``x`` fed to the original.
* A float model can instead get a uint8 NHWC pixel input with a Cast, the
  normalization ``(p / 255 - mean) / std`` and (for NCHW models) a Transpose
  inserted in front (``insert_preprocess``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from edgeaug.models.from_model import meta_numbers
from edgeaug.models.onnx_io import ADAPT_HEAD, DTYPE_ELEMS, find_input_quant, graph_input, input_signature, load_model
from edgeaug.models.profile import ModelError, channel_values, infer_layout, require


@dataclass(frozen=True)
class Adapted:
    """What :func:`adapt_model` did, for the command's report."""

    kind: str  # "qdq" (input quantizer removed) or "preprocess"
    input_name: str
    dtype: str  # the new input dtype
    shape: Tuple[Any, ...]
    scale: float = 1 / 255
    zero_point: int = 0


def adapt_model(
    src: str | Path,
    dst: str | Path,
    insert_preprocess: bool = False,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    layout: Optional[str] = None,
    input_name: Optional[str] = None,
) -> Adapted:
    """Write ``dst``: ``src`` taking the pack's integer tensor directly.

    QDQ models lose their input QuantizeLinear.  Float models are refused
    unless ``insert_preprocess``; ``mean``/``std`` then default to the model's
    metadata (keys ``mean``, ``std``), else 0 / 1.
    """
    onnx = require("onnx")
    where = str(src)
    model = load_model(src)
    vi = graph_input(model, input_name, where)
    dims, dtype = input_signature(vi, where)
    quant, reason = find_input_quant(model, vi.name, where)
    if quant is not None and not quant.removable:
        raise ModelError(f"{where}: input {vi.name!r} is already {dtype} feeding a DequantizeLinear: nothing to adapt")
    if quant is not None and quant.dtype == "int8":
        add_dequant_head(model, vi, quant)
        res = Adapted("qdq", vi.name, quant.dtype, tuple(dims), quant.scale, quant.zero_point)
        note = (
            f"int8 input dequantized in front of the kept QuantizeLinear: scale={quant.scale!r} "
            f"zero_point={quant.zero_point}"
        )
    elif quant is not None:
        remove_input_quant(model, vi, quant)
        res = Adapted("qdq", vi.name, quant.dtype, tuple(dims), quant.scale, quant.zero_point)
        note = f"input QuantizeLinear removed: {quant.dtype} scale={quant.scale!r} zero_point={quant.zero_point}"
    elif insert_preprocess:
        if not dtype.startswith("float"):
            raise ModelError(f"{where}: input {vi.name!r} is {dtype}, not float: nothing to preprocess")
        lay = infer_layout(dims, layout, where)
        meta = {p.key: p.value for p in model.metadata_props}
        c = dims[1 if lay == "NCHW" else 3]
        mean = channel_values(mean if mean is not None else meta_numbers(meta, "mean", where), c, 0.0, "mean")
        std = channel_values(std if std is not None else meta_numbers(meta, "std", where), c, 1.0, "std")
        shape = add_preprocess(model, vi, dims, dtype, lay, mean, std)
        _set_meta(model, mean=",".join(["0"] * c), std=",".join(["1"] * c))  # the input is raw pixels now
        res = Adapted("preprocess", vi.name, "uint8", shape)
        note = f"uint8 NHWC pixel input; inserted (p/255 - {list(mean)}) / {list(std)}, layout {lay}"
    else:
        raise ModelError(
            f"{where}: no input QuantizeLinear to remove ({reason}); "
            f"use --insert-preprocess to give a float model a uint8 NHWC input"
        )
    _set_meta(model, **{"edgeaug.adapted": note})
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # onnx raises ValidationError / InferenceError
        raise ModelError(f"{where}: the adapted model does not validate: {e}") from None
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return res


def remove_input_quant(model: Any, vi: Any, quant: Any) -> None:
    """Drop the input QuantizeLinear (and Casts before it); its consumers read the integer input."""
    graph = model.graph
    q = quant.node
    if q.output[0] in {o.name for o in graph.output}:
        raise ModelError(f"the input QuantizeLinear's output {q.output[0]!r} is a graph output")
    feed = q.input[0]
    for node in quant.path:  # Casts would turn the integers back into floats
        if node.op_type == "Cast":
            _rename_uses(graph, node.output[0], node.input[0])
            feed = node.input[0] if feed == node.output[0] else feed
            graph.node.remove(node)
    _rename_uses(graph, q.output[0], feed)
    graph.node.remove(q)
    vi.type.tensor_type.elem_type = DTYPE_ELEMS[quant.dtype]
    stale = {n.output[0] for n in quant.path} | {q.output[0]}  # gone, or a new element type
    for info in [v for v in graph.value_info if v.name in stale]:
        graph.value_info.remove(info)


def add_dequant_head(model: Any, vi: Any, quant: Any) -> None:
    """Give an int8-activation QDQ model an int8 input while keeping its QuantizeLinear.

    Removing the quantizer (as for uint8) is not portable for int8: on x86 CPUs
    without VNNI, onnxruntime's QDQS8ToU8Transformer rewrites each int8
    QuantizeLinear->DequantizeLinear *pair* to uint8 and fuses it into a u8s8
    QLinearConv, while a bare int8 input feeding a DequantizeLinear has no pair,
    so the adapted graph would run a different kernel (float Conv) and differ.
    Instead the input goes through Cast, ``- zero_point``, ``* scale`` into the
    original quantizer, which gives back the same integers exactly
    (``rint((q - zp) * s / s) + zp == q``), and the rest of the graph is the
    original, so onnxruntime makes the same choices on every CPU.  A real
    DequantizeLinear would not do: onnxruntime folds a DQ->Q pair away.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph, name = model.graph, vi.name
    if quant.path:  # Casts in front of the quantizer are replaced by ours
        raise ModelError(
            f"input {name!r} reaches its int8 QuantizeLinear through "
            f"{[n.op_type for n in quant.path]}; only a direct int8 quantizer can be adapted"
        )
    k_zp, k_scale = _fresh(graph, ADAPT_HEAD + "zero_point"), _fresh(graph, ADAPT_HEAD + "scale")
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(quant.zero_point, np.float32), k_zp),
            numpy_helper.from_array(np.array(quant.scale, np.float32), k_scale),
        ]
    )
    t = [_fresh(graph, f"{ADAPT_HEAD}{i}") for i in range(3)]
    nodes = [
        helper.make_node("Cast", [name], [t[0]], to=TensorProto.FLOAT, name=t[0]),
        helper.make_node("Sub", [t[0], k_zp], [t[1]], name=t[1]),
        helper.make_node("Mul", [t[1], k_scale], [t[2]], name=t[2]),
    ]
    quant.node.input[0] = t[2]
    for i, node in enumerate(nodes):
        graph.node.insert(i, node)
    vi.type.tensor_type.elem_type = DTYPE_ELEMS["int8"]


def add_preprocess(
    model: Any, vi: Any, dims: Sequence[Any], dtype: str, layout: str, mean: Sequence[float], std: Sequence[float]
) -> Tuple[Any, ...]:
    """Give the float input ``vi`` a uint8 NHWC pixel input in front: Cast, Transpose, Mul, Add."""
    from onnx import TensorProto, helper, numpy_helper

    graph, name = model.graph, vi.name
    inner = _fresh(graph, name + "_normalized")
    _rename_uses(graph, name, inner)
    c = len(mean)
    bshape = (1, c, 1, 1) if layout == "NCHW" else (1, 1, 1, c)
    scale = np.asarray([1.0 / (255.0 * s) for s in std], np.float32).reshape(bshape)
    bias = np.asarray([-m / s for m, s in zip(mean, std)], np.float32).reshape(bshape)
    k_scale, k_bias = _fresh(graph, name + "_pre_scale"), _fresh(graph, name + "_pre_bias")
    graph.initializer.extend([numpy_helper.from_array(scale, k_scale), numpy_helper.from_array(bias, k_bias)])
    t = [_fresh(graph, f"{name}_pre{i}") for i in range(4)]
    nodes = [helper.make_node("Cast", [name], [t[0]], to=TensorProto.FLOAT)]
    if layout == "NCHW":
        nodes.append(helper.make_node("Transpose", [t[0]], [t[1]], perm=[0, 3, 1, 2]))
    else:
        nodes.append(helper.make_node("Identity", [t[0]], [t[1]]))
    nodes.append(helper.make_node("Mul", [t[1], k_scale], [t[2]]))
    if dtype == "float32":
        nodes.append(helper.make_node("Add", [t[2], k_bias], [inner]))
    else:  # compute in float32, hand the model its own float type
        nodes += [
            helper.make_node("Add", [t[2], k_bias], [t[3]]),
            helper.make_node("Cast", [t[3]], [inner], to=DTYPE_ELEMS[dtype]),
        ]
    for i, node in enumerate(nodes):
        graph.node.insert(i, node)
    nhwc = [dims[0], dims[2], dims[3], dims[1]] if layout == "NCHW" else list(dims)
    new = helper.make_tensor_value_info(name, TensorProto.UINT8, nhwc)
    vi.CopyFrom(new)
    return tuple(nhwc)


def _rename_uses(graph: Any, old: str, new: str) -> None:
    """Point every node input (including subgraphs' outer references) named ``old`` at ``new``."""
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                _rename_uses(sub, old, new)


def _fresh(graph: Any, base: str) -> str:
    used = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    used |= {o for n in graph.node for o in n.output}
    name, k = base, 1
    while name in used:
        name, k = f"{base}_{k}", k + 1
    return name


def _set_meta(model: Any, **kv: str) -> None:
    for key, value in kv.items():
        for p in model.metadata_props:
            if p.key == key:
                p.value = value
                break
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
