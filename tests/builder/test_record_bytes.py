"""The fast paths of rendering give exactly the bytes of their plain counterparts."""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import pytest

from edgeaug.builder.augment import scale
from edgeaug.device.format import HEADER_SIZE, RECORD_MAGIC, canonical_json, encode_record


def plain_encode(tensor, label, source, variant, split, labels, params) -> bytes:
    """The record layout of docs/FORMAT.md, written the obvious way (copies and all)."""
    tbytes = np.ascontiguousarray(tensor).tobytes()
    pbytes = canonical_json(params)
    body = struct.pack("<IIIiIHBB", len(tbytes), len(labels), len(pbytes), label, source, variant, split, 0)
    body += b"\0" * (HEADER_SIZE - 40 - len(body)) + tbytes + labels + pbytes
    return struct.pack("<4sHH32s", RECORD_MAGIC, 1, HEADER_SIZE, hashlib.sha256(body).digest()) + body  # raw: v1


@pytest.mark.parametrize("dtype", ["|u1", "|i1", "<f2", "<f4"])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "strided", "empty"])
def test_encode_record_matches_the_plain_layout(dtype, layout):
    rng = np.random.default_rng(3)
    t = (rng.random((12, 10, 3)) * 100).astype(dtype)
    t = {"contiguous": t, "transposed": t.transpose(2, 0, 1), "strided": t[::2, ::3], "empty": t[:0]}[layout]
    labels = struct.pack("<I", 1) + np.arange(5, dtype="<f4").tobytes() + struct.pack("<II", 0, 0)
    params = {"ops": [{"op": "hflip", "on": True}, {"op": "rotate", "on": True, "angle": -3.25}]}
    got = encode_record(t, 4, 17, 2, 1, labels, params)
    assert isinstance(got, bytes)
    assert got == plain_encode(t, 4, 17, 2, 1, labels, params)


def test_the_written_out_unshrink_equals_the_matrix_inverse():
    """render() inverts the pre-shrink scale by hand: the very numbers np.linalg.inv gives."""
    rng = np.random.default_rng(0)
    for _ in range(5000):
        big = rng.integers(1, 9000, 2)
        small = np.maximum(1, np.round(big / rng.integers(1, 9, 2))).astype(int)
        pre = scale(small[0] / big[0], small[1] / big[1])
        by_hand = scale(1 / (small[0] / big[0]), 1 / (small[1] / big[1]))
        assert np.linalg.inv(pre).tobytes() == by_hand.tobytes()
