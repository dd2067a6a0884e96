"""The record codecs (edgeaug.device.codec): lossless round trips, bounded decoding, clean errors."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from edgeaug.device import codec as C
from edgeaug.device.format import FormatError

zstandard = pytest.importorskip("zstandard")

DTYPES = ("uint8", "int8", "float16", "float32")
LAYOUTS = ("NHWC", "NCHW")


def photo_like(dtype: str, layout: str, channels: int = 3, h: int = 32, w: int = 28, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients plus noise: the filters have something to predict, the codec something to do."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 5 + y * 3 + 40 * k) % 256 for k in range(channels)], -1).astype(np.float64)
    img = np.clip(base + rng.normal(0, 1, base.shape), 0, 255)
    if dtype == "uint8":
        a = img.astype(np.uint8)
    elif dtype == "int8":
        a = (img - 128).astype(np.int8)
    else:
        a = ((img / 255 - 0.45) / 0.226).astype(dtype)
    return np.ascontiguousarray(a.transpose(2, 0, 1) if layout == "NCHW" else a)


def roundtrip(a: np.ndarray, enc: C.Encoded, layout: str) -> np.ndarray:
    out = np.full_like(a, 7)
    C.decode_into(enc.data, out, enc.method, layout, "record 3")
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("codec", ("none", "zlib", "zstd"))
@pytest.mark.parametrize("channels", (1, 3))
def test_round_trip_every_dtype_layout_codec(dtype, layout, codec, channels):
    a = photo_like(dtype, layout, channels)
    enc = C.encode(a, codec, None, layout)
    assert np.array_equal(roundtrip(a, enc, layout), a)
    if codec != "none" and dtype in ("uint8", "int8"):
        assert enc.method & 0x0F == C.CODECS[codec]
        assert len(enc.data) < a.nbytes


@pytest.mark.parametrize("dtype", ("uint8", "int8"))
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("filters", C.CANDIDATES)
@pytest.mark.parametrize("codec", ("zlib", "zstd"))
def test_every_filter_inverts(dtype, layout, filters, codec):
    a = photo_like(dtype, layout)
    d = C.apply_filter(a, filters, layout)
    assert d.dtype == np.uint8 and d.shape == a.shape
    data = C._compress(d.tobytes(), codec, 3)
    assert np.array_equal(roundtrip(a, C.Encoded(C.method_byte(codec, filters), data), layout), a)


def test_filter_is_chosen_per_record_and_floats_stay_unfiltered():
    smooth = photo_like("uint8", "NHWC")
    assert C.encode(smooth, "zlib", 6).method >> 4 != 0  # a gradient: a delta filter wins
    noise = np.random.default_rng(1).integers(0, 256, (24, 20, 3), dtype=np.uint8)
    assert C.encode(noise, "zlib", 6) == C.Encoded(0, noise.tobytes())  # incompressible: stored raw
    f = photo_like("float32", "NHWC")
    assert C.encode(f, "zstd", 3).method == C.CODECS["zstd"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_planar_gradient_picks_the_sub_up_predictor(layout):
    # x = 3h + 5w (+ a small texture that repeats every 4 px): left + up - upper left predicts it, sub or up alone
    # leave a ramp of the other direction's steps
    h, w = np.mgrid[0:32, 0:40]
    plane = (3 * h + 5 * w + (h % 4) * (w % 4)) % 256
    a = np.repeat(plane[:, :, None], 1, axis=2).astype(np.uint8)
    a = a if layout == "NHWC" else np.ascontiguousarray(a.transpose(2, 0, 1))
    filters, _ = C.choose_filter(a, layout)
    assert filters == C.SUB | C.UP
    enc = C.encode(a, "zlib", 6, layout)
    assert enc.method >> 4 == C.SUB | C.UP and np.array_equal(roundtrip(a, enc, layout), a)


def test_encode_is_deterministic():
    a = photo_like("uint8", "NCHW", seed=5)
    assert C.encode(a, "zstd", 3, "NCHW") == C.encode(a.copy(), "zstd", 3, "NCHW")


def test_level_out_of_range_names_the_codec():
    with pytest.raises(C.CodecError, match=r"--level: 12 .*zlib"):
        C.encode(photo_like("uint8", "NHWC"), "zlib", 12)


def test_decode_is_bounded_by_the_output_size():
    """A stream that decodes to more than the header's size stops at the bound and is an error."""
    a = photo_like("uint8", "NHWC")
    big = np.zeros(10 * a.nbytes, np.uint8)  # compresses far below a.nbytes, decodes to 10x
    for codec in ("zlib", "zstd"):
        data = C._compress(big.tobytes(), codec, 3)
        assert len(data) < a.nbytes
        with pytest.raises(C.CodecError, match=rf"record 3: {codec}: .*expected {a.nbytes}"):
            C.decode_into(data, np.empty_like(a), C.CODECS[codec], "NHWC", "record 3")


