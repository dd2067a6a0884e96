"""The ``.tflite`` flatbuffer, read with the standard library: inputs, outputs and TFLite Support metadata.

No interpreter is needed to write a target from a model: ``Model.subgraphs[0].inputs``
-> ``tensors`` -> shape, shape_signature, type and quantization are read
straight from the file, every offset bounds-checked (a model file is input too).
"""

from __future__ import annotations

import mmap
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from edgeaug.models.profile import ModelError

TENSOR_TYPES = {0: "float32", 1: "float16", 3: "uint8", 9: "int8"}
OTHER_TYPES = {2: "int32", 4: "int64", 5: "string", 6: "bool", 7: "int16", 8: "complex64", 10: "float64"}
METADATA_NAME = "TFLITE_METADATA"
COLOR_SPACES = {1: "RGB", 2: "GRAY"}  # metadata_schema.fbs ColorSpaceType


class _Table:
    """One flatbuffer table: ``pos`` is its offset in ``buf``; fields are read by schema slot id."""

    __slots__ = ("_vt", "_vt_len", "buf", "pos")

    def __init__(self, buf: Any, pos: int) -> None:
        self.buf, self.pos = buf, pos
        self._vt = pos - _unpack(buf, "<i", pos)
        self._vt_len = _unpack(buf, "<H", self._vt)

    def _offset(self, slot: int) -> int:
        o = 4 + 2 * slot
        return _unpack(self.buf, "<H", self._vt + o) if o < self._vt_len else 0

    def scalar(self, slot: int, fmt: str, default: Any = 0) -> Any:
        o = self._offset(slot)
        return _unpack(self.buf, fmt, self.pos + o) if o else default

    def _indirect(self, slot: int) -> Optional[int]:
        o = self._offset(slot)
        return None if not o else self.pos + o + _unpack(self.buf, "<I", self.pos + o)

    def table(self, slot: int) -> Optional[_Table]:
        p = self._indirect(slot)
        return None if p is None else _Table(self.buf, p)

    def _vector(self, slot: int, size: int) -> Tuple[int, int]:
        p = self._indirect(slot)
        if p is None:
            return 0, 0
        n = _unpack(self.buf, "<I", p)
        if p + 4 + n * size > len(self.buf):
            raise _Corrupt(f"vector of {n} at {p} runs past the end")
        return p + 4, n

    def numbers(self, slot: int, dtype: str) -> np.ndarray:
        dt = np.dtype(dtype)
        start, n = self._vector(slot, dt.itemsize)
        return np.frombuffer(self.buf, dt, n, start).copy() if n else np.zeros(0, dt)

    def tables(self, slot: int) -> List[_Table]:
        start, n = self._vector(slot, 4)
        return [_Table(self.buf, start + 4 * i + _unpack(self.buf, "<I", start + 4 * i)) for i in range(n)]

    def string(self, slot: int) -> Optional[str]:
        start, n = self._vector(slot, 1)
        return None if self._indirect(slot) is None else bytes(self.buf[start : start + n]).decode("utf-8", "replace")

    def raw(self, slot: int) -> bytes:
        start, n = self._vector(slot, 1)
        return bytes(self.buf[start : start + n])


class _Corrupt(Exception):
    pass


def _unpack(buf: Any, fmt: str, pos: int) -> Any:
    if pos < 0 or pos + struct.calcsize(fmt) > len(buf):
        raise _Corrupt(f"offset {pos} outside the {len(buf)}-byte file")
    return struct.unpack_from(fmt, buf, pos)[0]


def _root(buf: Any, ident: bytes, where: str, what: str) -> _Table:
    if len(buf) < 8 or bytes(buf[4:8]) != ident:
        raise ModelError(f"{where}: not a {what} (no {ident.decode()} file identifier)")
    return _Table(buf, _unpack(buf, "<I", 0))


@dataclass(frozen=True)
class TFLiteTensor:
    """A subgraph input or output as the flatbuffer declares it.

    ``shape`` is the static shape with -1 where ``shape_signature`` says the
    dim is dynamic (usually the batch).  ``scale``/``zero_point`` are empty for
    an unquantized tensor and have one entry per channel of
    ``quantized_dimension`` when it is quantized per channel.
    """

    index: int
    name: str
    shape: Tuple[int, ...]
    dtype: str
    scale: Tuple[float, ...] = ()
    zero_point: Tuple[int, ...] = ()
    quantized_dimension: int = 0

    @property
    def quantized(self) -> bool:
        return bool(self.scale) and any(s != 0 for s in self.scale)

    @property
    def per_channel(self) -> bool:
        return len(set(self.scale)) > 1 or len(set(self.zero_point)) > 1


@dataclass(frozen=True)
class TFLiteInfo:
    """What :func:`inspect_tflite` reads: the main subgraph's inputs/outputs and per-input metadata.

    ``metadata[i]`` holds the TFLite Support metadata of input ``i``: ``mean``
    and ``std`` (tuples, in the schema's 0-255 input units) and ``color``
    ("RGB"/"GRAY"), each only when present.
    """

    path: str
    inputs: Tuple[TFLiteTensor, ...]
    outputs: Tuple[TFLiteTensor, ...]
    metadata: Tuple[Dict[str, Any], ...] = field(default=())
    description: str = ""


