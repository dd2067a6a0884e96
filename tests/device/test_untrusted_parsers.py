"""Property tests of the parsers of untrusted bytes: anything but a valid input is a FormatError.

The record header, the labels section and the manifest validation, on arbitrary bytes or JSON and on
real manifests (of the ``tiny`` pack built in tests/device/conftest.py) with one field replaced.
"""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pack_probe import read_kv

from edgeaug.device import format as F
from edgeaug.device import labels as L
from edgeaug.device.manifest import validate_manifest


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=200))
def test_record_header_parser_on_arbitrary_bytes(data):
    try:
        h = F.RecordHeader(data)
    except F.FormatError:
        return
    assert F.HEADER_SIZE + h.tensor_nbytes + h.labels_nbytes + h.params_nbytes == len(data)
    assert h.split in (0, 1) and h.params_offset <= len(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 16), st.integers(1, 16))
def test_labels_parser_on_arbitrary_bytes(data, h, w):
    try:
        out = L.unpack_labels(data, (h, w))
    except F.FormatError:
        return
    n = 20 + out["boxes"].nbytes + out["keypoints"].nbytes + (0 if out["mask"] is None else out["mask"].size)
    assert n + 8 * len(out["mix"]) <= len(data)  # the instances' run bytes are the rest
    assert (out["instances"] is None) == (n + 8 * len(out["mix"]) == len(data))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-1e6, 1e6, width=32),
            st.floats(-1e6, 1e6, width=32),
            st.floats(-1e6, 1e6, width=32),
            st.floats(-1e6, 1e6, width=32),
            st.floats(-1e6, 1e6, width=32),
        ),
        max_size=20,
    ),
    st.lists(
        st.tuples(st.floats(-1e3, 1e3, width=32), st.floats(-1e3, 1e3, width=32), st.sampled_from([0.0, 1.0])),
        max_size=20,
    ),
    st.booleans(),
)
def test_labels_roundtrip(boxes, kps, with_mask):
    b = np.array(boxes, np.float32).reshape(-1, 5)
    k = np.array(kps, np.float32).reshape(-1, 3)
    m = np.arange(12, dtype=np.uint8).reshape(3, 4) if with_mask else None
    out = L.unpack_labels(L.pack_labels(b, k, m), (3, 4))
    assert np.array_equal(out["boxes"], b) and np.array_equal(out["keypoints"], k)
    assert (out["mask"] is None) == (m is None)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_manifest_validation_on_arbitrary_json(value):
    try:
        validate_manifest(value)
    except F.FormatError:
        return
    raise AssertionError("random JSON passed as a manifest")


@pytest.fixture(scope="module")
def valid_manifest(packs):
    return read_kv(packs["tiny"])[0]


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:3]):
            yield from _paths(v, prefix + (i,))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_manifest_validation_on_mutated_manifests(valid_manifest, data):
    """Replace any one field of a real manifest with any JSON value: a FormatError or a usable manifest."""
    m = json.loads(json.dumps(valid_manifest))
    validate_manifest(m)
    path = data.draw(st.sampled_from([p for p in _paths(m) if p]))
    d = m
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = data.draw(JSON)
    try:
        validate_manifest(m)
    except F.FormatError as e:
        assert str(e).startswith("manifest: ")
        return
    # accepted: then the fields a reader uses have the right types
    t = m["target"]
    assert F.tensor_shape(t) and F.tensor_dtype(t["dtype"]) and isinstance(m["records"], int)
    assert all(isinstance(s["path"], str) and ".." not in s["path"].split("/") for s in m["sources"])
