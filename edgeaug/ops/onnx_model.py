"""The ``onnx`` recipe op: a user's image-to-image ONNX model as an augmentation.

Precompute expensive augmentations (style transfer, learned denoisers...)
offline, on the workstation::

    [[ops]]
    op = "onnx"
    p = 0.3
    model = "models/style.onnx"   # relative to the recipe file's folder
    input_range = "0-1"           # pixel scaling in and out: 0-1 | 0-255 | -1-1
    layout = "NCHW"               # the model's image layout: NCHW | NHWC
    noise_input = ""              # name of an extra noise input, if the model has one
    strength = [0.5, 1.0]         # blend: out = (1 - s) * image + s * model(image)

The model sees the target-size RGB image as ``(1, 3, H, W)`` (or NHWC) float32
(or float16/uint8, per its input type); a fixed-size model gets the image
resized to its size and its output resized back.  A noise input is filled
with standard normal values from a seed sampled per record and stored in its
params.  The model file's sha256 goes into the recipe options, so the
manifest pins the exact model; a model that changed since is an error.

Sessions run single-threaded (one per process, cached), so the output does
not depend on the worker count.  Like OpenCV, onnxruntime is not bit-exact
across CPUs: regenerate (``edgeaug verify --source``) on the build machine.
onnxruntime is imported only when the op is used.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from edgeaug.ops.base import Op, RecipePath, confined_path, register

RANGES = {"0-1": (1 / 255.0, 0.0), "0-255": (1.0, 0.0), "-1-1": (1 / 127.5, -1.0)}  # x = p * a + b
LAYOUTS = ("NCHW", "NHWC")
NP_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}
_SESSIONS: Dict[Tuple[str, str], Any] = {}  # (path, sha256) -> (session, spec); one per process


@register
class OnnxModel(Op):
    """Run an image-to-image ONNX model on the target-size RGB image."""

    name = "onnx"
    RANGES = {"strength": ((1.0, 1.0), (0.0, 1.0))}
    OPTIONS = {
        "model": (str, None),
        "sha256": (str, ""),
        "input_range": (str, "0-1"),
        "layout": (str, "NCHW"),
        "noise_input": (str, ""),
    }

    @classmethod
    def resolve_options(cls, options: Dict[str, Any], base: Optional[Path], fields: Any) -> Dict[str, Any]:
        """Recipe-time checks: resolve ``model`` against ``base``, pin its sha256, check its signature."""
        if options["input_range"] not in RANGES:
            fields.fail("input_range", f"{options['input_range']!r} is not one of {sorted(RANGES)}")
        if options["layout"] not in LAYOUTS:
            fields.fail("layout", f"{options['layout']!r} is not one of {list(LAYOUTS)}")
        text = options["model"]
        if isinstance(base, tuple):  # an untrusted recipe (a pack's manifest): confined to these folders
            path = confined_path(text, base, fields, "model", "model", folder=False)
        else:
            path = Path(text) if base is None or Path(text).is_absolute() else Path(base) / text
        if not text or not path.is_file():
            fields.fail("model", f"{text!r}: no such file (relative paths start at the recipe's folder)")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if options["sha256"] and options["sha256"] != digest:
            fields.fail("sha256", f"the recipe pins {options['sha256']}, but {text} has sha256 {digest}")
        ref = RecipePath(text, str(path.resolve()))
        try:
            _load(ref.path, digest, options["noise_input"])
        except ValueError as e:
            fields.fail("model", f"{text}: {e}")
        return {**options, "model": ref, "sha256": digest}

    def sample(self, rng: np.random.Generator, size) -> Dict[str, Any]:
        out = {"strength": self.uniform(rng, "strength")}
        if self.options["noise_input"]:
            out["seed"] = int(rng.integers(0, 2**63))
        return out

    def apply(self, image: np.ndarray, labels: Any, params: Dict[str, Any]):
        path = getattr(self.options["model"], "path", str(self.options["model"]))
        sess, spec = _load(path, self.options["sha256"], self.options["noise_input"])
        y = run_model(sess, spec, image, self.options, params.get("seed"))
        s = params["strength"]
        out = image.astype(np.float64) * (1.0 - s) + y * s
        return np.clip(np.rint(out), 0, 255).astype(np.uint8), labels


def _load(path: str, sha256: str, noise: str) -> Tuple[Any, Dict[str, Any]]:
    """The process's cached session for a model, checked against its pinned sha256."""
    key = (path, sha256)
    if key not in _SESSIONS:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
        if sha256 and hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError(f"{path} changed since the recipe pinned sha256 {sha256}")
        sess = _session(path, data)
        _SESSIONS[key] = (sess, _signature(sess, noise))
    return _SESSIONS[key]


