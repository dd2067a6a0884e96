"""Instance mask storage: round trips, size, and crafted sections give FormatError."""

import hashlib
import json
import struct

import numpy as np
import pytest

from edgeaug.device.format import FormatError
from edgeaug.device.instances import (
    MAX_INSTANCE_PIXELS,
    decode_instances,
    encode_instances,
    instance_boxes,
    run_dtype,
)


def blobs(n, h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    out = np.zeros((n, h, w), bool)
    for i in range(n):
        cx, cy, a, b = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(1, 1 + w / 3), rng.uniform(1, 1 + h / 3)
        out[i] = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 < 1
    return out


@pytest.mark.parametrize("shape", [(0, 5, 7), (1, 1, 1), (3, 9, 4), (6, 224, 224), (2, 300, 300)])
def test_round_trip(shape):
    m = blobs(*shape)
    if shape[0] >= 3:
        m[0] = True  # starts with foreground: an empty first run
        m[1] = False  # empty instance
    buf = encode_instances(m)
    out = decode_instances(buf, shape[0], shape[1], shape[2])
    assert out.dtype == bool and out.shape == shape and np.array_equal(out, m)


def test_layout_is_row_major_runs_hand_computed():
    m = np.zeros((2, 2, 3), bool)
    m[0, 0, 1:] = True  # runs 1, 2, 3
    m[1, :, :] = True  # runs 0, 6
    buf = encode_instances(m)
    assert buf == struct.pack("<III", 2, 3, 2) + struct.pack("<5H", 1, 2, 3, 0, 6)


def test_run_width_follows_output_size():
    assert run_dtype(224, 224) == np.dtype("<u2") and run_dtype(256, 256) == np.dtype("<u4")
    m = blobs(2, 256, 256)
    assert np.array_equal(decode_instances(encode_instances(m), 2, 256, 256), m)


def test_blob_masks_are_much_smaller_than_bitpacking():
    m = blobs(20, 224, 224, seed=3)
    assert len(encode_instances(m)) * 8 < np.packbits(m).nbytes


def test_instance_boxes():
    m = np.zeros((3, 6, 8), bool)
    m[0, 1:4, 2:5] = True
    m[1, 5, 7] = True
    assert instance_boxes(m).tolist() == [[2, 1, 5, 4], [7, 5, 8, 6], [0, 0, 0, 0]]


def good():
    return encode_instances(blobs(2, 6, 5))


@pytest.mark.parametrize(
    "buf, n, msg",
    [
        (b"", 0, "count truncated"),
        (b"\x01\x00", 0, "count truncated"),
        (good(), 3, "2 masks for 3 boxes"),
        (struct.pack("<I", 2) + b"\x01\x00\x00", 2, "run counts overrun"),
        (struct.pack("<III", 2, 0, 1) + struct.pack("<H", 30), 2, "run count is outside 1..31"),
        (struct.pack("<III", 2, 1, 99) + struct.pack("<H", 30), 2, "run count is outside 1..31"),
        (struct.pack("<III", 2, 1, 1) + struct.pack("<H", 30), 2, "2 runs of 2 bytes do not fill the 2-byte"),
        (good() + b"\0\0", 2, "do not fill"),
        (struct.pack("<III", 2, 1, 2) + struct.pack("<3H", 30, 29, 2), 2, "mask 1 has runs summing to 31"),
        (struct.pack("<III", 2, 1, 1) + struct.pack("<2H", 65535, 30), 2, "mask 0 has runs summing to 65535"),
    ],
)
def test_crafted_sections_are_format_errors(buf, n, msg):
    with pytest.raises(FormatError, match=msg):
        decode_instances(buf, n, 6, 5)


def test_huge_claim_is_refused_before_allocating():
    n = MAX_INSTANCE_PIXELS // (4096 * 4096) + 1
    buf = struct.pack("<I", n) + struct.pack(f"<{n}I", *([1] * n)) + struct.pack(f"<{n}I", *([4096 * 4096] * n))
    with pytest.raises(FormatError, match="exceed the limit"):
        decode_instances(buf, n, 4096, 4096)


def test_random_garbage_never_crashes():
    rng = np.random.default_rng(1)
    base = good()
    for _ in range(300):
        b = bytearray(base)
        for _ in range(rng.integers(1, 4)):
            b[rng.integers(0, len(b))] = rng.integers(0, 256)
        b = bytes(b[: rng.integers(0, len(b) + 1)]) if rng.random() < 0.3 else bytes(b)
        try:
            out = decode_instances(b, 2, 6, 5)
        except FormatError:
            continue
        assert out.shape == (2, 6, 5)


def test_encode_rejects_wrong_rank():
    with pytest.raises(FormatError, match=r"must be \(n, H, W\)"):
        encode_instances(np.zeros((4, 4), bool))


PI_PROBE = r"""
import hashlib, json, sys
import numpy as np
from edgeaug.device.format import FormatError
from edgeaug.device.instances import decode_instances
buf = bytes.fromhex(sys.argv[1])
out = decode_instances(buf, 6, 224, 224)
try:
    decode_instances(buf[:-2], 6, 224, 224)
    bad = "accepted"
except FormatError as e:
    bad = str(e)
print(json.dumps({"sha": hashlib.sha256(out.tobytes()).hexdigest(), "shape": list(out.shape), "bad": bad}))
"""


@pytest.mark.parametrize("arch", ["arm64", "armhf"])
def test_decode_on_emulated_pi(arch, tmp_path):
    """armhf's intp is 32 bits: numpy's repeat/reduceat refuse int64 counts there unless cast."""
    from scripts_under_test import run_on_pi

    m = blobs(6, 224, 224, seed=9)
    proc = run_on_pi(arch, PI_PROBE, tmp_path, [encode_instances(m).hex()])
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["sha"] == hashlib.sha256(m.tobytes()).hexdigest() and seen["shape"] == [6, 224, 224]
    assert "do not fill" in seen["bad"]
