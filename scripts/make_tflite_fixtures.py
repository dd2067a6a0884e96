#!/usr/bin/env python3
"""Write small LiteRT (TensorFlow Lite) models without TensorFlow.

The ``.tflite`` flatbuffer is written straight from the TFLite schema
(``tensorflow/lite/schema/schema.fbs``, file identifier ``TFL3``) with the
``flatbuffers`` Builder; the optional TFLite Support metadata (a nested
``M001`` flatbuffer in the model's ``TFLITE_METADATA`` buffer) from
``metadata_schema.fbs``.  Field slots are the schema's field ids; every file
this script writes loads and runs in ``ai_edge_litert.interpreter.Interpreter``
(``tests/test_litert.py`` checks the committed fixtures do).

Fixtures (``tests/fixtures/tflite``): each classifies a uniform-ish image by its
mean brightness into 3 classes (dark, mid, bright), so a test can build a tiny
pack of plain gray images and know every answer.

* ``int8_gray.tflite``: full-integer, int8 input (N, 8, 8, 1) scale 1/255,
  zero point -128 (Keras + TFLite converter style), RESHAPE -> FULLY_CONNECTED,
  int8 output; dynamic batch (shape_signature -1).  No metadata.
* ``uint8_edgetpu.tflite``: Edge TPU style, uint8 input (1, 8, 8, 3) scale
  1/128, zero point 128 -> QUANTIZE to int8 -> RESHAPE -> FULLY_CONNECTED ->
  QUANTIZE to uint8 output; fixed batch 1; metadata mean = std = 127.5, RGB.
* ``float32_rgb.tflite``: float32 input (N, 8, 8, 3) in [-1, 1], RESHAPE ->
  FULLY_CONNECTED -> SOFTMAX; metadata mean = std = 127.5, RGB.
* ``int8_per_channel.tflite``: int8 input (1, 8, 8, 3) quantized per channel
  (three scales, quantized_dimension 3) -> DEQUANTIZE: the error case.

:func:`digits_models` writes a float and a full-integer int8 classifier from a
trained scikit-learn MLP (the digits check), :func:`digits_tflite` runs the
whole float-vs-int8 comparison on packs.

    python scripts/make_tflite_fixtures.py [--out tests/fixtures/tflite]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
FIXTURES = REPO / "tests" / "fixtures" / "tflite"

# --- schema constants (tensorflow/lite/schema/schema.fbs) -------------------------
TENSOR_TYPES = {"float32": 0, "float16": 1, "int32": 2, "uint8": 3, "int64": 4, "int8": 9}
OPS = {"DEQUANTIZE": 6, "FULLY_CONNECTED": 9, "RESHAPE": 22, "SOFTMAX": 25, "QUANTIZE": 114}
# BuiltinOptions union members: (union type id, table's field count)
OPTIONS = {
    "FullyConnectedOptions": 8,
    "SoftmaxOptions": 9,
    "ReshapeOptions": 17,
    "DequantizeOptions": 38,
    "QuantizeOptions": 89,
}
ACT = {None: 0, "RELU": 1}
#: the class centres, in the model's float input domain, of the brightness fixtures
CENTRES = {"unit": (0.1, 0.5, 0.9), "signed": (-0.8, 0.0, 0.8)}
CLASS_NAMES = ("0_dark", "1_mid", "2_bright")


class TFLiteWriter:
    """Collects tensors, buffers and operators of one subgraph, then :meth:`build`s the file."""

    def __init__(self, description: str = "edgeaug test fixture") -> None:
        self.description = description
        self.buffers: List[bytes] = [b""]  # buffer 0: the empty sentinel every converter writes
        self.tensors: List[Dict[str, Any]] = []
        self.ops: List[Tuple[int, List[int], List[int], Optional[Tuple[str, Any]]]] = []
        self.opcodes: List[Tuple[int, int]] = []  # (builtin code, version)
        self.metadata: List[Tuple[str, int]] = []

    def tensor(
        self,
        name: str,
        shape: Sequence[int],
        dtype: str,
        data: Optional[np.ndarray] = None,
        scale: Optional[Sequence[float]] = None,
        zero_point: Optional[Sequence[int]] = None,
        quantized_dimension: int = 0,
        signature: Optional[Sequence[int]] = None,
    ) -> int:
        """Add a tensor (constant when ``data`` is given) and return its index."""
        buf = 0
        if data is not None:
            buf = len(self.buffers)
            self.buffers.append(np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<")).tobytes())
        self.tensors.append(
            {
                "name": name,
                "shape": list(shape),
                "type": TENSOR_TYPES[dtype],
                "buffer": buf,
                "scale": None if scale is None else [float(s) for s in scale],
                "zero_point": None if zero_point is None else [int(z) for z in zero_point],
                "qdim": quantized_dimension,
                "signature": None if signature is None else list(signature),
            }
        )
        return len(self.tensors) - 1

    def op(
        self,
        name: str,
        inputs: Sequence[int],
        outputs: Sequence[int],
        version: int = 1,
        options: Optional[Tuple[str, Any]] = None,
    ) -> None:
        """Add an operator; ``options`` is ``(union member, value)``, e.g. ("ReshapeOptions", [-1, 64])."""
        key = (OPS[name], version)
        if key not in self.opcodes:
            self.opcodes.append(key)
        self.ops.append((self.opcodes.index(key), list(inputs), list(outputs), options))

    def add_metadata(self, name: str, data: bytes) -> None:
        self.metadata.append((name, len(self.buffers)))
        self.buffers.append(data)

    # -- serialization ---------------------------------------------------------------

    def build(self, inputs: Sequence[int], outputs: Sequence[int]) -> bytes:
        import flatbuffers

        b = flatbuffers.Builder(4096)

        def ivec(values: Sequence[int], kind: str = "<i4") -> int:
            return b.CreateNumpyVector(np.asarray(values, dtype=kind))

        def tables(offsets: Sequence[int]) -> int:
            b.StartVector(4, len(offsets), 4)
            for off in reversed(offsets):
                b.PrependUOffsetTRelative(off)
            return b.EndVector()

        # Buffer {data:[ubyte] (force_align 16) = 0, offset = 1, size = 2}
        buffers = []
        for data in self.buffers:
            vec = None
            if data:
                b.StartVector(1, len(data), 16)
                b.head -= len(data)
                b.Bytes[b.head : b.head + len(data)] = data
                b.vectorNumElems = len(data)
                vec = b.EndVector()
            b.StartObject(3)
            if vec is not None:
                b.PrependUOffsetTRelativeSlot(0, vec, 0)
            buffers.append(b.EndObject())
        # Tensor {shape 0, type 1, buffer 2, name 3, quantization 4, ..., shape_signature 7}
        tensors = []
        for t in self.tensors:
            name, shape = b.CreateString(t["name"]), ivec(t["shape"])
            sig = ivec(t["signature"]) if t["signature"] is not None else None
            quant = None
            if t["scale"] is not None:
                # QuantizationParameters {min 0, max 1, scale 2, zero_point:[long] 3, ..., quantized_dimension 6}
                scale = b.CreateNumpyVector(np.asarray(t["scale"], "<f4"))
                zp = ivec(t["zero_point"], "<i8")
                b.StartObject(7)
                b.PrependUOffsetTRelativeSlot(2, scale, 0)
                b.PrependUOffsetTRelativeSlot(3, zp, 0)
                b.PrependInt32Slot(6, t["qdim"], 0)
                quant = b.EndObject()
            b.StartObject(8)
            b.PrependUOffsetTRelativeSlot(0, shape, 0)
            b.PrependInt8Slot(1, t["type"], 0)
            b.PrependUint32Slot(2, t["buffer"], 0)
            b.PrependUOffsetTRelativeSlot(3, name, 0)
            if quant is not None:
                b.PrependUOffsetTRelativeSlot(4, quant, 0)
            if sig is not None:
                b.PrependUOffsetTRelativeSlot(7, sig, 0)
            tensors.append(b.EndObject())
        # Operator {opcode_index 0, inputs 1, outputs 2, builtin_options_type 3, builtin_options 4}
        ops = []
        for opcode, ins, outs, options in self.ops:
            opt = self._options(b, ivec, options) if options else None
            vin, vout = ivec(ins), ivec(outs)
            b.StartObject(5)
            b.PrependUint32Slot(0, opcode, 0)
            b.PrependUOffsetTRelativeSlot(1, vin, 0)
            b.PrependUOffsetTRelativeSlot(2, vout, 0)
            if opt is not None:
                b.PrependUint8Slot(3, OPTIONS[options[0]], 0)
                b.PrependUOffsetTRelativeSlot(4, opt, 0)
            ops.append(b.EndObject())
        # SubGraph {tensors 0, inputs 1, outputs 2, operators 3, name 4}
        sg_tensors, sg_in, sg_out, sg_ops = tables(tensors), ivec(inputs), ivec(outputs), tables(ops)
        sg_name = b.CreateString("main")
        b.StartObject(5)
        b.PrependUOffsetTRelativeSlot(0, sg_tensors, 0)
        b.PrependUOffsetTRelativeSlot(1, sg_in, 0)
        b.PrependUOffsetTRelativeSlot(2, sg_out, 0)
        b.PrependUOffsetTRelativeSlot(3, sg_ops, 0)
        b.PrependUOffsetTRelativeSlot(4, sg_name, 0)
        subgraph = b.EndObject()
        # OperatorCode {deprecated_builtin_code:byte 0, custom_code 1, version 2, builtin_code:int 3}
        codes = []
        for code, version in self.opcodes:
            b.StartObject(4)
            b.PrependInt8Slot(0, min(code, 127), 0)  # 127 = PLACEHOLDER_FOR_GREATER_OP_CODES
            b.PrependInt32Slot(2, version, 1)
            b.PrependInt32Slot(3, code, 0)
            codes.append(b.EndObject())
        # Metadata {name 0, buffer 1}
        metas = []
        for name, buf in self.metadata:
            s = b.CreateString(name)
            b.StartObject(2)
            b.PrependUOffsetTRelativeSlot(0, s, 0)
            b.PrependUint32Slot(1, buf, 0)
            metas.append(b.EndObject())
        # Model {version 0, operator_codes 1, subgraphs 2, description 3, buffers 4, metadata_buffer 5, metadata 6}
        v_codes, v_sgs, desc, v_bufs = (
            tables(codes),
            tables([subgraph]),
            b.CreateString(self.description),
            tables(buffers),
        )
        v_meta = tables(metas) if metas else None
        b.StartObject(7)
        b.PrependUint32Slot(0, 3, 0)
        b.PrependUOffsetTRelativeSlot(1, v_codes, 0)
        b.PrependUOffsetTRelativeSlot(2, v_sgs, 0)
        b.PrependUOffsetTRelativeSlot(3, desc, 0)
        b.PrependUOffsetTRelativeSlot(4, v_bufs, 0)
        if v_meta is not None:
            b.PrependUOffsetTRelativeSlot(6, v_meta, 0)
        b.Finish(b.EndObject(), file_identifier=b"TFL3")
        return bytes(b.Output())

    @staticmethod
    def _options(b: Any, ivec: Any, options: Tuple[str, Any]) -> int:
        kind, value = options
        if kind == "FullyConnectedOptions":  # {fused_activation_function:byte 0, weights_format 1, keep_num_dims 2}
            b.StartObject(3)
            b.PrependInt8Slot(0, ACT[value], 0)
        elif kind == "ReshapeOptions":  # {new_shape:[int] 0}
            shape = ivec(value)
            b.StartObject(1)
            b.PrependUOffsetTRelativeSlot(0, shape, 0)
        elif kind == "SoftmaxOptions":  # {beta:float 0}
            b.StartObject(1)
            b.PrependFloat32Slot(0, float(value), 0.0)
        else:  # QuantizeOptions, DequantizeOptions: empty tables
            b.StartObject(0)
        return b.EndObject()


def image_metadata(
    mean: Sequence[float], std: Sequence[float], color: Optional[str] = None, name: str = "edgeaug fixture"
) -> bytes:
    """A TFLite Support ``ModelMetadata`` (``M001``) with the first input's NormalizationOptions.

    ``mean``/``std`` are in the input's raw units as the schema defines them
    (``(x - mean) / std`` of 0-255 pixels), e.g. 127.5 / 127.5 for [-1, 1].
    ``color`` "RGB" or "GRAY" adds ImageProperties.color_space.
    """
    import flatbuffers

    b = flatbuffers.Builder(256)
    v_mean = b.CreateNumpyVector(np.asarray(mean, "<f4"))
    v_std = b.CreateNumpyVector(np.asarray(std, "<f4"))
    b.StartObject(2)  # NormalizationOptions {mean 0, std 1}
    b.PrependUOffsetTRelativeSlot(0, v_mean, 0)
    b.PrependUOffsetTRelativeSlot(1, v_std, 0)
    norm = b.EndObject()
    b.StartObject(2)  # ProcessUnit {options_type 0, options 1}; NormalizationOptions = 1
    b.PrependUint8Slot(0, 1, 0)
    b.PrependUOffsetTRelativeSlot(1, norm, 0)
    unit = b.EndObject()
    content = None
    if color is not None:
        b.StartObject(2)  # ImageProperties {color_space:byte 0, default_size 1}; RGB = 1, GRAYSCALE = 2
        b.PrependInt8Slot(0, {"RGB": 1, "GRAY": 2}[color], 0)
        props = b.EndObject()
        b.StartObject(3)  # Content {content_properties_type 0, content_properties 1, range 2}; ImageProperties = 2
        b.PrependUint8Slot(0, 2, 0)
        b.PrependUOffsetTRelativeSlot(1, props, 0)
        content = b.EndObject()
    b.StartVector(4, 1, 4)
    b.PrependUOffsetTRelative(unit)
    units = b.EndVector()
    t_name = b.CreateString("image")
    b.StartObject(7)  # TensorMetadata {name 0, description 1, dimension_names 2, content 3, process_units 4}
    b.PrependUOffsetTRelativeSlot(0, t_name, 0)
    if content is not None:
        b.PrependUOffsetTRelativeSlot(3, content, 0)
    b.PrependUOffsetTRelativeSlot(4, units, 0)
    tmeta = b.EndObject()
    b.StartVector(4, 1, 4)
    b.PrependUOffsetTRelative(tmeta)
    inputs = b.EndVector()
    b.StartObject(3)  # SubGraphMetadata {name 0, description 1, input_tensor_metadata 2}
    b.PrependUOffsetTRelativeSlot(2, inputs, 0)
    sg = b.EndObject()
    b.StartVector(4, 1, 4)
    b.PrependUOffsetTRelative(sg)
    sgs = b.EndVector()
    m_name, version = b.CreateString(name), b.CreateString("1.0.0")
    b.StartObject(8)  # ModelMetadata {name 0, description 1, version 2, subgraph_metadata 3, ..., min_parser_version 7}
    b.PrependUOffsetTRelativeSlot(0, m_name, 0)
    b.PrependUOffsetTRelativeSlot(3, sgs, 0)
    b.PrependUOffsetTRelativeSlot(7, version, 0)
    b.Finish(b.EndObject(), file_identifier=b"M001")
    return bytes(b.Output())


# --- quantization helpers --------------------------------------------------------


def symmetric_int8(w: np.ndarray) -> Tuple[np.ndarray, float]:
    """Per-tensor symmetric int8 weights (zero point 0), as the TFLite converter's default for FC."""
    scale = float(np.float32(max(float(np.max(np.abs(w))), 1e-8) / 127.0))
    return np.clip(np.rint(w / scale), -127, 127).astype(np.int8), scale


