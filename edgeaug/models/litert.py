"""LiteRT (TensorFlow Lite) models: target profiles, evaluation, benchmark and calibration on a pack.

The ``.tflite`` counterpart of the ONNX tools (``target from-onnx``, ``eval``,
``loader bench --model`` and the calibration reader):

* :func:`inspect_tflite` reads the model's inputs, outputs and TFLite Support
  metadata straight from the flatbuffer (``Model.subgraphs[0].inputs`` ->
  ``tensors`` -> shape, shape_signature, type, quantization), with the standard
  library only: no interpreter is needed to write a target.
* :func:`target_from_tflite` / :func:`write_tflite_target`: the target profile
  (``edgeaug target from-tflite``), the dict shape ``target_from_onnx`` returns.
* :func:`evaluate_tflite` (``edgeaug eval --model X.tflite``) and
  :func:`bench_tflite` (``python -m edgeaug.loader bench --model X.tflite``)
  feed ``pack.batches()`` to the interpreter with no conversion.
* :func:`representative_dataset`: the TFLite converter's
  ``representative_dataset`` over a pack, de-quantized as the ONNX
  calibration reader does.

Normalization.  A target's ``mean``/``std`` are in [0, 1] pixel units
(``(pixel / 255 - mean) / std``).  They come from, in order: the ``mean`` /
``std`` arguments (values above 1 are read as 0-255 units, as for ONNX); the
model's TFLite Support metadata (``NormalizationOptions`` of the input's
``process_units``, whose values are in 0-255 input units by that schema's
definition, so they are always divided by 255: 127.5 -> 0.5); for an integer
input, the float range its quantization covers, taken as pixels 0..255
(scale 1/255 with zero point -128 (int8) or 0 (uint8): [0, 1] -> mean 0, std
1; scale 1/128 with zero point 128 (uint8) or 0 (int8): [-1, 1) -> mean = std
= 0.5; any other range maps pixel 0..255 onto it, with a warning); for a float
input, 0 and 1.  The metadata's ``ImageProperties.color_space`` gives the
colour (RGB or GRAY) when ``color`` is not passed.

The interpreter is ``ai_edge_litert.interpreter.Interpreter`` (``pip install
'edgeaug[litert]'``), else ``tflite_runtime.interpreter.Interpreter`` (what
many devices have), imported only when a model is run.  This module imports
numpy and the standard library only.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import mmap
import struct
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

INSTALL_HINT = "pip install 'edgeaug[litert]' (ai-edge-litert), or on a device pip install tflite-runtime"
#: TFLite TensorType ids a pack can hold, and the others by name for messages.
TENSOR_TYPES = {0: "float32", 1: "float16", 3: "uint8", 9: "int8"}
OTHER_TYPES = {2: "int32", 4: "int64", 5: "string", 6: "bool", 7: "int16", 8: "complex64", 10: "float64"}
QRANGE = {"uint8": (0, 255), "int8": (-128, 127)}
DEFAULT_RAW_QUANT = {"uint8": (1 / 255, 0), "int8": (1 / 255, -128)}  # integer input without quantization
METADATA_NAME = "TFLITE_METADATA"
COLOR_SPACES = {1: "RGB", 2: "GRAY"}  # metadata_schema.fbs ColorSpaceType


class LiteRTError(ValueError):
    """A ``.tflite`` model cannot be used as asked; the message names the file and the reason."""


class InterpreterMissing(LiteRTError, ImportError):
    """Neither ai-edge-litert nor tflite-runtime is installed (also an ImportError)."""


# --- reading the flatbuffer ------------------------------------------------------------


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
        raise LiteRTError(f"{where}: not a {what} (no {ident.decode()} file identifier)")
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
                raise LiteRTError(f"{where}: not a TFLite model ({size} bytes)")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _inspect(buf, where)
    except OSError as e:
        raise LiteRTError(f"{where}: cannot read: {e.strerror or e}") from None
    except (_Corrupt, UnicodeDecodeError) as e:
        raise LiteRTError(f"{where}: not a readable TFLite flatbuffer: {e}") from None


def _inspect(buf: Any, where: str) -> TFLiteInfo:
    # schema.fbs -- Model: subgraphs 2, description 3, buffers 4, metadata 6;
    # SubGraph: tensors 0, inputs 1, outputs 2
    model = _root(buf, b"TFL3", where, "TFLite model")
    subgraphs = model.tables(2)
    if not subgraphs:
        raise LiteRTError(f"{where}: the model has no subgraph")
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


def model_input(info: TFLiteInfo, input_name: Optional[str] = None) -> Tuple[int, TFLiteTensor]:
    """(position, tensor) of the model's single input, or of the one named ``input_name``."""
    names = [t.name for t in info.inputs]
    if input_name is not None:
        if input_name not in names:
            raise LiteRTError(f"{info.path}: no input named {input_name!r}; inputs: {names}")
        i = names.index(input_name)
        return i, info.inputs[i]
    if len(info.inputs) != 1:
        raise LiteRTError(f"{info.path}: {len(info.inputs)} inputs {names}; choose one with --input")
    return 0, info.inputs[0]