def _session(path: str, data: bytes) -> Any:
    """A single-threaded CPU session: the same output bytes whatever the scheduling."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ValueError("the onnx op needs onnxruntime: pip install 'edgeaug[onnx]'") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise ValueError(f"{path}: onnxruntime cannot load it: {e}") from None


def _signature(sess: Any, noise: str) -> Dict[str, Any]:
    """Which input is the image, which the noise, and their types; errors say what is wrong."""
    inputs = {i.name: i for i in sess.get_inputs()}
    if noise and noise not in inputs:
        raise ValueError(f"no input named {noise!r} (noise_input); inputs: {sorted(inputs)}")
    images = [i for n, i in inputs.items() if n != noise]
    if len(images) != 1:
        raise ValueError(f"expected one image input besides the noise, got {sorted(inputs)}")
    img, out = images[0], sess.get_outputs()[0]
    if img.type not in NP_TYPES or len(img.shape) != 4 or len(out.shape) != 4:
        raise ValueError(
            f"expected a 4-d float32/float16/uint8 image input and output, got "
            f"input {img.type} {img.shape}, output {out.type} {out.shape}"
        )
    spec = {"image": img.name, "dtype": NP_TYPES[img.type], "shape": list(img.shape), "output": out.name}
    if noise:
        spec.update(
            noise=noise, noise_shape=list(inputs[noise].shape), noise_dtype=NP_TYPES.get(inputs[noise].type, np.float32)
        )
    return spec


def run_model(
    sess: Any, spec: Dict[str, Any], image: np.ndarray, options: Dict[str, Any], seed: Optional[int]
) -> np.ndarray:
    """The model's output for one RGB uint8 image, as float pixels (H, W, 3) in [0, 255]."""
    import cv2

    h, w = image.shape[:2]
    nchw = options["layout"] == "NCHW"
    mh, mw = spec["shape"][2:4] if nchw else spec["shape"][1:3]
    size = (mw if isinstance(mw, int) and mw > 0 else w, mh if isinstance(mh, int) and mh > 0 else h)
    img = image if size == (w, h) else cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    a, b = RANGES[options["input_range"]]
    x = img if spec["dtype"] is np.uint8 else (img.astype(np.float32) * np.float32(a) + np.float32(b))
    x = (x.transpose(2, 0, 1) if nchw else x)[None].astype(spec["dtype"])
    feeds = {spec["image"]: np.ascontiguousarray(x)}
    if "noise" in spec:
        shape = [
            d if isinstance(d, int) and d > 0 else (x.shape[i] if len(spec["noise_shape"]) == 4 else 1)
            for i, d in enumerate(spec["noise_shape"])
        ]
        noise = np.random.Generator(np.random.PCG64(seed)).standard_normal(shape)
        feeds[spec["noise"]] = noise.astype(spec["noise_dtype"])
    y = np.asarray(sess.run([spec["output"]], feeds)[0][0], np.float64)
    y = y.transpose(1, 2, 0) if nchw else y
    if y.shape[2] not in (1, 3):
        raise ValueError(f"the model's output has {y.shape[2]} channels; expected 1 or 3")
    if spec["dtype"] is not np.uint8:
        y = (y - b) / a
    y = np.clip(y, 0.0, 255.0)
    if y.shape[:2] != (h, w):
        y = cv2.resize(y.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, -1)
    return np.broadcast_to(y, (h, w, 3)) if y.shape[2] == 1 else y
