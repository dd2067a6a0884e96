"""The labels section, format versions 1 to 3: golden bytes, round trips, crafted sections, soft targets."""

import struct

import numpy as np
import pytest

from edgeaug.device import format as F
from edgeaug.device import labels as L

BOXES = np.array([[1, 1, 0, 3, 1], [0, 0, 1, 1, 2]], np.float32)
MASK = np.arange(6, dtype=np.uint8).reshape(2, 3)


def instances() -> np.ndarray:
    m = np.zeros((2, 2, 3), bool)
    m[0, 0, 1:] = True
    m[1, 1, 0] = True
    return m


# Version 3 (extended): boxes, no keypoints, a 2x3 mask, two instances (u2 runs 1,2,3 and 3,1,2),
# mix [(1, .75), (0, .25)].
GOLDEN_V3 = (
    "020000000000803f0000803f00000000000040400000803f00000000000000000000803f0000803f00000040"
    "00000000"
    "06000000000102030405"
    "18000000020000000300000003000000010002000300030001000200"
    "020000000000803f0000403f000000000000803e"
)


def test_golden_v3_section():
    buf = L.pack_labels(BOXES, None, MASK, instances(), [(1, 0.75), (0, 0.25)])
    assert buf.hex() == GOLDEN_V3
    out = L.unpack_labels(buf, (2, 3))
    assert np.array_equal(out["instances"], instances()) and out["instances"].dtype == bool
    assert out["mix"] == [(1, 0.75), (0, 0.25)]
    np.testing.assert_array_equal(out["boxes"], BOXES)
    np.testing.assert_array_equal(out["mask"], MASK)


def test_without_instances_or_mix_the_section_stays_version_1():
    """Every loader reads such a record; the extended section is the same bytes plus two zero counts."""
    v1 = struct.pack("<I", 2) + BOXES.tobytes() + struct.pack("<I", 0) + struct.pack("<I", 6) + MASK.tobytes()
    assert not L.is_extended(None, None) and not L.is_extended(None, [])
    assert L.pack_labels(BOXES, None, MASK) == v1
    out = L.unpack_labels(v1 + b"\0" * 8, (2, 3), version=F.EXTENDED_LABELS)
    assert out["instances"] is None and out["mix"] == []


@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("with_inst", [False, True])
@pytest.mark.parametrize("with_mix", [False, True])
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (255, 257), (256, 256), (300, 200)])
def test_roundtrip_every_combination_and_mask_shape(with_mask, with_inst, with_mix, shape):
    h, w = shape
    rng = np.random.default_rng(h * w)
    n = 3
    boxes = rng.random((n, 5)).astype(np.float32)
    kps = rng.random((4, 3)).astype(np.float32)
    mask = rng.integers(0, 5, shape).astype(np.uint8) if with_mask else None
    inst = rng.random((n, h, w)) < 0.3 if with_inst else None
    mix = [(2, 0.6), (7, 0.4)] if with_mix else None
    version = F.EXTENDED_LABELS if L.is_extended(inst, mix) else 1
    out = L.unpack_labels(L.pack_labels(boxes, kps, mask, inst, mix), shape, version)
    np.testing.assert_array_equal(out["boxes"], boxes)
    np.testing.assert_array_equal(out["keypoints"], kps)
    assert (out["mask"] is None) == (mask is None) and (mask is None or np.array_equal(out["mask"], mask))
    assert (out["instances"] is None) == (inst is None)
    if inst is not None:
        assert out["instances"].shape == (n, h, w) and np.array_equal(out["instances"], inst)
    assert out["mix"] == ([(2, pytest.approx(0.6)), (7, pytest.approx(0.4))] if with_mix else [])


def test_zero_instances_are_kept_apart_from_none():
    out = L.unpack_labels(L.pack_labels(None, None, None, np.zeros((0, 4, 4), bool)), (4, 4))
    assert out["instances"].shape == (0, 4, 4)


def test_v1_sections_still_read():
    v1 = struct.pack("<I", 2) + BOXES.tobytes() + struct.pack("<I", 0) + struct.pack("<I", 6) + MASK.tobytes()
    out = L.unpack_labels(v1, (2, 3), version=1)
    np.testing.assert_array_equal(out["boxes"], BOXES)
    np.testing.assert_array_equal(out["mask"], MASK)
    assert out["instances"] is None and out["mix"] == []
    assert L.unpack_labels(v1, (2, 3), version=2)["instances"] is None  # version 2: compressed tensors only
    with pytest.raises(F.FormatError, match="instances count truncated"):  # read as extended: no instance count
        L.unpack_labels(v1, (2, 3), version=3)


def test_newer_and_unknown_versions_are_refused_clearly():
    buf = L.pack_labels(None, None, None)
    with pytest.raises(F.FormatError, match="pack format 4 is newer than this loader's 3: update edgeaug"):
        L.unpack_labels(buf, (2, 2), version=4)
    with pytest.raises(F.FormatError, match="version 0"):
        L.unpack_labels(buf, (2, 2), version=0)


