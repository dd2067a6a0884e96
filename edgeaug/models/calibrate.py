"""Calibrating ``onnxruntime.quantization.quantize_static`` on a pack.

:class:`PackCalibrationReader` serves a pack split as onnxruntime's
CalibrationDataReader (``get_next`` / ``rewind``), so the activation ranges
come from the same data the device will see.  onnxruntime's reader class
accepts any object with ``get_next`` (its ``__subclasshook__``), so this module
does not import onnxruntime.

A pack stores the *target* tensor.  A float model being calibrated wants
floats, so the reader can de-quantize through an exact inverse table:

* ``dequantize="normalized"``: ``(q - zp) * scale`` for integer targets, the
  stored value for float targets.  This is the model input
  ``(pixel / 255 - mean) / std`` when the target came from the model
  (``edgeaug target from-onnx``): use it for a model that normalizes outside.
* ``dequantize="pixels"``: additionally ``* std + mean``, i.e. ``pixel / 255``
  in [0, 1], for a model that normalizes inside its graph.
* ``dequantize=None``: the stored tensor as is (an integer-input model).
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, Optional

import numpy as np

from edgeaug.config.targets import QRANGE
from edgeaug.device.loader import Pack

DEQUANTIZE = (None, "normalized", "pixels")


def dequantize_table(target: Dict[str, Any], mode: str) -> np.ndarray:
    """(256, channels) float64 table from a stored integer (offset by qmin) to its float."""
    lo, hi = QRANGE[target["dtype"]]
    q = np.arange(lo, hi + 1, dtype=np.float64)[:, None]
    x = (q - target["zero_point"]) * target["scale"]
    if mode == "pixels":
        x = x * np.asarray(target["std"]) + np.asarray(target["mean"])
    return np.broadcast_to(x, (hi - lo + 1, len(target["mean"])))


def dequantize(x: np.ndarray, target: Dict[str, Any], mode: str = "normalized", dtype: Any = np.float32) -> np.ndarray:
    """De-quantize a batch ``(N, *target shape)`` of stored tensors (see the module doc)."""
    if mode not in ("normalized", "pixels"):
        raise ValueError(f"dequantize must be one of {DEQUANTIZE}, got {mode!r}")
    c_axis = 1 if target["layout"] == "NCHW" else x.ndim - 1
    if target["dtype"] not in QRANGE:  # float target: only the normalization to undo
        out = x.astype(np.float64)
        if mode == "pixels":
            shape = [1] * x.ndim
            shape[c_axis] = -1
            out = out * np.reshape(target["std"], shape) + np.reshape(target["mean"], shape)
        return out.astype(dtype)
    table = dequantize_table(target, mode).astype(dtype)
    idx = np.moveaxis(x.astype(np.int16) - QRANGE[target["dtype"]][0], c_axis, -1)
    out = table[idx, np.arange(table.shape[1])]  # one lookup per channel
    return np.ascontiguousarray(np.moveaxis(out, -1, c_axis))


class PackCalibrationReader:
    """onnxruntime CalibrationDataReader over one split of a pack.

    ``get_next()`` returns ``{input_name: batch}`` until the split (or ``limit``
    samples) is exhausted, then None; ``rewind()`` starts again.  Records come
    in the pack's seeded shuffled order (every variant once), so a ``limit``
    takes a reproducible sample across classes rather than the first class.
    ``input_name`` defaults to the target's input name.
    """

    def __init__(
        self,
        pack_path: str,
        split: str = "val",
        input_name: Optional[str] = None,
        limit: Optional[int] = None,
        batch_size: int = 1,
        dequantize: Optional[str] = None,
        dtype: Any = np.float32,
    ) -> None:
        if dequantize not in DEQUANTIZE:
            raise ValueError(f"dequantize must be one of {DEQUANTIZE}, got {dequantize!r}")
        if batch_size < 1 or (limit is not None and limit < 1):
            raise ValueError("batch_size and limit must be >= 1")
        self.pack = Pack(str(pack_path), split)
        if len(self.pack) == 0:
            self.pack.close()
            raise ValueError(
                f"{pack_path}: split {split!r} is empty"
                + ("; build with --val or use split='train'" if split == "val" else "")
            )
        self.input_name = input_name or self.pack.input_name
        self.target = self.pack.manifest["target"]
        self.limit, self.batch_size = limit, batch_size
        self.mode, self.dtype = dequantize, dtype
        self.rewind()

    def __len__(self) -> int:
        """Number of batches one pass yields."""
        n = len(self.pack) if self.limit is None else min(self.limit, len(self.pack))
        return -(-n // self.batch_size)

    def rewind(self) -> None:
        self._served = 0
        self._it: Iterator = self.pack.batches(self.batch_size, epoch=0, shuffle=True, all_variants=True)

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        if self.limit is not None and self._served >= self.limit:
            return None
        batch = next(self._it, None)
        if batch is None:
            return None
        x = batch[0]
        if self.limit is not None:
            x = x[: self.limit - self._served]
        self._served += len(x)
        if self.mode is not None:
            x = dequantize(x, self.target, self.mode, self.dtype)
        return {self.input_name: x}

    def __iter__(self) -> "PackCalibrationReader":
        return self

    def __next__(self) -> Dict[str, np.ndarray]:
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item

    def close(self) -> None:
        self.pack.close()

    def __enter__(self) -> "PackCalibrationReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
