"""Item 7's real check: scikit-learn digits, float vs adapted-quantized accuracy on the same val split."""

from __future__ import annotations

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime.quantization")

from scripts_under_test import load  # noqa: E402

digits_check = load("digits_check")


def test_quantized_digits_classifier_within_one_point_of_float(tmp_path):
    r = digits_check.run(tmp_path, seed=0, val=0.2)
    assert r["val_samples"] == 359  # 20% of each digit's ~180 sources
    # the hand-exported float model reproduces scikit-learn's predictions (within one sample)
    assert abs(r["float_accuracy"] - r["sklearn_accuracy"]) <= 1 / r["val_samples"] + 1e-12
    assert r["float_accuracy"] > 0.9
    assert abs(r["float_accuracy"] - r["quantized_accuracy"]) <= 0.01
    assert r["target"]["dtype"] == "uint8" and r["target"]["shape"] == [8, 8, 1]


def test_tflite_int8_digits_classifier_within_one_point_of_float(tmp_path):
    pytest.importorskip("ai_edge_litert")
    t = digits_check.run(tmp_path, seed=0, val=0.2)["tflite"]
    assert t["val_samples"] == 359 and t["float_accuracy"] > 0.9
    assert abs(t["float_accuracy"] - t["int8_accuracy"]) <= 0.01
    assert t["float_target"] == {"dtype": "float32", "mean": [0.0], "std": [1.0], "color": "GRAY"}
    q = t["target"]  # TFLite's own input quantization, read from the int8 model
    assert (q["dtype"], q["zero_point"], q["shape"], q["mean"], q["std"]) == ("int8", -128, [8, 8, 1], [0.0], [1.0])
    assert q["scale"] == pytest.approx(1 / 255)