def test_zstd_frame_declaring_another_size_is_refused_before_decoding(monkeypatch):
    a = photo_like("uint8", "NHWC")
    data = C._compress(a[:10].tobytes(), "zstd", 3)
    calls = []
    monkeypatch.setattr(zstandard.ZstdDecompressor, "stream_reader", lambda *x, **k: calls.append(x))
    with pytest.raises(C.CodecError, match=r"frame declares \d+ decoded bytes, expected"):
        C.decode_into(data, np.empty_like(a), C.CODECS["zstd"], "NHWC", "record 3")
    assert calls == []


def test_short_stream_is_an_error():
    a = photo_like("uint8", "NHWC")
    data = zlib.compress(a.tobytes()[:-1])
    with pytest.raises(C.CodecError, match="record 9: zlib: decodes to"):
        C.decode_into(data, np.empty_like(a), C.CODECS["zlib"], "NHWC", "record 9")


@pytest.mark.parametrize("codec", ("zlib", "zstd"))
def test_truncated_data_is_a_clean_error(codec):
    a = photo_like("uint8", "NHWC")
    enc = C.encode(a, codec, 3)
    for cut in range(0, len(enc.data)):
        with pytest.raises(C.CodecError, match=f"record 3: {codec}"):
            C.decode_into(enc.data[:cut], np.empty_like(a), enc.method, "NHWC", "record 3")


@pytest.mark.parametrize("codec", ("zlib", "zstd"))
def test_bit_flips_raise_or_decode_to_the_same_tensor(codec):
    """Single-bit flips are caught by the codec (size, structure, checksum) or change nothing.

    zstd's 32-bit XXH64 checksum catches every one here; zlib's adler32 is weak on small
    streams and lets a rare flip through (the record digest, checked by verify, catches those).
    """
    a = photo_like("uint8", "NHWC", h=12, w=10)
    enc = C.encode(a, codec, 3)
    caught = silent = 0
    for pos in range(len(enc.data)):
        for bit in (0, 3, 7):
            bad = bytearray(enc.data)
            bad[pos] ^= 1 << bit
            out = np.empty_like(a)
            try:
                C.decode_into(bytes(bad), out, enc.method, "NHWC", "record 3")
            except C.CodecError as e:
                assert str(e).startswith(f"record 3: {codec}")
                caught += 1
                continue
            silent += not np.array_equal(out, a)
    assert caught > 0.9 * 3 * len(enc.data)
    assert silent <= (0 if codec == "zstd" else 0.01 * 3 * len(enc.data))


@pytest.mark.parametrize("codec", ("zlib", "zstd"))
def test_trailing_bytes_after_the_stream_are_an_error(codec):
    a = photo_like("uint8", "NHWC")
    enc = C.encode(a, codec, 6)
    with pytest.raises(C.CodecError, match=f"record 3: {codec}: 1 bytes after the"):
        C.decode_into(enc.data + b"x", np.empty_like(a), enc.method, "NHWC", "record 3")


def test_stored_size_must_match_and_compressed_must_be_smaller():
    a = photo_like("uint8", "NHWC")
    with pytest.raises(C.CodecError, match="record 3: stored tensor has"):
        C.decode_into(a.tobytes()[:-1], np.empty_like(a), 0, "NHWC", "record 3")
    with pytest.raises(C.CodecError, match="not smaller than"):
        C.decode_into(b"\0" * a.nbytes, np.empty_like(a), C.CODECS["zlib"], "NHWC", "record 3")


@pytest.mark.parametrize("method", (0x03, 0x0F, 0x80, 0x10, 0x61 | 0x80))
def test_unknown_method_byte(method):
    a = photo_like("uint8", "NHWC")
    with pytest.raises(C.CodecError, match=f"record 3: unknown record codec/filter byte 0x{method:02x}"):
        C.decode_into(b"x", np.empty_like(a), method, "NHWC", "record 3")


def test_filter_bits_on_a_float_record_are_refused():
    a = photo_like("float32", "NHWC")
    data = C._compress(a.tobytes(), "zlib", 6)
    with pytest.raises(C.CodecError, match="filter bits 0x1 on a float32"):
        C.decode_into(data, np.empty_like(a), C.method_byte("zlib", C.SUB), "NHWC", "record 3")


def test_codec_error_is_a_format_error():
    assert issubclass(C.CodecError, FormatError)


def test_missing_zstd_names_the_package(no_zstd):
    with pytest.raises(C.CodecError, match=r"zstd-compressed: .*python3-zstandard.*pip install zstandard"):
        C.check_available("zstd")
    C.check_available("zlib")  # the standard library's codec always works
    a = photo_like("uint8", "NHWC")
    with pytest.raises(C.CodecError, match="python3-zstandard"):
        C.decode_into(b"\x28\xb5\x2f\xfd", np.empty_like(a), C.CODECS["zstd"], "NHWC", "record 3")


def test_decode_writes_into_a_batch_row_without_touching_neighbours():
    a = photo_like("uint8", "NHWC")
    batch = np.full((3,) + a.shape, 99, np.uint8)
    for codec in ("zlib", "zstd"):
        enc = C.encode(a, codec, 3)
        C.decode_into(enc.data, batch[1], enc.method, "NHWC", "record 1")
        assert np.array_equal(batch[1], a)
        assert (batch[0] == 99).all() and (batch[2] == 99).all()
