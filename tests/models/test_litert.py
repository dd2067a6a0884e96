"""LiteRT (TensorFlow Lite): targets read from real .tflite files, eval, bench and the representative dataset.

The fixtures in tests/fixtures/tflite are written by scripts/make_tflite_fixtures.py
(flatbuffers, no TensorFlow).  Reading them needs nothing but numpy; running them
needs ai-edge-litert, and those tests skip without it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from edgeaug.builder.pipeline import build
from edgeaug.config.targets import load_target, parse_target, quantization_lut, target_toml
from edgeaug.device.loader import Pack
from edgeaug.models import litert
from edgeaug.models.litert import (
    InterpreterMissing,
    bench_tflite,
    evaluate_tflite,
    inspect_tflite,
    range_normalization,
    representative_dataset,
    target_from_tflite,
    write_tflite_target,
)
from edgeaug.models.profile import ModelError

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "tests" / "fixtures" / "tflite"
INT8, UINT8, FLOAT, PER_CHANNEL = (
    FIX / n for n in ("int8_gray.tflite", "uint8_edgetpu.tflite", "float32_rgb.tflite", "int8_per_channel.tflite")
)
RECIPE = 'variants = 0\ninclude_original = true\nresize = "squash"\n'  # originals only: known answers


def fixture_script():
    from scripts_under_test import load

    return load("make_tflite_fixtures")


def interpreter(path):
    pytest.importorskip("ai_edge_litert")
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    return it


# --- reading the flatbuffer (no interpreter) ---------------------------------------------


def test_fixtures_are_small_and_regenerable(tmp_path):
    for p in (INT8, UINT8, FLOAT, PER_CHANNEL):
        assert p.is_file() and p.stat().st_size < 100_000
    pytest.importorskip("flatbuffers")
    for p in fixture_script().write_fixtures(tmp_path):  # the script still writes what is committed
        fresh, committed = inspect_tflite(p), inspect_tflite(FIX / p.name)
        assert (fresh.inputs, fresh.outputs, fresh.metadata) == (
            committed.inputs,
            committed.outputs,
            committed.metadata,
        )


def test_inspect_reads_input_quantization_and_metadata():
    i8 = inspect_tflite(INT8)
    (t,) = i8.inputs
    assert (t.name, t.shape, t.dtype, t.zero_point) == ("serving_default_image:0", (-1, 8, 8, 1), "int8", (-128,))
    assert t.scale == (pytest.approx(1 / 255),) and not t.per_channel and i8.metadata == ({},)
    u8 = inspect_tflite(UINT8)
    assert u8.inputs[0].shape == (1, 8, 8, 3) and u8.inputs[0].dtype == "uint8"  # fixed batch, Edge TPU style
    assert (u8.inputs[0].scale, u8.inputs[0].zero_point) == ((0.0078125,), (128,))
    assert u8.metadata == ({"color": "RGB", "mean": (127.5,), "std": (127.5,)},)
    f = inspect_tflite(FLOAT)
    assert f.inputs[0].dtype == "float32" and not f.inputs[0].quantized
    assert f.metadata[0]["mean"] == (127.5,) * 3 and f.outputs[0].name == "probs"
    pc = inspect_tflite(PER_CHANNEL).inputs[0]
    assert pc.per_channel and pc.quantized_dimension == 3 and len(pc.scale) == 3


def test_inspect_agrees_with_the_interpreter():
    for p in (INT8, UINT8, FLOAT, PER_CHANNEL):
        d = interpreter(p).get_input_details()[0]
        t = inspect_tflite(p).inputs[0]
        assert d["name"] == t.name and np.dtype(d["dtype"]).name == t.dtype
        assert list(d["shape_signature"]) == list(t.shape)
        qp = d["quantization_parameters"]
        assert np.allclose(qp["scales"], t.scale) and list(qp["zero_points"]) == list(t.zero_point)
        assert qp["quantized_dimension"] == t.quantized_dimension


def test_target_from_int8_model():
    t = target_from_tflite(INT8)
    assert t == {
        "name": "int8_gray",
        "device": {"name": "int8_gray", "arch": "any", "word_size": 64},
        "input": {
            "name": "serving_default_image:0",
            "height": 8,
            "width": 8,
            "channels": 1,
            "layout": "NHWC",
            "color": "GRAY",
            "dtype": "int8",
            "scale": pytest.approx(1 / 255),
            "zero_point": -128,
            "mean": [0.0],
            "std": [1.0],
        },
    }
    assert list(t["input"]) == [
        "name",
        "height",
        "width",
        "channels",
        "layout",
        "color",
        "dtype",
        "scale",
        "zero_point",
        "mean",
        "std",
    ]  # target from-onnx's order


def test_target_normalization_from_metadata_and_flags():
    f = target_from_tflite(FLOAT, name="cam")
    assert f["name"] == "cam" and f["input"]["dtype"] == "float32" and "scale" not in f["input"]
    assert f["input"]["mean"] == f["input"]["std"] == [0.5] * 3 and f["input"]["color"] == "RGB"
    g = target_from_tflite(
        FLOAT,
        mean=[123.675, 116.28, 103.53],
        std=[0.229, 0.224, 0.225],
        color="BGR",
        device={"arch": "aarch64", "name": "pi"},
    )
    assert g["input"]["mean"] == pytest.approx([0.485, 0.456, 0.406]) and g["input"]["std"] == [0.229, 0.224, 0.225]
    assert g["input"]["color"] == "BGR" and g["device"] == {"name": "pi", "arch": "aarch64", "word_size": 64}


def test_coral_edgetpu_target_matches_an_edgetpu_style_model(tmp_path):
    coral = load_target("coral-edgetpu")
    t = write_tflite_target(UINT8, tmp_path / "tpu.toml")
    for k in ("dtype", "scale", "zero_point", "layout", "color", "channels", "mean", "std"):
        assert getattr(t, k) == getattr(coral, k), k
    # the bytes a pack stores for it are the same for every pixel value
    lut = quantization_lut
    assert np.array_equal(lut(t), lut(coral))
    text = (tmp_path / "tpu.toml").read_text()
    assert "edgeaug target from-tflite" in text and "uint8_edgetpu.tflite" in text


def test_per_channel_input_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match=r"int8_per_channel\.tflite: input 'input' is quantized per channel"):
        target_from_tflite(PER_CHANNEL)
    with pytest.raises(ModelError, match="per channel"):
        write_tflite_target(PER_CHANNEL, tmp_path / "pc.toml")
    assert not (tmp_path / "pc.toml").exists()


def test_size_layout_and_input_errors():
    with pytest.raises(ModelError, match="fixed at 8, not 16"):
        target_from_tflite(INT8, size=(16, 16))
    assert target_from_tflite(INT8, size=(8, 8))["input"]["height"] == 8
    with pytest.raises(ModelError, match="no input named 'x'"):
        target_from_tflite(INT8, input_name="x")
    with pytest.raises(ModelError, match="is not NCHW or NHWC"):
        target_from_tflite(INT8, layout="CHW")
    with pytest.raises(ModelError, match="3 values for 1 channels"):
        target_from_tflite(INT8, mean=[0.1, 0.2, 0.3])


def test_unreadable_files(tmp_path):
    bad = tmp_path / "model.onnx.tflite"
    bad.write_bytes(b"\x08\x07\x12\x04this is not a flatbuffer at all")
    with pytest.raises(ModelError, match="not a TFLite model"):
        target_from_tflite(bad)
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(FLOAT.read_bytes()[:200])
    with pytest.raises(ModelError, match="cut.tflite: not a readable TFLite flatbuffer"):
        inspect_tflite(cut)
    with pytest.raises(ModelError, match="cannot read"):
        inspect_tflite(tmp_path / "missing.tflite")


def test_range_normalization_of_integer_inputs():
    assert range_normalization("int8", 1 / 255, -128) == (0.0, 1.0, True)  # Keras converter, [0, 1]
    assert range_normalization("uint8", 1 / 255, 0) == (0.0, 1.0, True)
    assert range_normalization("uint8", 1 / 128, 128) == (0.5, 0.5, True)  # Edge TPU, [-1, 1)
    assert range_normalization("int8", 1 / 128, 0) == (0.5, 0.5, True)
    mean, std, standard = range_normalization("uint8", 0.02, 10)  # [-0.2, 4.9]: pixels onto the range
    assert not standard
    t = {
        "name": "x",
        "device": {"name": "d", "arch": "any", "word_size": 64},
        "input": {
            "name": "x",
            "height": 2,
            "width": 2,
            "channels": 1,
            "layout": "NHWC",
            "color": "GRAY",
            "dtype": "uint8",
            "scale": 0.02,
            "zero_point": 10,
            "mean": [mean],
            "std": [std],
        },
    }
    parse = parse_target
    lut = quantization_lut
    assert np.array_equal(lut(parse({k: v for k, v in t.items() if k != "name"}, "x"))[:, 0], np.arange(256))


def test_missing_interpreter_says_how_to_install(monkeypatch):
    for mod in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter"):
        monkeypatch.setitem(sys.modules, mod, None)  # makes the import fail
    with pytest.raises(InterpreterMissing, match=r"pip install 'edgeaug\[litert\]'") as e:
        litert.interpreter_class()
    assert isinstance(e.value, ImportError) and isinstance(e.value, ValueError)
    assert "tflite-runtime" in str(e.value)


def test_importing_the_module_loads_no_interpreter_or_heavy_library():
    import subprocess

    code = (
        "import sys; import edgeaug.models.litert; "
        "print(sorted(m for m in ('ai_edge_litert', 'tflite_runtime', 'tensorflow', 'onnxruntime', 'onnx', 'cv2') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


# --- running models on packs --------------------------------------------------------------


@pytest.fixture(scope="module")
def packs(tmp_path_factory):
    """Packs of plain dark/mid/bright images built with each fixture's own target."""
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("cv2")
    mk = fixture_script()
    d = tmp_path_factory.mktemp("litert")
    (d / "recipe.toml").write_text(RECIPE)
    gray = mk.brightness_images(d / "gray", 1, per_class=4)
    rgb = mk.brightness_images(d / "rgb", 3, per_class=4)
    out = {}
    for key, model, src in (("int8", INT8, gray), ("uint8", UINT8, rgb), ("float", FLOAT, rgb)):
        target = write_tflite_target(model, d / f"{key}.toml")
        build(src, d / f"{key}.lmdb", target, d / "recipe.toml", seed=1, workers=1, val=0.25)
        out[key] = d / f"{key}.lmdb"
    return out


