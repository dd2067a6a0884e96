"""Targets from ONNX models (from-onnx) and models adapted to take the pack's tensor."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime.quantization")

from onnx import numpy_helper  # noqa: E402
from onnx_models import ArrayReader, conv_classifier, nhwc_mlp, quantize  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from edgeaug.cli import app  # noqa: E402
from edgeaug.config.targets import QRANGE, load_target  # noqa: E402
from edgeaug.models.adapt import adapt_model  # noqa: E402
from edgeaug.models.from_model import target_from_onnx, write_target  # noqa: E402
from edgeaug.models.onnx_io import find_input_quant  # noqa: E402
from edgeaug.models.profile import ModelError  # noqa: E402

IMAGENET = {"mean": "123.675,116.28,103.53", "std": "[58.395, 57.12, 57.375]"}


def calib(shape, n=8, seed=0, lo=0.0, hi=1.0):
    rng = np.random.default_rng(seed)
    return [(lo + (hi - lo) * rng.random(shape)).astype(np.float32) for _ in range(n)]


def input_q_params(path, input_name="x"):
    """Scale and zero point of the QuantizeLinear the test model's input reaches (read independently)."""
    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    feeds = {input_name}
    for node in m.graph.node:  # graph order is topological: follow the input forward
        if node.input and node.input[0] in feeds:
            if node.op_type == "QuantizeLinear":
                return float(inits[node.input[1]]), inits[node.input[2]]
            feeds.add(node.output[0])
    raise AssertionError("no input QuantizeLinear")


def run(path, feed, int8_allowed=None, optimized=None):
    """Run a model; ``int8_allowed`` pins onnxruntime's CPU-dependent QDQ choice.

    onnxruntime's default for ``session.qdqisint8allowed`` is "1" on ARM and on
    x86 with VNNI, "0" on x86 without it (AVX2 only): there it rewrites int8
    Q->DQ pairs to uint8.  Pinning both values tests both kinds of CPU anywhere.
    """
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if int8_allowed is not None:
        opts.add_session_config_entry("session.qdqisint8allowed", int8_allowed)
    if optimized is not None:
        opts.optimized_model_filepath = str(optimized)
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: feed})[0]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    out = {"conv": conv_classifier(d / "conv.onnx", meta=IMAGENET), "mlp": nhwc_mlp(d / "mlp.onnx")}
    out["conv_q"] = quantize(out["conv"], d / "conv_q.onnx", ArrayReader("x", calib((1, 3, 8, 8), lo=-2, hi=2)))
    out["conv_q8"] = quantize(
        out["conv"], d / "conv_q8.onnx", ArrayReader("x", calib((1, 3, 8, 8), lo=-2, hi=2.5)), activation="int8"
    )
    out["mlp_q"] = quantize(out["mlp"], d / "mlp_q.onnx", ArrayReader("x", calib((1, 8, 8, 1))))
    return out


# --- from-onnx ------------------------------------------------------------------


def test_float_model_target_reads_shape_layout_and_metadata_normalization(models, tmp_path):
    t = write_target(models["conv"], tmp_path / "conv.toml")
    assert (t.input_name, t.dtype, t.layout, t.height, t.width, t.channels, t.color) == (
        "x",
        "float32",
        "NCHW",
        8,
        8,
        3,
        "RGB",
    )
    # metadata in 0-255 units becomes fractions of full scale
    assert t.mean == pytest.approx((0.485, 0.456, 0.406)) and t.std == pytest.approx((0.229, 0.224, 0.225))
    assert load_target(tmp_path / "conv.toml") == t


def test_flags_override_metadata(models):
    t = target_from_onnx(models["conv"], mean=[0.5], std=[0.25], color="BGR")
    assert t["input"]["mean"] == [0.5] * 3 and t["input"]["std"] == [0.25] * 3
    assert t["input"]["color"] == "BGR"


@pytest.mark.parametrize("key,act", [("conv_q", "uint8"), ("conv_q8", "int8")])
def test_qdq_model_target_takes_the_input_quantizer(models, key, act, tmp_path):
    scale, zp = input_q_params(models[key])
    t = write_target(models[key], tmp_path / "q.toml")
    assert t.dtype == act == zp.dtype.name
    assert t.scale == float(np.float32(scale)) and t.zero_point == int(zp)
    assert t.layout == "NCHW" and t.mean == pytest.approx((0.485, 0.456, 0.406))


