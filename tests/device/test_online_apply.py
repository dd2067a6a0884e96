"""Online flip and shift (edgeaug.device.online): apply_online is exact and bounded; the module is device code."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest
from online_reference import DTYPES, LAYOUTS
from online_reference import random_batch as _batch
from online_reference import reference as _reference

from edgeaug.device import online
from edgeaug.device.online import apply_online, online_params

# --- exactness ---------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("width", [9, 16])  # 16: rows of bytes reversed as 8-byte words
def test_apply_online_equals_mirror_and_pad_crop_reference(layout, dtype, channels, width):
    batch = _batch(layout, dtype, n=12, w=width, c=channels)
    stored = batch.copy()
    flips, shifts = online_params(3, 1, np.arange(12), 0.5, 3)
    flips[:2], shifts[:2] = [True, False], [[0, 0], [0, 0]]  # a pure flip and an untouched record
    fill = np.arange(1, channels + 1).astype(dtype)  # per-channel, unlike any neighbour
    apply_online(batch, layout, flips, shifts, fill)
    for j in range(12):
        ref = _reference(stored[j], layout, flips[j], shifts[j, 0], shifts[j, 1], fill)
        assert batch[j].tobytes() == ref.tobytes(), (j, flips[j], shifts[j])
    assert batch[1].tobytes() == stored[1].tobytes()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_extreme_shifts_keep_one_column_or_row(layout):
    batch = _batch(layout, "uint8", n=4, h=5, w=6)
    stored = batch.copy()
    flips = np.array([False, True, False, True])
    shifts = np.array([[5, 0], [-5, 4], [0, -4], [3, 3]])
    apply_online(batch, layout, flips, shifts, np.uint8(9))
    for j in range(4):
        assert np.array_equal(batch[j], _reference(stored[j], layout, flips[j], *shifts[j], np.uint8(9)))


def test_fill_online_writes_during_the_copy_from_a_read_only_record():
    src = _batch("NHWC", "uint8", n=1)[0]
    src.setflags(write=False)
    dst = np.zeros_like(src)
    online.fill_online(dst, src, "NHWC", True, 2, -1, np.array([4, 5, 6], np.uint8))
    assert np.array_equal(dst, _reference(src, "NHWC", True, 2, -1, np.array([4, 5, 6], np.uint8)))


def test_non_contiguous_records_take_the_plain_numpy_path():
    rec = _batch("NHWC", "float16", n=1, w=18)[0]
    src = rec[:, ::2]  # strided: cannot be viewed as whole pixels
    dst = np.empty_like(src)
    online.fill_online(dst, src, "NHWC", True, -1, 1, np.zeros(3, np.float16))
    assert np.array_equal(dst, _reference(np.ascontiguousarray(src), "NHWC", True, -1, 1, np.zeros(3, np.float16)))


@pytest.mark.parametrize("shape", [(3, 8), (2, 5, 24), (4, 64)])
@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16"])
def test_reversed_rows_equal_numpy_flip(shape, dtype):
    src = np.random.default_rng(1).integers(0, 100, shape).astype(dtype)
    dst = np.empty_like(src)
    online.reversed_into(dst, src)
    assert dst.tobytes() == np.flip(src, axis=-1).tobytes()


def test_reuses_a_scratch_buffer():
    batch = _batch("NCHW", "float32", n=6)
    stored = batch.copy()
    flips, shifts = online_params(0, 0, np.arange(6), 1.0, 2)
    scratch = np.empty_like(batch[0])
    apply_online(batch, "NCHW", flips, shifts, 0.0, scratch=scratch)
    for j in range(6):
        assert np.array_equal(batch[j], _reference(stored[j], "NCHW", True, *shifts[j], np.float32(0)))


# --- bounds ------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_no_flip_and_no_shift_is_the_identity(layout, dtype):
    batch = _batch(layout, dtype)
    stored = batch.copy()
    flips, shifts = online_params(5, 9, np.arange(len(batch)), 0.0, 0)
    assert not flips.any() and not shifts.any()
    apply_online(batch, layout, flips, shifts, np.zeros(3, dtype))
    assert batch.tobytes() == stored.tobytes()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_shift_as_large_as_the_image_is_an_error_and_leaves_the_batch_alone(layout):
    batch = _batch(layout, "uint8", h=7, w=9)
    stored = batch.copy()
    flips = np.zeros(len(batch), bool)
    for bad in ([9, 0], [0, 7], [-9, 0], [0, -12]):
        shifts = np.zeros((len(batch), 2), np.int64)
        shifts[2] = bad
        with pytest.raises(ValueError, match="shift"):
            apply_online(batch, layout, flips, shifts, 0)
        assert batch.tobytes() == stored.tobytes()


def test_rejects_mismatched_params_and_layouts():
    batch = _batch("NHWC", "uint8", n=3)
    with pytest.raises(ValueError, match="flips"):
        apply_online(batch, "NHWC", [True], [[0, 0]] * 3, 0)
    with pytest.raises(ValueError, match="NHWC or NCHW"):
        apply_online(batch, "HWC", [True] * 3, [[0, 0]] * 3, 0)


# --- device boundary ---------------------------------------------------------------


def test_imports_only_numpy_and_the_standard_library():
    tree = ast.parse(Path(online.__file__).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import would need '# bundle: drop'"
            roots.add(node.module.split(".")[0])
    assert roots <= {"numpy", "__future__", "typing"} | set(sys.stdlib_module_names)
    assert "numpy" in roots


def test_bundles_into_the_single_file_loader(tmp_path):
    """online.py is part of the single-file loader, and works from it."""
    import importlib.util

    from edgeaug import bundle

    assert "online.py" in bundle.SOURCES
    out = bundle.write_bundle(tmp_path / "edgeaug_loader_online.py")
    spec = importlib.util.spec_from_file_location("edgeaug_loader_online", out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    f, s = mod.online_params(1, 2, np.arange(10), 0.5, 2)
    ref = online_params(1, 2, np.arange(10), 0.5, 2)
    assert np.array_equal(f, ref[0]) and np.array_equal(s, ref[1])
    assert hasattr(mod, "apply_online") and hasattr(mod, "Pack")
