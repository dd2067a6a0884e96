"""``edgeaug eval``: run a model over a pack with no conversion (ONNX here; LiteRT in :mod:`.litert`).

``pack.batches()`` output goes straight into ``session.run``: the pack holds
the model's input tensor.  For class labels, the prediction is the argmax of
the first output (or the output itself when it is an integer label vector),
and output index ``i`` is taken to mean the pack's class ``i`` (classes are
sorted folder names or manifest labels, see ``pack.classes``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import numpy as np

from edgeaug.device.loader import Pack
from edgeaug.models.onnx_io import session
from edgeaug.models.profile import ModelError

ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8", "tensor(int8)": "int8"}


def check_input(sess: Any, pack: Pack, where: str) -> Any:
    """The model's input, after checking it takes the pack's tensor as is."""
    inputs = sess.get_inputs()
    if len(inputs) != 1:
        raise ModelError(f"{where}: {len(inputs)} inputs; eval feeds one ({[i.name for i in inputs]})")
    inp = inputs[0]
    want = ORT_TYPES.get(inp.type, inp.type)
    if want != pack.dtype.name:
        raise ModelError(
            f"{where}: input {inp.name!r} is {want} but the pack holds {pack.dtype.name}; "
            f"adapt the model (edgeaug adapt-model) or build with its target "
            f"(edgeaug target from-onnx)"
        )
    dims = list(inp.shape)[1:]
    if len(dims) != len(pack.shape) or any(isinstance(d, int) and d != s for d, s in zip(dims, pack.shape)):
        raise ModelError(
            f"{where}: input {inp.name!r} has shape {list(inp.shape)}; the pack's records are {list(pack.shape)}"
        )
    return inp


def predictions(y: np.ndarray) -> np.ndarray:
    """Class ids from logits/probabilities (argmax) or from an integer label output."""
    if y.dtype.kind in "iu" and y.ndim == 1:
        return y.astype(np.int64)
    return np.argmax(y.reshape(len(y), -1), axis=1)


class OnnxPackRunner:
    """``runner(x)`` -> the first output of an ONNX model for a batch of pack records (no conversion).

    A model with a fixed batch size gets its last, short batch zero-padded.
    """

    def __init__(self, model_path: str | Path, pack: Pack, batch_size: int = 32) -> None:
        self.sess = session(model_path)
        inp = check_input(self.sess, pack, str(model_path))
        self.input_name, self.output = inp.name, self.sess.get_outputs()[0].name
        self.fixed = inp.shape[0] if isinstance(inp.shape[0], int) and inp.shape[0] > 0 else None
        self.batch = self.fixed or batch_size
        self(np.zeros((self.batch,) + pack.shape, pack.dtype))  # warm-up, untimed by callers

    def __call__(self, x: np.ndarray) -> np.ndarray:
        k = len(x)
        if self.fixed and k < self.fixed:
            x = np.concatenate([x, np.zeros((self.fixed - k,) + x.shape[1:], x.dtype)])
        return self.sess.run([self.output], {self.input_name: x})[0][:k]


def evaluate(
    pack_path: str | Path,
    model_path: str | Path,
    split: Optional[str] = None,
    batch_size: int = 32,
    limit: Optional[int] = None,
) -> Dict[str, Any]:
    """Accuracy and throughput of an ONNX model on a pack split (val when it has one); see :func:`evaluate_with`."""
    return evaluate_with(lambda pack: OnnxPackRunner(model_path, pack, batch_size), pack_path, split, limit)


def evaluate_with(
    make_runner: Callable[[Pack], Any], pack_path: str | Path, split: Optional[str] = None, limit: Optional[int] = None
) -> Dict[str, Any]:
    """Run ``make_runner(pack)`` (a callable with ``.batch``) over a split's records once, in order.

    Returns split, samples, labelled, correct, accuracy (None without labels),
    batch, ``samples_per_s`` (reading batches plus inference) and
    ``model_samples_per_s`` (inference alone).  Output index ``i`` is the
    pack's class ``i``.
    """
    with Pack(str(pack_path), "train") as probe:
        has_val = probe.manifest["splits"]["val"]["count"] > 0
    split = split or ("val" if has_val else "train")
    with Pack(str(pack_path), split) as pack:
        run = make_runner(pack)
        n = correct = labelled = 0
        t_model, t0 = 0.0, time.perf_counter()
        for x, y in pack.batches(run.batch, epoch=0, shuffle=False, all_variants=True):
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