def asymmetric_int8(lo: float, hi: float) -> Tuple[float, int]:
    """(scale, zero point) of an int8 activation covering [lo, hi] (widened to contain 0)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = float(np.float32(max(hi - lo, 1e-8) / 255.0))
    return scale, int(np.clip(np.rint(-128 - lo / scale), -128, 127))


def quantized_bias(b: np.ndarray, in_scale: float, w_scale: float) -> Tuple[np.ndarray, float]:
    scale = float(np.float32(in_scale * w_scale))
    return np.rint(b / scale).astype(np.int32), scale


def _quantized_fc(
    m: TFLiteWriter,
    x: int,
    w: np.ndarray,
    bias: np.ndarray,
    in_scale: float,
    out_scale: float,
    out_zp: int,
    name: str,
    act: Optional[str] = None,
) -> int:
    """int8 FULLY_CONNECTED: weights (out, in) float -> int8 symmetric, bias int32; returns the output tensor."""
    qw, ws = symmetric_int8(w)
    qb, bs = quantized_bias(bias, in_scale, ws)
    tw = m.tensor(f"{name}/weights", qw.shape, "int8", qw, [ws], [0])
    tb = m.tensor(f"{name}/bias", qb.shape, "int32", qb, [bs], [0])
    out = m.tensor(name, [1, w.shape[0]], "int8", scale=[out_scale], zero_point=[out_zp])
    m.op("FULLY_CONNECTED", [x, tw, tb], [out], version=4, options=("FullyConnectedOptions", act))
    return out


def _reshape(m: TFLiteWriter, x: int, n: int, dtype: str, batch: int = -1, **quant: Any) -> int:
    shape = m.tensor("flatten/shape", [2], "int32", np.array([batch, n], np.int32))
    out = m.tensor("flatten", [1, n], dtype, **quant)
    m.op("RESHAPE", [x, shape], [out], options=("ReshapeOptions", [batch, n]))
    return out


def brightness_weights(n: int, centres: Sequence[float]) -> Tuple[np.ndarray, np.ndarray]:
    """FC weights (3, n) and bias scoring ``-(mean(x) - c)^2`` up to a common term: argmax = nearest centre."""
    c = np.asarray(centres, np.float64)
    return np.repeat((2 * c / n)[:, None], n, axis=1), -(c**2)


# --- the fixtures ------------------------------------------------------------------


def int8_gray() -> bytes:
    m = TFLiteWriter("int8 full-integer brightness classifier (Keras-converter style input)")
    s_in, zp_in = 1 / 255, -128
    x = m.tensor(
        "serving_default_image:0", [1, 8, 8, 1], "int8", scale=[s_in], zero_point=[zp_in], signature=[-1, 8, 8, 1]
    )
    flat = _reshape(m, x, 64, "int8", scale=[s_in], zero_point=[zp_in])
    w, bias = brightness_weights(64, CENTRES["unit"])
    s_out, zp_out = asymmetric_int8(-2.5, 2.5)
    y = _quantized_fc(m, flat, w, bias, float(np.float32(s_in)), s_out, zp_out, "StatefulPartitionedCall:0")
    return m.build([x], [y])


def uint8_edgetpu() -> bytes:
    m = TFLiteWriter("uint8-input brightness classifier (Edge TPU style: uint8 in, QUANTIZE to int8)")
    s_in = 1 / 128
    x = m.tensor("input", [1, 8, 8, 3], "uint8", scale=[s_in], zero_point=[128])
    xi = m.tensor("input_int8", [1, 8, 8, 3], "int8", scale=[s_in], zero_point=[0])
    m.op("QUANTIZE", [x], [xi], version=2, options=("QuantizeOptions", None))
    flat = _reshape(m, xi, 192, "int8", batch=1, scale=[s_in], zero_point=[0])
    w, bias = brightness_weights(192, CENTRES["signed"])
    s_out, zp_out = asymmetric_int8(-2.5, 2.5)
    yi = _quantized_fc(m, flat, w, bias, float(np.float32(s_in)), s_out, zp_out, "logits_int8")
    y = m.tensor("logits", [1, 3], "uint8", scale=[s_out], zero_point=[zp_out + 128])
    m.op("QUANTIZE", [yi], [y], version=2, options=("QuantizeOptions", None))
    m.add_metadata("TFLITE_METADATA", image_metadata([127.5], [127.5], "RGB"))
    return m.build([x], [y])


def float32_rgb() -> bytes:
    m = TFLiteWriter("float32 brightness classifier, input in [-1, 1]")
    x = m.tensor("image", [1, 8, 8, 3], "float32", signature=[-1, 8, 8, 3])
    flat = _reshape(m, x, 192, "float32")
    w, bias = brightness_weights(192, CENTRES["signed"])
    tw = m.tensor("fc/weights", w.shape, "float32", w.astype(np.float32))
    tb = m.tensor("fc/bias", bias.shape, "float32", bias.astype(np.float32))
    logits = m.tensor("logits", [1, 3], "float32")
    m.op("FULLY_CONNECTED", [flat, tw, tb], [logits], options=("FullyConnectedOptions", None))
    probs = m.tensor("probs", [1, 3], "float32")
    m.op("SOFTMAX", [logits], [probs], options=("SoftmaxOptions", 1.0))
    m.add_metadata("TFLITE_METADATA", image_metadata([127.5, 127.5, 127.5], [127.5, 127.5, 127.5], "RGB"))
    return m.build([x], [probs])


def int8_per_channel() -> bytes:
    m = TFLiteWriter("int8 input quantized per channel (not representable as a target)")
    scales = [1 / 255, 2 / 255, 4 / 255]
    x = m.tensor("input", [1, 8, 8, 3], "int8", scale=scales, zero_point=[0, 0, 0], quantized_dimension=3)
    y = m.tensor("output", [1, 8, 8, 3], "float32")
    m.op("DEQUANTIZE", [x], [y], version=2, options=("DequantizeOptions", None))
    return m.build([x], [y])


FIXTURE_MODELS = {
    "int8_gray.tflite": int8_gray,
    "uint8_edgetpu.tflite": uint8_edgetpu,
    "float32_rgb.tflite": float32_rgb,
    "int8_per_channel.tflite": int8_per_channel,
}


def write_fixtures(out: Path = FIXTURES) -> List[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, make in FIXTURE_MODELS.items():
        (out / name).write_bytes(make())
        paths.append(out / name)
    return paths


def brightness_images(root: Path, channels: int, per_class: int = 4, size: int = 12, seed: int = 0) -> Path:
    """Plain images (PNG, class folders ``0_dark``, ``1_mid``, ``2_bright``) the fixtures classify exactly."""
    import cv2

    rng = np.random.default_rng(seed)
    for name, level in zip(CLASS_NAMES, (25, 128, 230)):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = np.clip(level + rng.integers(-12, 13, (size, size, channels)), 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / name / f"{i}.png"), img if channels == 3 else img[:, :, 0])
    return root


# --- digits: float and int8 classifiers from scikit-learn weights -----------------


def digits_models(clf: Any, calibration: np.ndarray, out_dir: Path) -> Tuple[Path, Path]:
    """A trained ``MLPClassifier`` (64 -> hidden ReLU -> 10) as two ``.tflite`` files.

    * ``digits_f32.tflite``: float32 input (N, 8, 8, 1) in [0, 1] (metadata
      mean 0, std 255, GRAYSCALE) -> RESHAPE -> FC+ReLU -> FC -> logits.
    * ``digits_i8.tflite``: full-integer as the TFLite converter makes it with
      ``inference_input_type=tf.int8``: int8 input scale 1/255, zero point
      -128; int8 per-tensor symmetric weights, int32 biases; activation ranges
      from ``calibration``, the model inputs (N, 64) or (N, 8, 8, 1) in [0, 1]
      (e.g. :func:`edgeaug.models.litert.representative_dataset` over the float
      pack's train split, concatenated).  No metadata: the target's mean/std
      come from the input's quantization range [0, 1].
    """
    (w1, w2), (b1, b2) = (
        [np.asarray(w, np.float64) for w in clf.coefs_],
        [np.asarray(b, np.float64) for b in clf.intercepts_],
    )
    n_in, hidden, classes = w1.shape[0], w1.shape[1], w2.shape[1]
    x = np.asarray(calibration, np.float64).reshape(-1, n_in)
    h = np.maximum(x @ w1 + b1, 0)
    logits = h @ w2 + b2
    out_dir.mkdir(parents=True, exist_ok=True)

    m = TFLiteWriter("digits MLP, float32")
    xi = m.tensor("digits", [1, 8, 8, 1], "float32", signature=[-1, 8, 8, 1])
    flat = _reshape(m, xi, n_in, "float32")
    t1 = m.tensor("dense/weights", [hidden, n_in], "float32", w1.T.astype(np.float32))
    tb1 = m.tensor("dense/bias", [hidden], "float32", b1.astype(np.float32))
    hid = m.tensor("dense", [1, hidden], "float32")
    m.op("FULLY_CONNECTED", [flat, t1, tb1], [hid], options=("FullyConnectedOptions", "RELU"))
    t2 = m.tensor("logits/weights", [classes, hidden], "float32", w2.T.astype(np.float32))
    tb2 = m.tensor("logits/bias", [classes], "float32", b2.astype(np.float32))
    out = m.tensor("logits", [1, classes], "float32")
    m.op("FULLY_CONNECTED", [hid, t2, tb2], [out], options=("FullyConnectedOptions", None))
    m.add_metadata("TFLITE_METADATA", image_metadata([0.0], [255.0], "GRAY", "digits MLP"))
    f32 = out_dir / "digits_f32.tflite"
    f32.write_bytes(m.build([xi], [out]))

    m = TFLiteWriter("digits MLP, full-integer int8")
    s_in = float(np.float32(1 / 255))
    xi = m.tensor("digits", [1, 8, 8, 1], "int8", scale=[s_in], zero_point=[-128], signature=[-1, 8, 8, 1])
    flat = _reshape(m, xi, n_in, "int8", scale=[s_in], zero_point=[-128])
    s_h, zp_h = asymmetric_int8(0.0, float(h.max()))
    hid = _quantized_fc(m, flat, w1.T, b1, s_in, s_h, zp_h, "dense", act="RELU")
    s_o, zp_o = asymmetric_int8(float(logits.min()), float(logits.max()))
    out = _quantized_fc(m, hid, w2.T, b2, s_h, s_o, zp_o, "logits")
    i8 = out_dir / "digits_i8.tflite"
    i8.write_bytes(m.build([xi], [out]))
    return f32, i8


def digits_tflite(
    work: Path, clf: Any, data: Path, seed: int = 0, val: float = 0.2, calibration_limit: Optional[int] = None
) -> Dict[str, Any]:
    """Float vs int8 LiteRT accuracy on the digits packs, with no TensorFlow.

    ``clf`` is the MLP trained on the train sources of ``data`` (the digits
    class folders); ``seed``/``val`` must be the build's.  Steps: write the
    float model -> ``target from-tflite`` -> float pack -> representative
    dataset over its train split -> int8 model calibrated on it -> ``target
    from-tflite`` -> int8 pack -> ``evaluate_tflite`` both on the val split.
    """
    from edgeaug.builder.pipeline import build
    from edgeaug.models.litert import evaluate_tflite, representative_dataset, write_tflite_target

    recipe = work / "recipe_tflite.toml"
    recipe.write_text('variants = 0\ninclude_original = true\nresize = "squash"\n')  # originals only
    tmp = work / "tflite_tmp"
    f32, _ = digits_models(clf, np.zeros((1, 64)), tmp)  # the float model needs no calibration
    tf = write_tflite_target(f32, work / "targets" / "digits_tflite_f32.toml")
    build(data, work / "digits_tflite_f32.lmdb", tf, recipe, seed=seed, workers=1, val=val)
    calib = np.concatenate(
        [s[0] for s in representative_dataset(work / "digits_tflite_f32.lmdb", split="train", limit=calibration_limit)]
    )
    f32, i8 = digits_models(clf, calib, work)
    tq = write_tflite_target(i8, work / "targets" / "digits_tflite_i8.toml")
    build(data, work / "digits_tflite_i8.lmdb", tq, recipe, seed=seed, workers=1, val=val)
    r_float = evaluate_tflite(work / "digits_tflite_f32.lmdb", f32)
    r_int8 = evaluate_tflite(work / "digits_tflite_i8.lmdb", i8)
    return {
        "val_samples": r_float["samples"],
        "float_accuracy": r_float["accuracy"],
        "int8_accuracy": r_int8["accuracy"],
        "float_samples_per_s": r_float["samples_per_s"],
        "int8_samples_per_s": r_int8["samples_per_s"],
        "calibration_samples": len(calib),
        "float_target": {"dtype": tf.dtype, "mean": list(tf.mean), "std": list(tf.std), "color": tf.color},
        "target": {
            "dtype": tq.dtype,
            "scale": tq.scale,
            "zero_point": tq.zero_point,
            "layout": tq.layout,
            "shape": list(tq.shape),
            "mean": list(tq.mean),
            "std": list(tq.std),
        },
    }


def _check_runs(paths: Iterable[Path]) -> None:
    """Load and invoke every file in the LiteRT interpreter (skipped when it is not installed)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        print("ai_edge_litert not installed: fixtures written but not run")
        return
    for p in paths:
        it = Interpreter(model_path=str(p))
        it.allocate_tensors()
        d = it.get_input_details()[0]
        it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        it.invoke()
        o = it.get_output_details()[0]
        print(
            f"{p.name}: {p.stat().st_size} bytes, input {d['dtype'].__name__} {list(d['shape'])} "
            f"quant {d['quantization']}, output {list(it.get_tensor(o['index']).shape)}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=FIXTURES, help="folder for the fixtures")
    args = ap.parse_args()
    _check_runs(write_fixtures(args.out))
    return 0  # the digits float-vs-int8 check: scripts/digits_check.py


if __name__ == "__main__":
    sys.exit(main())
