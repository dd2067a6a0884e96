"""TFLite flatbuffers written without TensorFlow, for scripts/make_tflite_fixtures.py and the digits check.

The ``.tflite`` flatbuffer is written straight from the TFLite schema (``tensorflow/lite/schema/schema.fbs``, file
identifier ``TFL3``) with the ``flatbuffers`` Builder; the optional TFLite Support metadata (a nested ``M001``
flatbuffer in the model's ``TFLITE_METADATA`` buffer) from ``metadata_schema.fbs``.  Field slots are the schema's
field ids.  Also the quantization helpers and layers (int8 FULLY_CONNECTED, RESHAPE) the models are made of.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

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
