"""The format spec: golden bytes, layouts and the labels section."""

import hashlib
import struct

import numpy as np
import pytest

from edgeaug.device import format as F
from edgeaug.device import labels as L
from edgeaug.device.manifest import validate_manifest


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
    """A record without compression or extended labels keeps the version 1 bytes of the first format."""
    x = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    labels = L.pack_labels(np.array([[1, 0, 0, 1, 1]], np.float32), None, None)
    v = F.encode_record(
        x, label=2, source=5, variant=1, split=0, labels=labels, params={"ops": [{"op": "hflip", "on": True}]}
    )
    assert v[:8] == b"EAR1" + struct.pack("<HH", 1, 64)
    assert len(v) == 64 + 12 + len(labels) + len(b'{"ops":[{"on":true,"op":"hflip"}]}')
    assert v[8:40] == hashlib.sha256(v[40:]).digest() == F.record_digest(v)
    # tensor 12 B, labels 32 B, params 34 B, label 2, source 5, variant 1, split 0
    assert v[40:64].hex() == "0c0000002000000022000000020000000500000001000000"
    assert hashlib.sha256(v).hexdigest() == ("4bfb9cdde93b778a8f5748989d908179a49b3ab6968decbfb20d0be83e2f33be")


def test_golden_extended_record_bytes():
    """Version 3: the labels section gains the instances and mix counts (here a soft label)."""
    x = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    labels = L.pack_labels(np.array([[1, 0, 0, 1, 1]], np.float32), None, None, mix=[(1, 0.75), (0, 0.25)])
    v = F.encode_record(x, 2, 5, 1, 0, labels, {"ops": [{"op": "hflip", "on": True}]}, extended=True)
    assert v[:8] == b"EAR1" + struct.pack("<HH", 3, 64)
    assert v[8:40] == hashlib.sha256(v[40:]).digest() == F.record_digest(v)
    # tensor 12 B, labels 56 B (32 + instances count 0 + mix count 2 + 2 rows), params 34 B
    assert v[40:64].hex() == "0c0000003800000022000000020000000500000001000000"
    out = L.unpack_labels(memoryview(v)[F.RecordHeader(v).labels_offset : F.RecordHeader(v).params_offset], (2, 2), 3)
    assert out["mix"] == [(1, 0.75), (0, 0.25)] and out["instances"] is None


# A version 1 record written by edgeaug before format 2: boxes, keypoints and a 2x2 mask.
GOLDEN_V1 = bytes.fromhex(
    "45415231010040007c42a7a422a2bcb615d93a60c94694e9fecbe874c5933eb1213a924d32e8a34e0c00000030000000220000000200"
    "00000500000001000000000102030405060708090a0b010000000000803f00000000000000000000803f0000803f010000000000c03f"
    "000020400000803f04000000000102037b226f7073223a5b7b226f6e223a747275652c226f70223a2268666c6970227d5d7d"
)


def test_version_1_golden_record_still_reads():
    h = F.RecordHeader(GOLDEN_V1)
    assert (h.version, h.label, h.source, h.variant, h.split) == (1, 2, 5, 1, 0)
    assert F.record_digest(GOLDEN_V1) == h.digest
    out = L.unpack_labels(memoryview(GOLDEN_V1)[h.labels_offset : h.params_offset], (2, 2), h.version)
    np.testing.assert_array_equal(out["boxes"], [[1, 0, 0, 1, 1]])
    np.testing.assert_array_equal(out["keypoints"], [[1.5, 2.5, 1]])
    np.testing.assert_array_equal(out["mask"], [[0, 1], [2, 3]])
    assert out["instances"] is None and out["mix"] == []


def test_header_roundtrip_and_rejections():
    x = np.zeros((4, 4, 1), np.int8)
    v = F.encode_record(x, -1, 7, 3, 1, L.pack_labels(None, None, None), {})
    h = F.RecordHeader(v)
    assert (h.version, h.label, h.source, h.variant, h.split, h.tensor_nbytes) == (1, -1, 7, 3, 1, 16)
    ext = F.encode_record(x, -1, 7, 3, 1, L.pack_labels(None, None, None, mix=[(0, 1.0)]), {}, extended=True)
    assert F.RecordHeader(ext).version == F.EXTENDED_LABELS == 3
    with pytest.raises(F.FormatError, match="magic"):
        F.RecordHeader(b"XXXX" + v[4:])
    with pytest.raises(F.FormatError, match="pack format 4 is newer than this loader's 3: update edgeaug"):
        F.RecordHeader(v[:4] + struct.pack("<H", 4) + v[6:])
    with pytest.raises(F.FormatError, match="version 0"):
        F.RecordHeader(v[:4] + struct.pack("<H", 0) + v[6:])
    with pytest.raises(F.FormatError, match="sum"):
        F.RecordHeader(v[:-1])
    with pytest.raises(F.FormatError, match="shorter"):
        F.RecordHeader(v[:20])


def test_labels_roundtrip_and_bounds():
    boxes = np.array([[0, 1, 2, 3, 4], [1, 5, 6, 7, 8]], np.float32)
    kp = np.array([[1.5, 2.5, 1]], np.float32)
    mask = np.arange(6, dtype=np.uint8).reshape(2, 3)
    buf = L.pack_labels(boxes, kp, mask)
    out = L.unpack_labels(buf, (2, 3))
    np.testing.assert_array_equal(out["boxes"], boxes)
    np.testing.assert_array_equal(out["keypoints"], kp)
    np.testing.assert_array_equal(out["mask"], mask)
    with pytest.raises(F.FormatError):
        L.unpack_labels(struct.pack("<I", 10**6) + buf[4:], (2, 3))
    with pytest.raises(F.FormatError):
        L.unpack_labels(buf[:-1], (2, 3))
    with pytest.raises(F.FormatError):
        L.unpack_labels(buf, (3, 3))


def test_manifest_of_a_newer_format_names_the_versions():
    with pytest.raises(F.FormatError, match="format_version: pack format 9 is newer than this loader's 3"):
        validate_manifest({"format_version": 9})


def test_tensor_dtypes_are_little_endian():
    for name, want in [("uint8", "|u1"), ("int8", "|i1"), ("float16", "<f2"), ("float32", "<f4")]:
        assert F.tensor_dtype(name).str == want
    with pytest.raises(F.FormatError):
        F.tensor_dtype("float64")
