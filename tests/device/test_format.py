"""The format spec: golden bytes, layouts and the labels section."""

import hashlib
import struct

import numpy as np
import pytest

from edgeaug.device import format as F


def test_record_keys_are_fixed_width_and_sort_numerically():
    assert F.record_key(0) == b"r\x00\x00\x00\x00\x00\x00\x00\x00"
    assert F.record_key(258) == b"r" + bytes([0, 0, 0, 0, 0, 0, 1, 2])
    keys = [F.record_key(i) for i in (0, 1, 255, 256, 70000)]
    assert keys == sorted(keys) and {len(k) for k in keys} == {F.KEY_SIZE}
    # The index and manifest sort after every record, manifest last.
    assert F.record_key(2**31 - 1) < F.INDEX_KEY < F.MANIFEST_KEY
    with pytest.raises(F.FormatError):
        F.record_key(-1)


def test_index_dtype_is_pinned():
    assert F.INDEX_DTYPE.itemsize == 44
    assert F.INDEX_DTYPE.descr == [
        ("source", "<u4"),
        ("variant", "<u2"),
        ("split", "|u1"),
        ("pad", "|u1"),
        ("label", "<i4"),
        ("digest", "|u1", (32,)),
    ]


def test_golden_record_bytes():
    x = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    labels = F.pack_labels(np.array([[1, 0, 0, 1, 1]], np.float32), None, None)
    v = F.encode_record(
        x, label=2, source=5, variant=1, split=0, labels=labels, params={"ops": [{"op": "hflip", "on": True}]}
    )
    assert v[:8] == b"EAR1" + struct.pack("<HH", 1, 64)
    assert len(v) == 64 + 12 + len(labels) + len(b'{"ops":[{"on":true,"op":"hflip"}]}')
    assert v[8:40] == hashlib.sha256(v[40:]).digest() == F.record_digest(v)
    # tensor 12 B, labels 32 B, params 34 B, label 2, source 5, variant 1, split 0
    assert v[40:64].hex() == "0c0000002000000022000000020000000500000001000000"
    assert hashlib.sha256(v).hexdigest() == ("4bfb9cdde93b778a8f5748989d908179a49b3ab6968decbfb20d0be83e2f33be")


def test_header_roundtrip_and_rejections():
    x = np.zeros((4, 4, 1), np.int8)
    v = F.encode_record(x, -1, 7, 3, 1, F.pack_labels(None, None, None), {})
    h = F.RecordHeader(v)
    assert (h.label, h.source, h.variant, h.split, h.tensor_nbytes) == (-1, 7, 3, 1, 16)
    with pytest.raises(F.FormatError, match="magic"):
        F.RecordHeader(b"XXXX" + v[4:])
    with pytest.raises(F.FormatError, match="version"):
        F.RecordHeader(v[:4] + struct.pack("<H", 3) + v[6:])
    with pytest.raises(F.FormatError, match="sum"):
        F.RecordHeader(v[:-1])
    with pytest.raises(F.FormatError, match="shorter"):
        F.RecordHeader(v[:20])


def test_labels_roundtrip_and_bounds():
    boxes = np.array([[0, 1, 2, 3, 4], [1, 5, 6, 7, 8]], np.float32)
    kp = np.array([[1.5, 2.5, 1]], np.float32)
    mask = np.arange(6, dtype=np.uint8).reshape(2, 3)
    buf = F.pack_labels(boxes, kp, mask)
    out = F.unpack_labels(buf, (2, 3))
    np.testing.assert_array_equal(out["boxes"], boxes)
    np.testing.assert_array_equal(out["keypoints"], kp)
    np.testing.assert_array_equal(out["mask"], mask)
    with pytest.raises(F.FormatError):
        F.unpack_labels(struct.pack("<I", 10**6) + buf[4:], (2, 3))
    with pytest.raises(F.FormatError):
        F.unpack_labels(buf[:-1], (2, 3))
    with pytest.raises(F.FormatError):
        F.unpack_labels(buf, (3, 3))


def test_tensor_dtypes_are_little_endian():
    for name, want in [("uint8", "|u1"), ("int8", "|i1"), ("float16", "<f2"), ("float32", "<f4")]:
        assert F.tensor_dtype(name).str == want
    with pytest.raises(F.FormatError):
        F.tensor_dtype("float64")
