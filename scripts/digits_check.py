#!/usr/bin/env python3
"""A real end-to-end check on scikit-learn's digits: float vs adapted-quantized accuracy.

1. Write the 1797 8x8 digits as grayscale PNGs in class folders.
2. Train an MLP (64-32-10, scikit-learn) on the train sources of the split the
   pack build makes (``edgeaug.builder.pipeline.val_sources``: same seed, same fraction).
3. Export it to ONNX by hand (Reshape, MatMul+Add, Relu, MatMul+Add) with a
   float NHWC (N, 8, 8, 1) input in [0, 1].
4. ``target from-onnx`` -> float32 target -> float pack (originals only, --val)
   -> ``eval`` the float model on its val split.
5. ``quantize_static`` (QDQ, uint8 activations, int8 weights) calibrated with
   ``PackCalibrationReader`` on the float pack's train split.
6. ``target from-onnx`` on the QDQ model -> uint8 target -> quantized pack with
   the same seed and val fraction -> ``adapt-model`` -> ``eval``.

Prints float / sklearn / adapted-quantized accuracy on the same val sources and
the eval throughput (samples/s, reading batches + inference, same run).

    python scripts/digits_check.py [--work DIR] [--seed 0] [--val 0.2] [--json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RECIPE = 'variants = 0\ninclude_original = true\nresize = "squash"\n'  # originals only


def write_digits(root: Path) -> None:
    """One folder per digit; pixel = round(v * 255 / 16) of the 0..16 digit image."""
    import cv2
    from sklearn.datasets import load_digits

    d = load_digits()
    for i, (img, label) in enumerate(zip(d.images, d.target)):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / str(label) / f"{i:04d}.png"), np.rint(img * 255 / 16).astype(np.uint8))


def load_split(root: Path, seed: int, val: float):
    """(X_train, y_train, X_val, y_val) in [0, 1], split exactly as the pack build splits."""
    import cv2

    from edgeaug.builder.plan import val_sources
    from edgeaug.sources.scan import scan

    sset = scan(root)
    held = val_sources(sset, seed, val)
    X = np.stack([cv2.imread(str(s.path), cv2.IMREAD_GRAYSCALE).reshape(-1) / 255.0 for s in sset.sources])
    y = np.array([s.label for s in sset.sources])
    is_val = np.array([i in held for i in range(len(sset.sources))])
    return X[~is_val], y[~is_val], X[is_val], y[is_val]


def export_mlp(clf: Any, path: Path) -> Path:
    """The trained MLP as ONNX: float NHWC (N, 8, 8, 1) -> logits (N, 10)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    (w1, w2), (b1, b2) = clf.coefs_, clf.intercepts_
    inits = [
        numpy_helper.from_array(np.asarray(v, np.float32), k)
        for k, v in (("W1", w1), ("b1", b1), ("W2", w2), ("b2", b2))
    ]
    inits.append(numpy_helper.from_array(np.array([-1, 64], np.int64), "shape"))
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W1"], ["m1"]),
        helper.make_node("Add", ["m1", "b1"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["r1"]),
        helper.make_node("MatMul", ["r1", "W2"], ["m2"]),
        helper.make_node("Add", ["m2", "b2"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "digits_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 8, 1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    for k, v in (("mean", "0"), ("std", "1"), ("color", "GRAY")):
        p = model.metadata_props.add()
        p.key, p.value = k, v
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def run(work: Path, seed: int = 0, val: float = 0.2, seconds: float = 0.0) -> Dict[str, Any]:
    """Every step above in ``work``; returns the figures.

    With ``seconds`` > 0, also the device loop ``python -m edgeaug.loader bench
    --model`` on each train split (shuffled batches of 32) for that long.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from sklearn.neural_network import MLPClassifier

    from edgeaug.builder.pipeline import build
    from edgeaug.models.adapt import adapt_model
    from edgeaug.models.calibrate import PackCalibrationReader
    from edgeaug.models.evaluate import evaluate
    from edgeaug.models.from_model import write_target

    data = work / "digits"
    write_digits(data)
    Xtr, ytr, Xva, yva = load_split(data, seed, val)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter is fine here
        clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=400, random_state=seed).fit(Xtr, ytr)
    float_model = export_mlp(clf, work / "digits_f32.onnx")
    (work / "recipe.toml").write_text(RECIPE)
    tf = write_target(float_model, work / "targets" / "digits_f32.toml")
    build(data, work / "digits_f32.lmdb", tf, work / "recipe.toml", seed=seed, workers=1, val=val)
    r_float = evaluate(work / "digits_f32.lmdb", float_model)

    qdq = work / "digits_qdq.onnx"
    with PackCalibrationReader(
        str(work / "digits_f32.lmdb"), split="train", batch_size=32, dequantize="normalized"
    ) as reader:
        quantize_static(
            str(float_model),
            str(qdq),
            reader,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    tq = write_target(qdq, work / "targets" / "digits_u8.toml")
    build(data, work / "digits_u8.lmdb", tq, work / "recipe.toml", seed=seed, workers=1, val=val)
    adapted = work / "digits_u8.onnx"
    adapt_model(qdq, adapted)
    r_quant = evaluate(work / "digits_u8.lmdb", adapted)
    bench = {}
    if seconds > 0:
        from edgeaug.device.loader import Pack, bench_model

        for key, pack, model in (("float", "digits_f32.lmdb", float_model), ("quantized", "digits_u8.lmdb", adapted)):
            with Pack(str(work / pack)) as p:
                bench[key] = bench_model(p, str(model), 32, seconds)["records_per_s"]
    tflite = None
    if importlib.util.find_spec("ai_edge_litert") or importlib.util.find_spec("tflite_runtime"):
        from make_tflite_fixtures import digits_tflite  # beside this script: float and int8 .tflite, no TensorFlow

        tflite = digits_tflite(work, clf, data, seed, val)
    return {
        "tflite": tflite,
        "bench_samples_per_s": bench,
        "val_samples": r_float["samples"],
        "sklearn_accuracy": float(clf.score(Xva, yva)),
        "float_accuracy": r_float["accuracy"],
        "quantized_accuracy": r_quant["accuracy"],
        "float_samples_per_s": r_float["samples_per_s"],
        "quantized_samples_per_s": r_quant["samples_per_s"],
        "target": {
            "dtype": tq.dtype,
            "scale": tq.scale,
            "zero_point": tq.zero_point,
            "layout": tq.layout,
            "shape": list(tq.shape),
        },
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val", type=float, default=0.2)
    ap.add_argument("--seconds", type=float, default=1.0, help="loader bench --model time per model")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        r = run(args.work or Path(tmp), args.seed, args.val, args.seconds)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    gap = 100 * (r["float_accuracy"] - r["quantized_accuracy"])
    print(f"val sources: {r['val_samples']} (same split for both packs)")
    print(f"sklearn MLP      accuracy {100 * r['sklearn_accuracy']:.2f}%")
    print(f"float ONNX       accuracy {100 * r['float_accuracy']:.2f}%  {r['float_samples_per_s']:.0f} samples/s")
    print(
        f"adapted uint8    accuracy {100 * r['quantized_accuracy']:.2f}%  {r['quantized_samples_per_s']:.0f} samples/s"
    )
    if r["bench_samples_per_s"]:
        b = r["bench_samples_per_s"]
        print(
            f"loader bench --model (train split, batch 32): float {b['float']:.0f}, "
            f"uint8 {b['quantized']:.0f} samples/s (ratio {b['quantized'] / b['float']:.2f})"
        )
    print(f"gap {gap:+.2f} points; target {r['target']}")
    ok = abs(gap) <= 1.0
    if r["tflite"]:
        t = r["tflite"]
        tgap = 100 * (t["float_accuracy"] - t["int8_accuracy"])
        print(
            f"LiteRT float {100 * t['float_accuracy']:.2f}%, int8 {100 * t['int8_accuracy']:.2f}% "
            f"(gap {tgap:+.2f} points; int8 target {t['target']['dtype']} scale {t['target']['scale']:.6g} "
            f"zero point {t['target']['zero_point']})"
        )
        ok = ok and abs(tgap) <= 1.0
    else:
        print("LiteRT: not checked (pip install 'edgeaug[litert]')")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