def input_quantization(t: TFLiteTensor, where: str) -> Optional[Tuple[float, int]]:
    """(scale, zero_point) of an integer input, None when it has none; per-channel -> LiteRTError."""
    if not t.quantized:
        return None
    if t.per_channel:
        raise LiteRTError(
            f"{where}: input {t.name!r} is quantized per channel (axis {t.quantized_dimension}, "
            f"scales {list(t.scale)}, zero points {list(t.zero_point)}); "
            f"a target has one scale and zero point"
        )
    return t.scale[0], t.zero_point[0]


def infer_layout(dims: Sequence[int], layout: Optional[str], where: str) -> str:
    """NCHW if dim 1 is 1 or 3 and the last dim is not; else NHWC (TFLite's own layout); ``layout`` overrides."""
    if len(dims) != 4:
        raise LiteRTError(f"{where}: input has rank {len(dims)} {list(dims)}; a target needs a 4-d image tensor")
    if layout is not None:
        if layout not in ("NCHW", "NHWC"):
            raise LiteRTError(f"--layout: {layout!r} is not NCHW or NHWC")
        return layout
    return "NCHW" if dims[1] in (1, 3) and dims[3] not in (1, 3) else "NHWC"


def channel_values(
    values: Optional[Sequence[float]], channels: int, default: float, what: str, pixel_units: Optional[bool] = None
) -> Tuple[float, ...]:
    """Broadcast to every channel, in [0, 1] units.

    ``pixel_units`` True divides by 255 (TFLite metadata); None divides only
    when some value is above 1 (flags, as ``target from-onnx`` reads them).
    """
    if values is None:
        return (default,) * channels
    vals = tuple(float(v) for v in values)
    if len(vals) == 1:
        vals = vals * channels
    if len(vals) != channels:
        raise LiteRTError(f"{what}: {len(vals)} values for {channels} channels")
    if not all(np.isfinite(vals)):
        raise LiteRTError(f"{what}: {list(vals)} are not finite numbers")
    if pixel_units or (pixel_units is None and max(abs(v) for v in vals) > 1.0):
        vals = tuple(v / 255.0 for v in vals)
    return vals


def range_normalization(dtype: str, scale: float, zero_point: int) -> Tuple[float, float, bool]:
    """(mean, std, standard) mapping pixels 0..255 onto the float range an integer input's quantization covers.

    [0, 1] gives (0, 1) and [-1, 1) gives (0.5, 0.5) (``standard`` True); any
    other range [lo, hi] gives std = 1 / (hi - lo), mean = -lo * std, so the
    stored integer is the pixel offset by the type's minimum.
    """
    qlo, qhi = QRANGE[dtype]
    lo, hi = (qlo - zero_point) * scale, (qhi - zero_point) * scale
    if abs(lo) <= scale and abs(hi - 1) <= scale:
        return 0.0, 1.0, True
    if abs(lo + 1) <= scale and abs(hi - 1) <= scale:
        return 0.5, 0.5, True
    std = 1.0 / (hi - lo)
    return -lo * std, std, False