def inspect_tflite(path: str | Path) -> TFLiteInfo:
    """Read a ``.tflite`` file's main subgraph inputs, outputs and input metadata (no interpreter)."""
    where = str(path)
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            if size < 8:
                raise ModelError(f"{where}: not a TFLite model ({size} bytes)")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _inspect(buf, where)
    except OSError as e:
        raise ModelError(f"{where}: cannot read: {e.strerror or e}") from None
    except (_Corrupt, UnicodeDecodeError) as e:
        raise ModelError(f"{where}: not a readable TFLite flatbuffer: {e}") from None


def _inspect(buf: Any, where: str) -> TFLiteInfo:
    # schema.fbs -- Model: subgraphs 2, description 3, buffers 4, metadata 6;
    # SubGraph: tensors 0, inputs 1, outputs 2
    model = _root(buf, b"TFL3", where, "TFLite model")
    subgraphs = model.tables(2)
    if not subgraphs:
        raise ModelError(f"{where}: the model has no subgraph")
    sg = subgraphs[0]
    tensors = sg.tables(0)

    def tensor(i: int) -> TFLiteTensor:
        if not 0 <= i < len(tensors):
            raise _Corrupt(f"tensor index {i} of {len(tensors)}")
        return _tensor(tensors[i], i, where)

    inputs = tuple(tensor(int(i)) for i in sg.numbers(1, "<i4"))
    outputs = tuple(tensor(int(i)) for i in sg.numbers(2, "<i4"))
    meta: Tuple[Dict[str, Any], ...] = tuple({} for _ in inputs)
    buffers = model.tables(4)
    for m in model.tables(6):  # Metadata {name 0, buffer 1}
        if m.string(0) == METADATA_NAME and m.scalar(1, "<I") < len(buffers):
            data = _buffer_bytes(buf, buffers[m.scalar(1, "<I")])
            try:
                meta = _input_metadata(data, len(inputs), where)
            except _Corrupt as e:
                warnings.warn(f"{where}: unreadable {METADATA_NAME} ignored ({e})", stacklevel=3)
    return TFLiteInfo(where, inputs, outputs, meta, model.string(3) or "")


def _tensor(t: _Table, index: int, where: str) -> TFLiteTensor:
    # Tensor {shape 0, type:byte 1, buffer 2, name 3, quantization 4, ..., shape_signature 7}
    # QuantizationParameters {min 0, max 1, scale 2, zero_point:[long] 3, ..., quantized_dimension 6}
    shape = [int(d) for d in t.numbers(0, "<i4")]
    sig = [int(d) for d in t.numbers(7, "<i4")]
    if len(sig) == len(shape):
        shape = [-1 if s == -1 else d for d, s in zip(shape, sig)]
    code = t.scalar(1, "<b", 0)
    dtype = TENSOR_TYPES.get(code) or OTHER_TYPES.get(code, f"type {code}")
    scale: Tuple[float, ...] = ()
    zps: Tuple[int, ...] = ()
    qdim = 0
    q = t.table(4)
    if q is not None:
        scale = tuple(float(s) for s in q.numbers(2, "<f4"))
        zps = tuple(int(z) for z in q.numbers(3, "<i8"))
        qdim = q.scalar(6, "<i", 0)
        if scale and not zps:
            zps = (0,) * len(scale)
    return TFLiteTensor(index, t.string(3) or f"tensor_{index}", tuple(shape), dtype, scale, zps, qdim)


def _buffer_bytes(buf: Any, b: _Table) -> bytes:
    """Buffer {data 0, offset:ulong 1, size:ulong 2}: inline data, or (models > 2 GB) bytes at ``offset``."""
    data = b.raw(0)
    offset, size = b.scalar(1, "<Q", 0), b.scalar(2, "<Q", 0)
    if not data and offset > 1 and offset + size <= len(buf):
        data = bytes(buf[offset : offset + size])
    return data


def _input_metadata(data: bytes, n_inputs: int, where: str) -> Tuple[Dict[str, Any], ...]:
    """NormalizationOptions and colour of each input from a TFLite Support ``M001`` buffer."""
    # metadata_schema.fbs -- ModelMetadata: subgraph_metadata 3; SubGraphMetadata: input_tensor_metadata 2;
    # TensorMetadata: content 3, process_units 4; Content: content_properties_type 0, content_properties 1;
    # ImageProperties: color_space 0; ProcessUnit: options_type 0, options 1 (NormalizationOptions = 1);
    # NormalizationOptions: mean 0, std 1.
    out: List[Dict[str, Any]] = [{} for _ in range(n_inputs)]
    if len(data) < 8 or data[4:8] != b"M001":
        return tuple(out)
    subgraphs = _root(data, b"M001", where, "metadata").tables(3)
    if not subgraphs:
        return tuple(out)
    for i, tm in enumerate(subgraphs[0].tables(2)[:n_inputs]):
        content = tm.table(3)
        if content is not None and content.scalar(0, "<B", 0) == 2:  # ImageProperties
            props = content.table(1)
            color = COLOR_SPACES.get(props.scalar(0, "<b", 0)) if props is not None else None
            if color:
                out[i]["color"] = color
        for unit in tm.tables(4):
            opts = unit.table(1)
            if unit.scalar(0, "<B", 0) == 1 and opts is not None:
                mean, std = opts.numbers(0, "<f4"), opts.numbers(1, "<f4")
                if mean.size:
                    out[i]["mean"] = tuple(float(v) for v in mean)
                if std.size:
                    out[i]["std"] = tuple(float(v) for v in std)
    return tuple(out)


# --- the target -----------------------------------------------------------------------