def _pack(path, split="train"):
    return Pack(str(path), split)


def test_pack_holds_tflites_own_input_quantization(packs):
    with _pack(packs["int8"]) as pack:  # int8, scale 1/255, zero point -128: q = pixel - 128
        x, _ = next(pack.batches(len(pack), shuffle=False))
        it = interpreter(INT8)
        d = it.get_input_details()[0]
        scale, zp = d["quantization"]
        pixels = (x.astype(np.int16) + 128).astype(np.float32) / 255.0  # the float model input
        assert np.array_equal(np.clip(np.rint(pixels / scale) + zp, -128, 127).astype(np.int8), x)


def test_eval_accuracy_matches_a_record_by_record_count(packs):
    for key, model, batch in (("int8", INT8, 5), ("uint8", UINT8, 1), ("float", FLOAT, 5)):
        r = evaluate_tflite(packs[key], model, batch_size=5)
        assert r["split"] == "val" and r["samples"] == r["labelled"] == 3 and r["batch"] == batch
        it = interpreter(model)
        d, o = it.get_input_details()[0], it.get_output_details()[0]
        correct = 0
        with _pack(packs[key], "val") as pack:
            for i in range(len(pack)):
                it.set_tensor(d["index"], np.ascontiguousarray(pack[i][0][None]))
                it.invoke()
                correct += int(np.argmax(it.get_tensor(o["index"])[0])) == pack[i][1]
        assert r["correct"] == correct == 3 and r["accuracy"] == 1.0, key  # plain images: every answer known
        assert r["samples_per_s"] > 0 and r["model_samples_per_s"] >= r["samples_per_s"]
        t = evaluate_tflite(packs[key], model, split="train", batch_size=4, limit=7)
        assert t["split"] == "train" and t["samples"] == 7 and t["accuracy"] == 1.0