def target_from_tflite(
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
    """The target profile (a TOML-shaped dict, as ``target_from_onnx`` returns) of a ``.tflite`` image input.

    ``size`` is (height, width) for dynamic spatial dims.  ``mean``/``std``:
    see the module doc (arguments, else metadata, else the quantization range
    or 0 / 1).  ``color`` defaults to the metadata's colour space, else RGB
    (3 channels) or GRAY (1).  An input quantized per channel raises
    :class:`LiteRTError`.
    """
    where = str(path)
    info = inspect_tflite(path)
    pos, t = model_input(info, input_name)
    if t.dtype not in ("float32", "float16", "uint8", "int8"):
        raise LiteRTError(f"{where}: input {t.name!r} is {t.dtype}; a pack holds float32, float16, uint8 or int8")
    dims = list(t.shape)
    lay = infer_layout(dims, layout, where)
    c_ax, h_ax, w_ax = (1, 2, 3) if lay == "NCHW" else (3, 1, 2)
    channels = dims[c_ax]
    if channels not in (1, 3):
        raise LiteRTError(
            f"{where}: input {t.name!r} {list(t.shape)} has {channels} channels ({lay}); a target needs 1 or 3"
        )
    height, width = _spatial(dims[h_ax], dims[w_ax], size, where)
    meta = info.metadata[pos] if pos < len(info.metadata) else {}
    meta_color = meta.get("color") if {"RGB": 3, "GRAY": 1}.get(meta.get("color", ""), 0) == channels else None
    inp: Dict[str, Any] = {
        "name": t.name,
        "height": height,
        "width": width,
        "channels": channels,
        "layout": lay,
        "color": color or meta_color or ("RGB" if channels == 3 else "GRAY"),
        "dtype": t.dtype,
    }
    default_mean, default_std = 0.0, 1.0
    if t.dtype in QRANGE:
        quant = input_quantization(t, where)
        if quant is None:  # an integer input without quantization: raw pixels, as for ONNX
            quant, meta = DEFAULT_RAW_QUANT[t.dtype], {}
        inp["scale"], inp["zero_point"] = float(quant[0]), int(quant[1])
        default_mean, default_std, standard = range_normalization(t.dtype, *quant)
        if not standard and (mean is None or std is None) and not ("mean" in meta and "std" in meta):
            warnings.warn(
                f"{where}: no normalization given or in the metadata; mean {default_mean:.6g}, "
                f"std {default_std:.6g} map pixels 0..255 onto the input's quantized range "
                f"(pass --mean/--std if the model was trained otherwise)",
                stacklevel=2,
            )
    inp["mean"] = list(
        channel_values(mean, channels, default_mean, "mean")
        if mean is not None
        else channel_values(meta.get("mean"), channels, default_mean, f"{where}: metadata mean", True)
    )
    inp["std"] = list(
        channel_values(std, channels, default_std, "std")
        if std is not None
        else channel_values(meta.get("std"), channels, default_std, f"{where}: metadata std", True)
    )
    if min(inp["std"]) <= 0:
        raise LiteRTError(f"{where}: std {inp['std']} must be positive")
    dev = {"name": Path(path).stem, "arch": "any", "word_size": 64, **(device or {})}
    return {"name": name or Path(path).stem, "device": dev, "input": inp}


def _spatial(h: int, w: int, size: Optional[Tuple[int, int]], where: str) -> Tuple[int, int]:
    if size is None:
        if h < 1 or w < 1:
            raise LiteRTError(f"{where}: input height/width are dynamic ({h}, {w}); pass --size HxW")
        return h, w
    for dim, want, what in ((h, size[0], "height"), (w, size[1], "width")):
        if dim > 0 and dim != want:
            raise LiteRTError(f"--size: the model's {what} is fixed at {dim}, not {want}")
    return int(size[0]), int(size[1])


def _first(*specs: str) -> Any:
    """The first importable ``module:attr`` of edgeaug's own modules (old and new package layout)."""
    for spec in specs:
        mod, attr = spec.split(":")
        try:
            return getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"cannot import any of {specs}")


