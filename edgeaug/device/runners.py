"""Running a model on a pack's batches on the device: ONNX Runtime or LiteRT (TensorFlow Lite).

Both runtimes are optional and imported only here, when a model runs.  A runner
checks once that the model's input takes the pack's records as they are (dtype
and shape), then every batch goes in with no conversion.  numpy and the
standard library only, like the rest of the device code.
"""

from __future__ import annotations

import importlib
import os
import time
import warnings
from typing import Any, Callable, Dict, List

import numpy as np

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
}
TFLITE_HINT = "pip install 'edgeaug[litert]' (ai-edge-litert), or on a device pip install tflite-runtime"


class ModelInputError(ValueError):
    """The model does not take the pack's tensor as it is; the message names the model and both sides."""


def tflite_interpreter_class() -> Any:
    """``ai_edge_litert``'s Interpreter, else ``tflite_runtime``'s; ImportError saying how to get one."""
    for mod in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
        try:
            return importlib.import_module(mod).Interpreter
        except ImportError:
            continue
    raise ImportError(f"running a .tflite model needs the LiteRT interpreter: {TFLITE_HINT}")


class OnnxRunner:
    """``runner(x)`` -> the first output of an onnxruntime CPU session for a batch of records.

    A model with a fixed batch size gets a short last batch zero-padded (and the padding's outputs dropped).
    """

    def __init__(self, model: str, pack: Any, batch_size: int = 32, threads: Any = None) -> None:
        import onnxruntime as ort  # ImportError when absent: the caller says how to install it

        try:
            self.sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own exception types
            raise ModelInputError(f"{model}: onnxruntime cannot load it: {e}") from None
        inp = self._check_input(str(model), pack)
        self.input_name, self.output = inp.name, self.sess.get_outputs()[0].name
        self.fixed = inp.shape[0] if isinstance(inp.shape[0], int) and inp.shape[0] > 0 else None
        self.batch = self.fixed or batch_size
        self(np.zeros((self.batch,) + tuple(pack.shape), pack.dtype))  # warm-up, untimed by callers

    def _check_input(self, where: str, pack: Any) -> Any:
        """The model's single input, after checking it takes the pack's tensor as is."""
        inputs = self.sess.get_inputs()
        if len(inputs) != 1:
            raise ModelInputError(f"{where}: {len(inputs)} inputs; a pack feeds one ({[i.name for i in inputs]})")
        inp = inputs[0]
        want = _ORT_TYPES.get(inp.type, inp.type)
        if want != pack.dtype.name:
            raise ModelInputError(
                f"{where}: input {inp.name!r} is {want} but the pack holds {pack.dtype.name}; "
                f"adapt the model (edgeaug adapt-model) or build with its target (edgeaug target from-onnx)"
            )
        dims = list(inp.shape)[1:]
        if len(dims) != len(pack.shape) or any(isinstance(d, int) and d != s for d, s in zip(dims, pack.shape)):
            raise ModelInputError(
                f"{where}: input {inp.name!r} has shape {list(inp.shape)}; the pack's records are {list(pack.shape)}"
            )
        return inp

    def __call__(self, x: np.ndarray) -> np.ndarray:
        k = len(x)
        if self.fixed and k < self.fixed:
            x = np.concatenate([x, np.zeros((self.fixed - k,) + x.shape[1:], x.dtype)])
        return self.sess.run([self.output], {self.input_name: x})[0][:k]  # the pack's bytes are the input


class TFLiteRunner:
    """``runner(x)`` -> the first output of a LiteRT interpreter for every row of ``x``.

    A model whose batch dim is dynamic (shape_signature -1) is resized once to
    ``batch_size``; a fixed-batch model (Edge TPU models have batch 1) runs its
    own batch at a time.  Short batches are zero-padded, so the input is never
    reallocated while running.  A pack target whose scale/zero point differ
    from the model's input quantization gives a warning.
    """

    def __init__(self, model: str, pack: Any, batch_size: int = 32, threads: Any = None) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        cls = tflite_interpreter_class()
        if not os.path.isfile(model):
            raise ModelInputError(f"{model}: no such file")
        try:
            self.interpreter = it = cls(model_path=str(model), num_threads=threads)
        except Exception as e:  # the interpreter raises ValueError / RuntimeError with its own text
            raise ModelInputError(f"{model}: the LiteRT interpreter cannot load it: {e}") from None
        self.where = str(model)
        ins = it.get_input_details()
        if len(ins) != 1:
            raise ModelInputError(f"{model}: {len(ins)} inputs; a pack feeds one ({[d['name'] for d in ins]})")
        inp = ins[0]
        self.input_name = inp["name"]
        self._check_input(inp, pack)
        shape = [int(d) for d in inp["shape"]]
        dims = self._dims(inp)
        self.fixed = dims[0] != -1
        self.batch = shape[0] if self.fixed else batch_size
        if not self.fixed or any(d == -1 for d in dims[1:]):
            it.resize_tensor_input(inp["index"], [self.batch, *pack.shape])
        try:
            it.allocate_tensors()
        except Exception as e:
            raise ModelInputError(f"{model}: cannot allocate tensors for batch {self.batch}: {e}") from None
        self._in, self._out = inp["index"], it.get_output_details()[0]["index"]
        self._pad = np.zeros((self.batch, *pack.shape), pack.dtype)
        self.run_batch(self._pad)  # warm-up (and any delegate's first-run setup), untimed by callers

    @staticmethod
    def _dims(inp: Dict[str, Any]) -> List[int]:
        sig = [int(d) for d in inp.get("shape_signature", inp["shape"])]
        shape = [int(d) for d in inp["shape"]]
        return [-1 if s == -1 else d for d, s in zip(shape, sig)] if len(sig) == len(shape) else shape

    def _check_input(self, inp: Dict[str, Any], pack: Any) -> None:
        dtype, dims = np.dtype(inp["dtype"]).name, self._dims(inp)
        if dtype != pack.dtype.name:
            raise ModelInputError(
                f"{self.where}: input {self.input_name!r} is {dtype} but the pack holds {pack.dtype.name}; "
                f"build the pack with the model's target (edgeaug target from-tflite)"
            )
        if len(dims) != len(pack.shape) + 1 or any(d not in (-1, s) for d, s in zip(dims[1:], pack.shape)):
            raise ModelInputError(
                f"{self.where}: input {self.input_name!r} has shape {dims}; the pack's records are {list(pack.shape)}"
            )
        target = pack.manifest.get("target", {})
        scale, zp = inp.get("quantization", (0.0, 0))
        if target.get("dtype") in ("uint8", "int8") and scale:
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


def model_runner(model: str, pack: Any, batch_size: int = 32, threads: Any = None) -> Callable[[np.ndarray], Any]:
    """A runner for ``model``: LiteRT for ``.tflite`` files, else ONNX Runtime."""
    cls = TFLiteRunner if str(model).lower().endswith(".tflite") else OnnxRunner
    return cls(model, pack, batch_size, threads)


def bench_model(
    pack: Any, model: str, batch_size: int = 32, seconds: float = 3.0, runner: Any = None
) -> Dict[str, Any]:
    """Shuffled batches straight into the model for about ``seconds``: samples/s (loading + inference).

    ``runner`` (a callable with ``input_name`` and ``batch``) replaces the one :func:`model_runner` makes.
    """
    run = runner if runner is not None else model_runner(model, pack, batch_size)
    n, epoch, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for x, _ in pack.batches(batch_size, epoch=epoch):
            run(x)
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