def test_eval_refuses_a_model_that_does_not_take_the_pack(packs):
    with pytest.raises(ModelError, match="is float32 but the pack holds uint8.*target from-tflite"):
        evaluate_tflite(packs["uint8"], FLOAT)
    with pytest.raises(ModelError, match=r"shape \[-1, 8, 8, 1\]; the pack's records are \[8, 8, 3\]"):
        evaluate_tflite(_int8_rgb_pack(packs), INT8)


def _int8_rgb_pack(packs):
    """An int8 pack of 3-channel records (a target made by hand) for the shape check."""
    d = packs["int8"].parent
    out = d / "int8_rgb.lmdb"
    if not out.exists():
        t = target_from_tflite(INT8)
        t["input"].update(channels=3, color="RGB", mean=[0.0] * 3, std=[1.0] * 3)
        t.pop("name")
        (d / "int8_rgb.toml").write_text(target_toml(t))
        build(d / "rgb", out, load_target(d / "int8_rgb.toml"), d / "recipe.toml", seed=1, workers=1)
    return out


def test_eval_warns_when_the_pack_was_quantized_otherwise(packs, tmp_path):
    t = target_from_tflite(UINT8)
    t["input"].update(zero_point=0, scale=1 / 255)  # a hand-written uint8 target that is not the model's
    t.pop("name")
    (tmp_path / "other.toml").write_text(target_toml(t))
    build(
        packs["uint8"].parent / "rgb",
        tmp_path / "other.lmdb",
        load_target(tmp_path / "other.toml"),
        packs["uint8"].parent / "recipe.toml",
        seed=1,
        workers=1,
    )
    with pytest.warns(UserWarning, match="differs from the pack target's"):
        evaluate_tflite(tmp_path / "other.lmdb", UINT8)