def test_quantizer_behind_cast_and_reshape_is_found(models):
    m = onnx.load(str(models["mlp_q"]))
    assert m.graph.node[[n.op_type for n in m.graph.node].index("Cast")].input[0] == "x"
    scale, zp = input_q_params(models["mlp_q"])
    t = target_from_onnx(models["mlp_q"])["input"]
    assert (t["layout"], t["channels"], t["color"], t["dtype"]) == ("NHWC", 1, "GRAY", "uint8")
    assert t["scale"] == float(np.float32(scale)) and t["zero_point"] == int(zp)


def test_dynamic_size_needs_size_flag(tmp_path):
    import onnx_models

    m = onnx_models.image_model(tmp_path / "dyn.onnx", "invert")  # (N, 3, H, W)
    with pytest.raises(ModelError, match="--size"):
        target_from_onnx(m)
    t = target_from_onnx(m, size=(32, 48))["input"]
    assert (t["height"], t["width"]) == (32, 48)
    with pytest.raises(ModelError, match="fixed at 8"):
        target_from_onnx(conv_classifier(tmp_path / "c.onnx"), size=(16, 16))


def test_ambiguous_layout_and_bad_files_are_clear_errors(tmp_path):
    amb = nhwc_mlp(tmp_path / "amb.onnx", h=1, w=8, c=1)  # (N, 1, 8, 1): NCHW or NHWC?
    with pytest.raises(ModelError, match="--layout"):
        target_from_onnx(amb)
    assert target_from_onnx(amb, layout="NHWC")["input"]["height"] == 1
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a model")
    with pytest.raises(ModelError, match="junk.onnx"):
        target_from_onnx(junk)


def test_cli_from_onnx_writes_a_loadable_profile(models, tmp_path):
    out = tmp_path / "t" / "mine.toml"
    r = CliRunner().invoke(
        app, ["target", "from-onnx", str(models["conv_q"]), "-o", str(out), "--arch", "aarch64", "--device", "Pi 5"]
    )
    assert r.exit_code == 0, r.output
    t = load_target(out)
    assert t.name == "mine" and t.dtype == "uint8" and t.device.arch == "aarch64" and t.device.name == "Pi 5"
    assert "conv_q.onnx" in out.read_text() and str(tmp_path) not in out.read_text()
    r = CliRunner().invoke(app, ["target", "from-onnx", str(tmp_path / "missing.onnx"), "-o", str(out)])
    assert r.exit_code == 2 and "missing.onnx" in r.output


# --- adapt-model ------------------------------------------------------------------


def prequantize(x, scale, zp):
    lo, hi = QRANGE[zp.dtype.name]
    return np.clip(np.rint(x / np.float32(scale)) + int(zp), lo, hi).astype(zp.dtype)


@pytest.mark.parametrize("int8_allowed", ["0", "1"])
@pytest.mark.parametrize("key,shape", [("conv_q", (16, 3, 8, 8)), ("conv_q8", (16, 3, 8, 8)), ("mlp_q", (16, 8, 8, 1))])
def test_adapted_qdq_model_is_bit_identical_to_the_float_path(models, key, shape, int8_allowed, tmp_path):
    out = tmp_path / f"{key}_u8.onnx"
    res = adapt_model(models[key], out)
    scale, zp = input_q_params(models[key])
    assert res.kind == "qdq" and res.dtype == zp.dtype.name
    m = onnx.load(str(out))
    quant, _ = find_input_quant(m, m.graph.input[0].name)
    assert quant.adapted and (quant.node.op_type == "QuantizeLinear") == (key == "conv_q8")  # int8 keeps its Q
    rng = np.random.default_rng(7)
    x = (rng.random(shape) * 5 - 2.5).astype(np.float32)  # includes values that saturate
    q = prequantize(x, scale, zp)
    assert q.min() == QRANGE[zp.dtype.name][0] and q.max() == QRANGE[zp.dtype.name][1]
    y_float, y_adapted = run(models[key], x, int8_allowed), run(out, q, int8_allowed)
    assert y_float.dtype == y_adapted.dtype and np.array_equal(y_float, y_adapted)
    with pytest.raises(Exception, match="Unexpected input data type"):  # the original refuses integers
        run(models[key], q, int8_allowed)


@pytest.mark.parametrize("int8_allowed", ["0", "1"])
@pytest.mark.parametrize("key", ["conv_q", "conv_q8", "mlp_q"])
def test_adapted_model_runs_the_same_kernels_as_the_original(models, key, int8_allowed, tmp_path):
    # Equal outputs on one CPU do not prove equal kernels: on VNNI CPUs a float Conv and a
    # u8s8 QLinearConv can agree where AVX2's saturating u8s8 kernel does not.  So compare
    # the graphs onnxruntime actually runs, after its optimizer, under both CPU choices.
    adapted = tmp_path / "adapted.onnx"
    adapt_model(models[key], adapted)
    shape = (1, 8, 8, 1) if key == "mlp_q" else (1, 3, 8, 8)
    scale, zp = input_q_params(models[key])
    x = np.zeros(shape, np.float32)
    run(models[key], x, int8_allowed, optimized=tmp_path / "orig_opt.onnx")
    run(adapted, prequantize(x, scale, zp), int8_allowed, optimized=tmp_path / "adapted_opt.onnx")
    ops = [[n.op_type for n in onnx.load(str(tmp_path / f)).graph.node] for f in ("orig_opt.onnx", "adapted_opt.onnx")]
    fused = [o for o in ops[0] if o.startswith("QLinear")]
    assert fused and [o for o in ops[1] if o.startswith("QLinear")] == fused


