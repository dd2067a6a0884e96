"""Tiny ONNX models built with onnx.helper, for the ONNX tests (import after importorskip)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

import numpy as np


def _save(nodes, inputs, outputs, inits, path: Path, opset: int = 13, meta: Optional[dict] = None) -> Path:
    import onnx
    from onnx import helper, numpy_helper

    graph = helper.make_graph(
        nodes, path.stem, inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    for k, v in (meta or {}).items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def conv_classifier(path: Path, classes: int = 4, size: int = 8, seed: int = 0, meta: Optional[dict] = None) -> Path:
    """Float NCHW (N, 3, size, size) -> Conv -> Relu -> GlobalAveragePool -> Flatten -> logits."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    inits = {
        "W": (rng.normal(size=(classes, 3, 3, 3)) * 0.5).astype(np.float32),
        "B": rng.normal(size=(classes,)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["logits"]),
    ]
    return _save(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        inits,
        path,
        meta=meta,
    )


def nhwc_mlp(
    path: Path,
    h: int = 8,
    w: int = 8,
    c: int = 1,
    classes: int = 3,
    seed: int = 0,
    cast: bool = True,
    meta: Optional[dict] = None,
) -> Path:
    """Float NHWC (N, h, w, c) -> [Cast] -> Reshape (N, h*w*c) -> MatMul+Add -> Relu -> MatMul+Add."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    d = h * w * c
    inits = {
        "shape": np.array([-1, d], np.int64),
        "W1": (rng.normal(size=(d, 16)) / np.sqrt(d)).astype(np.float32),
        "b1": rng.normal(size=(16,)).astype(np.float32) * 0.1,
        "W2": (rng.normal(size=(16, classes)) / 4).astype(np.float32),
        "b2": np.zeros(classes, np.float32),
    }
    nodes = [helper.make_node("Cast", ["x"], ["xc"], to=TensorProto.FLOAT)] if cast else []
    nodes += [
        helper.make_node("Reshape", ["xc" if cast else "x", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W1"], ["m1"]),
        helper.make_node("Add", ["m1", "b1"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["r1"]),
        helper.make_node("MatMul", ["r1", "W2"], ["m2"]),
        helper.make_node("Add", ["m2", "b2"], ["logits"]),
    ]
    return _save(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", h, w, c])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        inits,
        path,
        meta=meta,
    )


class ArrayReader:
    """A minimal CalibrationDataReader over a list of arrays."""

    def __init__(self, name: str, arrays: Iterable[np.ndarray]) -> None:
        self.name, self.arrays = name, list(arrays)
        self.i = 0

    def get_next(self):
        if self.i >= len(self.arrays):
            return None
        self.i += 1
        return {self.name: self.arrays[self.i - 1]}


def quantize(src: Path, dst: Path, reader, activation: str = "uint8", per_channel: bool = False) -> Path:
    """Static QDQ quantization with onnxruntime (weights int8)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    act = QuantType.QUInt8 if activation == "uint8" else QuantType.QInt8
    quantize_static(
        str(src),
        str(dst),
        reader,
        quant_format=QuantFormat.QDQ,
        activation_type=act,
        weight_type=QuantType.QInt8,
        per_channel=per_channel,
    )
    return dst


def image_model(path: Path, kind: str = "invert", layout: str = "NCHW", size=("H", "W"), noise: bool = False) -> Path:
    """Image-to-image float models on [0, 1]: invert (1 - x), blur (3x3 box), or x + 0.1 * noise."""
    from onnx import TensorProto, helper

    h, w = size
    shape = ["N", 3, h, w] if layout == "NCHW" else ["N", h, w, 3]
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)]
    inits, nodes = {}, []
    if kind == "invert":
        inits["one"] = np.array(1.0, np.float32)
        nodes.append(helper.make_node("Sub", ["one", "image"], ["y0"]))
    elif kind == "blur":
        assert layout == "NCHW"
        inits["K"] = np.full((3, 1, 3, 3), 1 / 9, np.float32)
        nodes.append(helper.make_node("Conv", ["image", "K"], ["y0"], group=3, pads=[1, 1, 1, 1]))
    else:
        raise ValueError(kind)
    if noise:
        inputs.append(helper.make_tensor_value_info("noise", TensorProto.FLOAT, shape))
        inits["amp"] = np.array(0.1, np.float32)
        nodes += [helper.make_node("Mul", ["noise", "amp"], ["n1"]), helper.make_node("Add", ["y0", "n1"], ["out"])]
    else:
        nodes.append(helper.make_node("Identity", ["y0"], ["out"]))
    return _save(nodes, inputs, [helper.make_tensor_value_info("out", TensorProto.FLOAT, shape)], inits, path)