def target_toml(target: Dict[str, Any], comment: str = "") -> str:
    """A target dict (without its name) as the TOML ``load_target`` reads; as ``target from-onnx`` writes."""
    lines = [f"# {c}" for c in comment.splitlines()] + ["[device]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in target["device"].items()]
    lines += ["", "[input]"] + [f"{k} = {_toml_value(v)}" for k, v in target["input"].items()]
    return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(int(v) if isinstance(v, int) else float(v))
    if isinstance(v, str):
        return json.dumps(v)
    return "[" + ", ".join(_toml_value(x) for x in v) + "]"


def write_tflite_target(model_path: str | Path, out: str | Path, **kw: Any) -> Any:
    """Derive the target from a ``.tflite`` model, validate it, write ``out`` and return the Target.

    ``kw`` are :func:`target_from_tflite`'s arguments.  Validation errors of the
    derived profile are edgeaug's ``ConfigError``.
    """
    parse_target = _first("edgeaug.config.targets:parse_target", "edgeaug.targets:parse_target")
    load_target = _first("edgeaug.config.targets:load_target", "edgeaug.targets:load_target")
    t = target_from_tflite(model_path, **kw)
    name = t.pop("name")
    parse_target(t, name, str(out))  # fail before writing anything invalid
    h = hashlib.sha256()
    with open(model_path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    comment = f"Target derived by `edgeaug target from-tflite` from {Path(model_path).name}\n(sha256 {h.hexdigest()})."
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(target_toml(t, comment), encoding="utf-8")
    return load_target(out)


# --- running the model ----------------------------------------------------------------


def interpreter_class() -> Any:
    """``ai_edge_litert``'s Interpreter, else ``tflite_runtime``'s; :class:`InterpreterMissing` when neither."""
    for mod in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
        try:
            return importlib.import_module(mod).Interpreter
        except ImportError:
            continue
    raise InterpreterMissing(f"running a .tflite model needs the LiteRT interpreter: {INSTALL_HINT}")


def load_interpreter(model: str | Path, threads: Optional[int] = None) -> Any:
    """An Interpreter for ``model`` (tensors not yet allocated); unloadable files raise LiteRTError."""
    cls = interpreter_class()
    if not Path(model).is_file():
        raise LiteRTError(f"{model}: no such file")
    try:
        return cls(model_path=str(model), num_threads=threads)
    except Exception as e:  # the interpreter raises ValueError / RuntimeError with its own text
        raise LiteRTError(f"{model}: the LiteRT interpreter cannot load it: {e}") from None


class PackRunner:
    """Runs a ``.tflite`` model on pack batches: ``runner(x)`` -> the first output for every row of ``x``.

    The input is checked against the pack (dtype and record shape).  A model
    whose batch dim is dynamic (shape_signature -1) is resized once to
    ``batch_size``; a fixed-batch model (Edge TPU models have batch 1) runs
    its own batch at a time.  Short batches are zero-padded, so the input is
    never reallocated while running.  A pack target whose scale/zero point
    differ from the model's input quantization gives a warning.
    """

    def __init__(self, model: str | Path, pack: Any, batch_size: int = 32, threads: Optional[int] = None) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.where = str(model)
        self.interpreter = it = load_interpreter(model, threads)
        ins = it.get_input_details()
        if len(ins) != 1:
            raise LiteRTError(f"{model}: {len(ins)} inputs; a pack feeds one ({[d['name'] for d in ins]})")
        inp = ins[0]
        self.input_name = inp["name"]
        sig = [int(d) for d in inp.get("shape_signature", inp["shape"])]
        shape = [int(d) for d in inp["shape"]]
        dtype = np.dtype(inp["dtype"]).name
        dims = [-1 if s == -1 else d for d, s in zip(shape, sig)] if len(sig) == len(shape) else shape
        if dtype != pack.dtype.name:
            raise LiteRTError(
                f"{model}: input {self.input_name!r} is {dtype} but the pack holds {pack.dtype.name}; "
                f"build the pack with the model's target (edgeaug target from-tflite)"
            )
        if len(dims) != len(pack.shape) + 1 or any(d not in (-1, s) for d, s in zip(dims[1:], pack.shape)):
            raise LiteRTError(
                f"{model}: input {self.input_name!r} has shape {dims}; the pack's records are {list(pack.shape)}"
            )
        self._check_quant(inp, pack)
        self.fixed = dims[0] != -1
        self.batch = shape[0] if self.fixed else batch_size
        if not self.fixed or any(d == -1 for d in dims[1:]):
            it.resize_tensor_input(inp["index"], [self.batch, *pack.shape])
        try:
            it.allocate_tensors()
        except Exception as e:
            raise LiteRTError(f"{model}: cannot allocate tensors for batch {self.batch}: {e}") from None
        self._in, self._out = inp["index"], it.get_output_details()[0]["index"]
        self._pad = np.zeros((self.batch, *pack.shape), pack.dtype)
        self.run_batch(self._pad)  # warm-up (and any delegate's first-run setup), untimed by callers

    def _check_quant(self, inp: Dict[str, Any], pack: Any) -> None:
        target = pack.manifest.get("target", {})
        scale, zp = inp.get("quantization", (0.0, 0))
        if target.get("dtype") in QRANGE and scale:
            ts, tz = float(target.get("scale", 0.0)), int(target.get("zero_point", 0))
            if abs(ts - scale) > 1e-6 * scale or tz != zp:
                warnings.warn(
                    f"{self.where}: input quantization (scale {scale!r}, zero point {zp}) differs from "
                    f"the pack target's (scale {ts!r}, zero point {tz}): the model reads other values "
                    f"than the pack meant",
                    stacklevel=3,
                )

    def run_batch(self, x: np.ndarray) -> np.ndarray:
        """One interpreter call on exactly ``self.batch`` rows."""
        self.interpreter.set_tensor(self._in, x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._out)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        outs = []
        for i in range(0, len(x), self.batch):
            chunk = x[i : i + self.batch]
            k = len(chunk)
            if k < self.batch:
                self._pad[:k] = chunk
                self._pad[k:] = 0
                chunk = self._pad
            outs.append(self.run_batch(np.ascontiguousarray(chunk))[:k])
        return outs[0] if len(outs) == 1 else np.concatenate(outs)


def predictions(y: np.ndarray) -> np.ndarray:
    """Class ids: argmax of logits/scores (quantized scores too: the scale is positive), or an integer label vector."""
    if y.dtype.kind in "iu" and y.ndim == 1:
        return y.astype(np.int64)
    return np.argmax(y.reshape(len(y), -1), axis=1)


def _pack_class() -> Any:
    return _first("edgeaug.loader:Pack", "edgeaug.device.loader:Pack")


def evaluate_tflite(
    pack_path: str | Path,
    model_path: str | Path,
    split: Optional[str] = None,
    batch_size: int = 32,
    limit: Optional[int] = None,
    threads: Optional[int] = None,
) -> Dict[str, Any]:
    """Accuracy and throughput of a ``.tflite`` classifier on a pack split (val when it has one).

    The same result dict as ONNX's ``evaluate``: split, samples, labelled,
    correct, accuracy (None without labels), batch (the batch the model ran),
    samples_per_s (reading batches plus inference) and model_samples_per_s
    (inference alone).  Output index ``i`` is the pack's class ``i``.
    """
    Pack = _pack_class()
    with Pack(str(pack_path), "train") as probe:
        has_val = probe.manifest["splits"]["val"]["count"] > 0
    split = split or ("val" if has_val else "train")
    with Pack(str(pack_path), split) as pack:
        run = PackRunner(model_path, pack, batch_size, threads)
        n = correct = labelled = 0
        t_model, t0 = 0.0, time.perf_counter()
        for x, y in pack.batches(batch_size, epoch=0, shuffle=False, all_variants=True):
            if limit is not None:
                if n >= limit:
                    break
                x, y = x[: limit - n], y[: limit - n]
            t1 = time.perf_counter()
            pred = predictions(run(x))
            t_model += time.perf_counter() - t1
            known = y >= 0
            correct += int(np.sum(pred[known] == y[known]))
            labelled += int(np.sum(known))
            n += len(x)
        total = time.perf_counter() - t0
    return {
        "split": split,
        "samples": n,
        "labelled": labelled,
        "correct": correct,
        "accuracy": correct / labelled if labelled else None,
        "batch": run.batch,
        "samples_per_s": n / total if total > 0 else 0.0,
        "model_samples_per_s": n / t_model if t_model > 0 else 0.0,
    }


def bench_tflite(
    pack: Any, model: str | Path, batch_size: int = 32, seconds: float = 3.0, threads: Optional[int] = None
) -> Dict[str, Any]:
    """Shuffled batches of an open Pack straight into the interpreter for about ``seconds``.

    Returns ``{"records_per_s", "input", "epochs", "batch"}`` (as the loader's
    ONNX ``bench_model`` plus the batch the model ran).  Raises LiteRTError (a
    ValueError) when the model does not take the pack's tensor, and
    InterpreterMissing (also an ImportError) without an interpreter.
    """
    run = PackRunner(model, pack, batch_size, threads)
    n, epoch, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for x, _ in pack.batches(batch_size, epoch=epoch):
            run(x)  # the pack's bytes are the input: no conversion
            n += len(x)
            if time.perf_counter() - t0 >= seconds:
                break
        epoch += 1
    return {
        "records_per_s": n / (time.perf_counter() - t0),
        "input": run.input_name,
        "epochs": epoch,
        "batch": run.batch,
    }


# --- calibration for the TFLite converter ----------------------------------------------


class RepresentativeDataset:
    """The TFLite converter's representative dataset over one pack split.

    Calling it (what ``converter.representative_dataset = ...`` does) or
    iterating it yields, per sample, ``[x]`` with ``x`` float32 of shape
    ``(1, *record shape)``, de-quantized by edgeaug's ONNX calibration reader
    (``PackCalibrationReader``): ``"normalized"`` gives ``(q - zp) * scale``
    (the stored value for a float target), i.e. ``(pixel / 255 - mean) / std``
    when the target came from the float model; ``"pixels"`` gives
    ``pixel / 255``.  Samples come in the pack's seeded shuffled order (every
    variant once), so ``limit`` (a few hundred is typical) takes a
    reproducible sample across classes.
    """

    def __init__(
        self, pack_path: str | Path, split: str = "train", limit: Optional[int] = None, dequantize: str = "normalized"
    ) -> None:
        if dequantize not in ("normalized", "pixels"):
            raise ValueError(
                f"dequantize must be 'normalized' or 'pixels' (the converter wants floats), got {dequantize!r}"
            )
        self.pack_path, self.split, self.limit, self.mode = str(pack_path), split, limit, dequantize

    def __call__(self) -> Iterator[List[np.ndarray]]:
        reader_cls = _first("edgeaug.models.calibrate:PackCalibrationReader", "edgeaug.calibrate:PackCalibrationReader")
        with reader_cls(
            self.pack_path, self.split, limit=self.limit, batch_size=1, dequantize=self.mode, dtype=np.float32
        ) as reader:
            for item in reader:
                yield [item[reader.input_name]]

    def __iter__(self) -> Iterator[List[np.ndarray]]:
        return self()


def representative_dataset(
    pack_path: str | Path, split: str = "train", limit: Optional[int] = None, dequantize: str = "normalized"
) -> Callable[[], Iterator[List[np.ndarray]]]:
    """``converter.representative_dataset = representative_dataset(pack, limit=300)``; see RepresentativeDataset."""
    return RepresentativeDataset(pack_path, split, limit, dequantize)
