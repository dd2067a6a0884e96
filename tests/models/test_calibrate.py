"""Calibrating quantize_static on a pack: the reader, and de-quantizing the stored tensor."""

from __future__ import annotations

import numpy as np
import pytest

from edgeaug.builder.pipeline import build
from edgeaug.config.targets import QRANGE, parse_target, quantize
from edgeaug.device.loader import Pack
from edgeaug.models.calibrate import PackCalibrationReader, dequantize

DEVICE = {"name": "test", "arch": "any", "word_size": 64}


def target(dtype, layout, scale=None, zp=None, mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.3), size=12):
    inp = {
        "name": "img",
        "height": size,
        "width": size,
        "channels": 3,
        "layout": layout,
        "color": "RGB",
        "dtype": dtype,
        "mean": list(mean),
        "std": list(std),
    }
    if scale is not None:
        inp.update(scale=scale, zero_point=zp)
    return parse_target({"device": DEVICE, "input": inp}, f"t_{dtype}_{layout}")


TARGETS = [
    target("uint8", "NHWC", 4 / 255, 128),
    target("int8", "NCHW", 0.02, -3),
    target("float32", "NCHW"),
    target("float16", "NHWC"),
]


@pytest.mark.parametrize("t", TARGETS, ids=lambda t: t.name)
def test_dequantize_inverts_the_stored_tensor(t):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, t.height, t.width, 3), dtype=np.uint8)
    x = np.stack([quantize(im, t) for im in images])
    c_axis, shape = (1, (1, 3, 1, 1)) if t.layout == "NCHW" else (3, (1, 1, 1, 3))
    mean, std = np.reshape(t.mean, shape), np.reshape(t.std, shape)
    norm, pix = dequantize(x, t.to_dict(), "normalized"), dequantize(x, t.to_dict(), "pixels")
    assert norm.dtype == pix.dtype == np.float32 and norm.shape == pix.shape == x.shape
    if t.dtype in ("uint8", "int8"):
        want = (x.astype(np.float64) - t.zero_point) * t.scale
        np.testing.assert_allclose(norm, want, rtol=1e-6, atol=1e-7)
        bound = t.scale / 2 * std  # rounding error of one quantization step, in pixel units
    else:
        np.testing.assert_array_equal(norm, x.astype(np.float32))
        bound = 1e-3 * std  # float16 rounding
    p = images.astype(np.float64) / 255
    p = p.transpose(0, 3, 1, 2) if t.layout == "NCHW" else p
    lo, hi = (
        ((QRANGE[t.dtype][0] - t.zero_point) * t.scale, (QRANGE[t.dtype][1] - t.zero_point) * t.scale)
        if t.dtype in QRANGE
        else (-np.inf, np.inf)
    )
    unclipped = ((p - mean) / std >= lo) & ((p - mean) / std <= hi)  # inside the integer range
    assert unclipped.mean() > 0.5
    err = np.abs(pix - p) - (bound + 1e-6)
    assert np.all(err[np.broadcast_to(unclipped, err.shape)] <= 0)
    assert np.moveaxis(pix, c_axis, -1).shape[-1] == 3


@pytest.fixture(scope="module")
def pack8(shapes_dir, tmp_path_factory):
    """An int8 NCHW 12x12 pack with a val split."""
    out = tmp_path_factory.mktemp("cal") / "p.lmdb"
    build(shapes_dir, out, TARGETS[1], variants=2, seed=5, workers=1, val=0.25)
    return out


def test_reader_serves_the_split_in_batches_and_rewinds(pack8):
    r = PackCalibrationReader(str(pack8), split="train", batch_size=4)
    first = [b["img"] for b in r]
    with Pack(str(pack8), "train") as p:
        n = len(p)
        stored = {p[i][0].tobytes() for i in range(n)}
    assert sum(len(b) for b in first) == n == 16 * 3 and len(first) == len(r) == -(-n // 4)
    assert all(b.dtype == np.int8 and b.shape[1:] == (3, 12, 12) for b in first)
    assert {x.tobytes() for b in first for x in b} == stored  # every record once
    assert r.get_next() is None
    r.rewind()
    again = [b["img"] for b in r]
    assert all(np.array_equal(a, b) for a, b in zip(first, again)) and len(first) == len(again)
    r.close()


def test_reader_limit_dequantize_and_input_name(pack8):
    with PackCalibrationReader(
        str(pack8), split="val", input_name="x", limit=5, batch_size=2, dequantize="normalized"
    ) as r:
        batches = list(r)
        assert len(r) == 3
    assert [len(b["x"]) for b in batches] == [2, 2, 1]
    x = batches[0]["x"]
    assert x.dtype == np.float32
    assert np.all(np.isclose(x / 0.02 - np.rint(x / 0.02), 0, atol=1e-4))  # (q - zp) * scale


def test_reader_is_an_onnxruntime_calibration_reader(pack8):
    cal = pytest.importorskip("onnxruntime.quantization")
    with PackCalibrationReader(str(pack8)) as r:
        assert isinstance(r, cal.CalibrationDataReader)


def test_empty_val_split_is_a_clear_error(tmp_path, shapes_dir):
    out = tmp_path / "noval.lmdb"
    build(shapes_dir, out, TARGETS[0], variants=0, seed=1, workers=1, val=0.0)
    with pytest.raises(ValueError, match="split 'val' is empty"):
        PackCalibrationReader(str(out))
    with pytest.raises(ValueError, match="dequantize"):
        PackCalibrationReader(str(out), split="train", dequantize="float")


def test_quantize_static_calibrates_on_the_pack(pack8, tmp_path):
    """MinMax calibration on the de-quantized pack gives the input exactly the pack's range."""
    pytest.importorskip("onnx")
    cal = pytest.importorskip("onnxruntime.quantization")
    from onnx_models import conv_classifier

    from edgeaug.models.from_model import target_from_onnx

    f = conv_classifier(tmp_path / "f.onnx", size=12)
    import onnx

    m = onnx.load(str(f))
    m.graph.input[0].name = "img"
    m.graph.node[0].input[0] = "img"
    onnx.save(m, str(f))
    with PackCalibrationReader(str(pack8), split="train", dequantize="normalized") as r:
        xs = np.concatenate([b["img"] for b in r])
        r.rewind()
        cal.quantize_static(
            str(f),
            str(tmp_path / "q.onnx"),
            r,
            quant_format=cal.QuantFormat.QDQ,
            activation_type=cal.QuantType.QUInt8,
            weight_type=cal.QuantType.QInt8,
        )
    t = target_from_onnx(tmp_path / "q.onnx")["input"]
    lo, hi = min(float(xs.min()), 0.0), max(float(xs.max()), 0.0)
    assert t["dtype"] == "uint8"
    assert t["scale"] == pytest.approx((hi - lo) / 255, rel=1e-5)
    assert t["zero_point"] == int(np.clip(np.rint(-lo / ((hi - lo) / 255)), 0, 255))
