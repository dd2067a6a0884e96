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
from edgeaug.device.runners import ModelInputError, OnnxRunner
from edgeaug.models.profile import ModelError, require


def predictions(y: np.ndarray) -> np.ndarray:
    """Class ids from logits/probabilities (argmax) or from an integer label output."""
    if y.dtype.kind in "iu" and y.ndim == 1:
        return y.astype(np.int64)
    return np.argmax(y.reshape(len(y), -1), axis=1)


def device_runner(runner: Callable[..., Any], error: type, model_path: str | Path, pack: Pack, *args: Any) -> Any:
    """The device's runner ``runner(model, pack, *args)``, its :class:`ModelInputError` raised as ``error``."""
    try:
        return runner(str(model_path), pack, *args)
    except ModelInputError as e:
        raise error(str(e)) from None


def onnx_runner(model_path: str | Path, pack: Pack, batch_size: int = 32, threads: Optional[int] = None) -> Any:
    """The device's :class:`~edgeaug.device.runners.OnnxRunner`, with errors as :class:`ModelError` (``threads``:
    unused, the session sets its own)."""
    require("onnxruntime")  # ModelError saying how to install it
    return device_runner(OnnxRunner, ModelError, model_path, pack, batch_size)


def evaluate(
    pack_path: str | Path,
    model_path: str | Path,
    split: Optional[str] = None,
    batch_size: int = 32,
    limit: Optional[int] = None,
    threads: Optional[int] = None,
    runner: Optional[Callable[..., Any]] = None,
) -> Dict[str, Any]:
    """Accuracy and throughput of a model on a pack split (val when it has one); see :func:`evaluate_with`.

    ``runner(model_path, pack, batch_size, threads)`` runs the model: onnxruntime's
    :func:`onnx_runner` by default, LiteRT's for ``evaluate_tflite``.
    """
    make = runner or onnx_runner
    return evaluate_with(lambda pack: make(model_path, pack, batch_size, threads), pack_path, split, limit)


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