@pytest.mark.parametrize("key", ["conv_q", "conv_q8"])
def test_adapted_model_target_matches_the_original(models, key, tmp_path):
    out = tmp_path / "a.onnx"
    adapt_model(models[key], out)
    a, b = target_from_onnx(models[key]), target_from_onnx(out)
    assert a["input"] == b["input"]
    with pytest.raises(ModelError, match="already"):
        adapt_model(out, tmp_path / "again.onnx")


def test_float_model_needs_insert_preprocess(models, tmp_path):
    with pytest.raises(ModelError, match="insert-preprocess"):
        adapt_model(models["conv"], tmp_path / "x.onnx")


@pytest.mark.parametrize("key,layout", [("conv", "NCHW"), ("mlp", "NHWC")])
def test_insert_preprocess_takes_uint8_nhwc_pixels(models, key, layout, tmp_path):
    out = tmp_path / f"{key}_pre.onnx"
    res = adapt_model(models[key], out, insert_preprocess=True)
    m = onnx.load(str(models[key]))
    meta = {p.key: p.value for p in m.metadata_props}
    c = 3 if key == "conv" else 1
    mean = np.array([float(v) for v in meta["mean"].split(",")]) / 255 if "mean" in meta else np.zeros(c)
    std = np.array([float(v.strip("[] ")) for v in meta["std"].split(",")]) / 255 if "std" in meta else np.ones(c)
    assert res.kind == "preprocess" and res.dtype == "uint8" and res.shape[1:] == (8, 8, c)
    p = np.random.default_rng(3).integers(0, 256, (5, 8, 8, c), dtype=np.uint8)
    x = ((p / 255.0 - mean) / std).astype(np.float32)
    if layout == "NCHW":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    np.testing.assert_allclose(run(out, p), run(models[key], x), rtol=1e-5, atol=1e-5)
    t = target_from_onnx(out)["input"]  # raw pixels: the stored byte is the pixel
    assert (t["dtype"], t["layout"], t["zero_point"], t["mean"], t["std"]) == ("uint8", "NHWC", 0, [0.0] * c, [1.0] * c)
    assert t["scale"] == pytest.approx(1 / 255)


def test_cli_adapt_model(models, tmp_path):
    out = tmp_path / "cli_u8.onnx"
    r = CliRunner().invoke(app, ["adapt-model", str(models["mlp_q"]), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "QuantizeLinear removed" in r.output and out.exists()
    r = CliRunner().invoke(app, ["adapt-model", str(models["mlp"]), "-o", str(tmp_path / "n.onnx")])
    assert r.exit_code == 2 and "no input QuantizeLinear to remove" in r.output


def test_input_that_also_feeds_float_nodes_is_not_adapted(models, tmp_path):
    """A QDQ model whose float input has a second consumer cannot take integers: say so."""
    from onnx import TensorProto, helper

    m = onnx.load(str(models["conv_q"]))
    m.graph.node.append(helper.make_node("Shape", ["x"], ["x_shape"]))
    m.graph.output.append(helper.make_tensor_value_info("x_shape", TensorProto.INT64, [4]))
    path = tmp_path / "two.onnx"
    onnx.save(m, str(path))
    with pytest.warns(UserWarning, match="feeds 2 nodes"):
        assert target_from_onnx(path)["input"]["dtype"] == "float32"
    with pytest.raises(ModelError, match="no input QuantizeLinear to remove .*feeds 2 nodes"):
        adapt_model(path, tmp_path / "two_u8.onnx")


def test_written_target_is_valid_toml_for_any_model_file_name(models, tmp_path):
    # Non-BMP characters, quotes and backslashes in the name end up in the profile's name and comment.
    odd = tmp_path / 'cat \U0001f431 "q" \\ model.onnx'
    odd.write_bytes(models["conv"].read_bytes())
    t = write_target(odd, tmp_path / "t.toml")
    assert t.device.name == 'cat \U0001f431 "q" \\ model'
    assert load_target(tmp_path / "t.toml") == t
