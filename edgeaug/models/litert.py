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

import functools
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from edgeaug.config.targets import QRANGE
from edgeaug.device.runners import TFLiteRunner, bench_model, tflite_interpreter_class
from edgeaug.models.calibrate import PackCalibrationReader
from edgeaug.models.evaluate import device_runner, evaluate
from edgeaug.models.profile import (
    DEFAULT_RAW_QUANT,
    ModelError,
    TargetRequest,
    channel_values,
    write_target_file,
)
from edgeaug.models.tflite_file import TFLiteInfo, TFLiteTensor, inspect_tflite

#: TFLite TensorType ids a pack can hold, and the others by name for messages.


class LiteRTError(ModelError):
    """A ``.tflite`` model cannot be used as asked; the message names the file and the reason."""


class InterpreterMissing(LiteRTError, ImportError):
    """Neither ai-edge-litert nor tflite-runtime is installed (also an ImportError)."""


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


def target_from_tflite(path: str | Path, **kw: Any) -> Dict[str, Any]:
    """The target profile (a TOML-shaped dict, as ``target_from_onnx`` returns) of a ``.tflite`` image input.

    ``kw``: :class:`~edgeaug.models.profile.TargetRequest`'s fields.  ``size``
    is (height, width) for dynamic spatial dims.  ``mean``/``std``: see the
    module doc (arguments, else metadata, else the quantization range or 0 / 1).
    ``color`` defaults to the metadata's colour space, else RGB (3 channels) or
    GRAY (1).  An input quantized per channel raises :class:`LiteRTError`.
    """
    req, where = TargetRequest(**kw), str(path)
    info = inspect_tflite(path)
    pos, t = model_input(info, req.input_name)
    if t.dtype not in ("float32", "float16", "uint8", "int8"):
        raise LiteRTError(f"{where}: input {t.name!r} is {t.dtype}; a pack holds float32, float16, uint8 or int8")
    try:  # TFLite's own layout NHWC when ambiguous
        lay, channels, height, width = req.geometry(list(t.shape), where, f"input {t.name!r} {list(t.shape)}", "NHWC")
    except ModelError as e:
        raise LiteRTError(str(e)) from None
    meta = info.metadata[pos] if pos < len(info.metadata) else {}
    meta_color = meta.get("color") if {"RGB": 3, "GRAY": 1}.get(meta.get("color", ""), 0) == channels else None
    inp: Dict[str, Any] = {
        "name": t.name,
        "height": height,
        "width": width,
        "channels": channels,
        "layout": lay,
        "color": req.color or meta_color or ("RGB" if channels == 3 else "GRAY"),
        "dtype": t.dtype,
    }
    default_mean, default_std = 0.0, 1.0
    if t.dtype in QRANGE:
        quant = input_quantization(t, where)
        if quant is None:  # an integer input without quantization: raw pixels, as for ONNX
            quant, meta = DEFAULT_RAW_QUANT[t.dtype], {}
        inp["scale"], inp["zero_point"] = float(quant[0]), int(quant[1])
        default_mean, default_std, standard = range_normalization(t.dtype, *quant)
        if not standard and (req.mean is None or req.std is None) and not ("mean" in meta and "std" in meta):
            warnings.warn(
                f"{where}: no normalization given or in the metadata; mean {default_mean:.6g}, "
                f"std {default_std:.6g} map pixels 0..255 onto the input's quantized range "
                f"(pass --mean/--std if the model was trained otherwise)",
                stacklevel=2,
            )
    inp["mean"] = list(
        channel_values(req.mean, channels, default_mean, "mean")
        if req.mean is not None
        else channel_values(meta.get("mean"), channels, default_mean, f"{where}: metadata mean", True)
    )
    inp["std"] = list(
        channel_values(req.std, channels, default_std, "std")
        if req.std is not None
        else channel_values(meta.get("std"), channels, default_std, f"{where}: metadata std", True)
    )
    if min(inp["std"]) <= 0:
        raise LiteRTError(f"{where}: std {inp['std']} must be positive")
    return req.profile(path, inp)


def write_tflite_target(model_path: str | Path, out: str | Path, **kw: Any) -> Any:
    """Derive the target from a ``.tflite`` model, validate it, write ``out`` and return the Target.

    ``kw`` are :func:`target_from_tflite`'s arguments.  Validation errors of the
    derived profile are edgeaug's ``ConfigError``.
    """
    return write_target_file(target_from_tflite(model_path, **kw), out, "target from-tflite", model_path)


# --- running the model ----------------------------------------------------------------


def interpreter_class() -> Any:
    """``ai_edge_litert``'s Interpreter, else ``tflite_runtime``'s; :class:`InterpreterMissing` when neither."""
    try:
        return tflite_interpreter_class()
    except ImportError as e:
        raise InterpreterMissing(str(e)) from None


def tflite_runner(model: str | Path, pack: Any, batch_size: int = 32, threads: Optional[int] = None) -> Any:
    """The device's :class:`~edgeaug.device.runners.TFLiteRunner`, with errors as :class:`LiteRTError`."""
    interpreter_class()  # InterpreterMissing, with the install hint, before anything else
    return device_runner(TFLiteRunner, LiteRTError, model, pack, batch_size, threads)


#: Accuracy and throughput of a ``.tflite`` classifier on a pack split (val when it has one): ``evaluate``
#: (same arguments, same result dict as for ONNX) with the LiteRT interpreter as its runner.
evaluate_tflite = functools.partial(evaluate, runner=tflite_runner)


def bench_tflite(
    pack: Any, model: str | Path, batch_size: int = 32, seconds: float = 3.0, threads: Optional[int] = None
) -> Dict[str, Any]:
    """Shuffled batches of an open Pack straight into the interpreter for about ``seconds``.

    Returns ``{"records_per_s", "input", "epochs", "batch"}`` (as the loader's
    ONNX ``bench_model`` plus the batch the model ran).  Raises LiteRTError (a
    ValueError) when the model does not take the pack's tensor, and
    InterpreterMissing (also an ImportError) without an interpreter.
    """
    return bench_model(pack, str(model), batch_size, seconds, runner=tflite_runner(model, pack, batch_size, threads))


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
        with PackCalibrationReader(
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