def _crafted():
    good = bytes.fromhex(GOLDEN_V3)
    inst_at = 4 + 40 + 4 + 4 + 6  # the instances byte count
    mix_at = inst_at + 4 + 24
    u4 = lambda v: struct.pack("<I", v)  # noqa: E731
    f4 = lambda *v: struct.pack(f"<{len(v)}f", *v)  # noqa: E731
    return [
        ("instances count truncated", good[: inst_at + 2], "instances count truncated"),
        ("instances overrun", good[:inst_at] + u4(1000) + good[inst_at + 4 :], "instances of 1000 bytes overrun"),
        ("instances short", good[:inst_at] + u4(20) + good[inst_at + 4 :], "instances|mix"),
        ("wrong instance rows", good[: inst_at + 4] + u4(3) + good[inst_at + 8 :], "instances: 3 masks for 2 boxes"),
        ("runs overflow", good[: inst_at + 16] + b"\xff\xff" + good[inst_at + 18 :], "instances: mask 0 has runs"),
        ("mix truncated", good[: mix_at + 2], "mix count truncated"),
        ("mix overrun", good[:mix_at] + u4(3) + good[mix_at + 4 :], "mix count 3 overruns"),
        ("mix huge", good[:mix_at] + u4(2**31) + good[mix_at + 4 :], "mix count"),
        ("mix class nan", good[: mix_at + 4] + f4(float("nan"), 0.5) + good[mix_at + 12 :], r"mix\[0\]: class"),
        ("mix class fraction", good[: mix_at + 4] + f4(1.5, 0.5) + good[mix_at + 12 :], r"mix\[0\]: class 1.5"),
        ("mix negative class", good[: mix_at + 12] + f4(-1, 0.5), r"mix\[1\]: class -1"),
        ("mix weight inf", good[: mix_at + 4] + f4(1, float("inf")) + good[mix_at + 12 :], r"mix\[0\]: weight"),
        ("mix weight > 1", good[: mix_at + 4] + f4(1, 2.0) + good[mix_at + 12 :], r"mix\[0\]: weight 2.0"),
        ("trailing bytes", good + b"\0", "1 bytes after the mix field"),
        ("mask overruns", good[:48] + u4(6) + good[52:56], "mask of 6 bytes"),
    ]


@pytest.mark.parametrize("name,buf,match", _crafted(), ids=[c[0] for c in _crafted()])
def test_crafted_v2_sections_name_the_field(name, buf, match):
    with pytest.raises(F.FormatError, match=match):
        L.unpack_labels(buf, (2, 3))


def test_writer_refuses_what_the_reader_would():
    with pytest.raises(F.FormatError, match="instances"):
        L.pack_labels(BOXES, None, None, np.zeros((3, 2, 3), bool))  # 3 masks for 2 boxes
    with pytest.raises(F.FormatError, match="do not match the mask"):
        L.pack_labels(BOXES, None, MASK, np.zeros((2, 3, 3), bool))
    with pytest.raises(F.FormatError, match=r"mix\[0\]: weight"):
        L.pack_labels(None, None, None, mix=[(0, 1.5)])


def test_soft_targets_one_hot_and_mixed_rows_sum_to_one():
    t = L.soft_targets_from_records([2, 0, 1], [[], [(0, 0.7), (3, 0.3)], [(1, 0.5), (1, 0.5)]], 4)
    assert t.dtype == np.float32 and t.shape == (3, 4)
    np.testing.assert_allclose(t, [[0, 0, 1, 0], [0.7, 0, 0, 0.3], [0, 1, 0, 0]], atol=1e-7)
    np.testing.assert_allclose(t.sum(1), 1, atol=1e-6)
    # float32 weights from a record renormalize to exactly one
    t = L.soft_targets_from_records([0], [[(0, np.float32(0.1)), (1, np.float32(0.9))]], 2)
    assert abs(float(t.sum()) - 1) < 1e-6


def test_soft_targets_reject_bad_rows():
    with pytest.raises(ValueError, match="row 1: class 5 outside 0..3"):
        L.soft_targets_from_records([0, 0], [[], [(5, 1.0)]], 4)
    with pytest.raises(ValueError, match="row 0: class -1"):
        L.soft_targets_from_records([-1], [[]], 4)
    with pytest.raises(ValueError, match="2 labels but 1 mixes"):
        L.soft_targets_from_records([0, 1], [[]], 4)


def test_describe_mix():
    assert L.describe_mix([(0, 0.625), (1, 0.375)], ["cat", "dog"]) == "cat 0.62 + dog 0.38"
    assert L.describe_mix([(7, 1.0)], ["cat"]) == "7 1.00"
