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

# The flatbuffer writer and the quantized layers (scripts/ is sys.path[0] when this runs as a script).
from tflite_writer import (  # noqa: F401
    ACT,
    OPS,
    OPTIONS,
    TENSOR_TYPES,
    TFLiteWriter,
    _quantized_fc,
    _reshape,
    asymmetric_int8,
    image_metadata,
    quantized_bias,
    symmetric_int8,
)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
FIXTURES = REPO / "tests" / "fixtures" / "tflite"

#: the class centres, in the model's float input domain, of the brightness fixtures
CENTRES = {"unit": (0.1, 0.5, 0.9), "signed": (-0.8, 0.0, 0.8)}
CLASS_NAMES = ("0_dark", "1_mid", "2_bright")


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