def test_bench_runs_the_model(packs):
    with _pack(packs["int8"]) as pack:
        r = bench_tflite(pack, INT8, batch_size=4, seconds=0.2)
        assert r["records_per_s"] > 0 and r["input"] == "serving_default_image:0" and r["batch"] == 4
    with _pack(packs["uint8"]) as pack:
        assert bench_tflite(pack, UINT8, batch_size=4, seconds=0.1)["batch"] == 1  # fixed batch
        with pytest.raises(ValueError, match="the pack holds uint8"):
            bench_tflite(pack, FLOAT, seconds=0.1)


def test_representative_dataset_dequantizes_as_the_calibration_reader(packs):
    from edgeaug.models.calibrate import dequantize

    gen = representative_dataset(packs["uint8"], limit=5)
    samples = list(gen())
    again = list(gen)  # callable (the converter calls it) or iterable; the same seeded order each time
    assert len(samples) == len(again) == 5
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(samples, again))
    with _pack(packs["uint8"]) as pack:
        target = pack.manifest["target"]
        stored = {pack[i][0].tobytes(): pack[i][0].copy() for i in range(len(pack))}
    for item in samples:
        assert isinstance(item, list) and len(item) == 1
        x = item[0]
        assert x.dtype == np.float32 and x.shape == (1, 8, 8, 3)
        q = np.rint(x / np.float32(1 / 128) + 128).astype(np.uint8)  # invert (q - 128) / 128 exactly
        assert q.tobytes() in stored  # it is a stored record, de-quantized
        assert np.array_equal(x, (q.astype(np.float32) - 128) / 128)
        assert np.array_equal(x, dequantize(q, target, "normalized"))
    pixels = next(iter(representative_dataset(packs["uint8"], limit=1, dequantize="pixels")))[0]
    first = samples[0][0]
    assert np.allclose(pixels, first * 0.5 + 0.5) and pixels.min() >= 0 and pixels.max() <= 1
    with pytest.raises(ValueError, match="converter wants floats"):
        representative_dataset(packs["uint8"], dequantize=None)
    # a float pack: the stored floats as they are
    ((x,),) = list(representative_dataset(packs["float"], limit=1))
    with _pack(packs["float"]) as pack:
        assert any(np.array_equal(x[0], pack[i][0]) for i in range(len(pack)))
