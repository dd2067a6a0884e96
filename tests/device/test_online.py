"""Online flip and shift (edgeaug.device.online): determinism, exactness, labels, bounds, imports."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeaug.device import online
from edgeaug.device.online import apply_online, fill_value, online_params, quantized_value
from edgeaug.device.online_labels import (
    flip_permutation,
    transform_boxes,
    transform_keypoints,
    transform_mask,
    transform_record,
)

DTYPES = ("uint8", "int8", "float16", "float32")
LAYOUTS = ("NHWC", "NCHW")


def _batch(layout: str, dtype: str, n=5, h=7, w=9, c=3, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n, h, w, c) if layout == "NHWC" else (n, c, h, w)
    if dtype in ("uint8", "int8"):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max + 1, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _reference(rec: np.ndarray, layout: str, flip: bool, dx: int, dy: int, fill: np.ndarray) -> np.ndarray:
    """Mirror with np.flip, then translate by explicit pad-and-crop with the fill value."""
    hwc = rec if layout == "NHWC" else rec.transpose(1, 2, 0)
    if flip:
        hwc = np.flip(hwc, axis=1)
    h, w, c = hwc.shape
    p = max(abs(dx), abs(dy))
    canvas = np.empty((h + 2 * p, w + 2 * p, c), rec.dtype)
    canvas[...] = fill
    canvas[p : p + h, p : p + w] = hwc
    out = canvas[p - dy : p - dy + h, p - dx : p - dx + w]
    return np.ascontiguousarray(out if layout == "NHWC" else out.transpose(2, 0, 1))


# --- determinism -------------------------------------------------------------------


def test_params_are_a_function_of_seed_epoch_record_only():
    records = np.arange(1000)
    flips, shifts = online_params(7, 3, records, 0.5, 4)
    # Any subset, order or batch split gives the same per-record draws.
    perm = np.random.default_rng(1).permutation(1000)
    f2, s2 = online_params(7, 3, perm, 0.5, 4)
    assert np.array_equal(f2, flips[perm]) and np.array_equal(s2, shifts[perm])
    for bs in (1, 3, 64):
        parts = [online_params(7, 3, perm[i : i + bs], 0.5, 4) for i in range(0, 1000, bs)]
        assert np.array_equal(np.concatenate([p[0] for p in parts]), flips[perm])
        assert np.array_equal(np.concatenate([p[1] for p in parts]), shifts[perm])
    online_params(7, 4, records, 0.5, 4)  # other calls in between change nothing
    assert np.array_equal(online_params(7, 3, records, 0.5, 4)[1], shifts)


def test_params_differ_across_epochs_and_seeds_and_follow_the_probabilities():
    records = np.arange(4000)
    f3, s3 = online_params(7, 3, records, 0.5, 4)
    f4, s4 = online_params(7, 4, records, 0.5, 4)
    g3, t3 = online_params(8, 3, records, 0.5, 4)
    assert (f3 != f4).mean() > 0.4 and (s3 != s4).any(axis=1).mean() > 0.9
    assert (f3 != g3).mean() > 0.4 and (s3 != t3).any(axis=1).mean() > 0.9
    assert abs(f3.mean() - 0.5) < 0.03
    assert s3.min() == -4 and s3.max() == 4
    counts = np.bincount(s3.reshape(-1) + 4, minlength=9)
    assert counts.min() > 0.8 * counts.mean()  # uniform over [-4, 4]
    assert online_params(7, 3, records, 0.3, 4)[0].mean() == pytest.approx(0.3, abs=0.03)


def test_params_use_no_global_rng():
    np.random.seed(0)
    a = online_params(1, 2, np.arange(50), 0.5, 3)
    np.random.seed(12345)
    np.random.random(10)
    b = online_params(1, 2, np.arange(50), 0.5, 3)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.parametrize(
    "kw",
    [dict(hflip=-0.1, shift=1), dict(hflip=1.5, shift=1), dict(hflip=0.5, shift=-1), dict(hflip=0.5, shift=1.5)],
)
def test_params_reject_bad_arguments(kw):
    with pytest.raises(ValueError):
        online_params(0, 0, np.arange(3), **kw)


def test_params_reject_negative_records_and_epochs():
    with pytest.raises(ValueError, match="records"):
        online_params(0, 0, np.array([1, -1]), 0.5, 1)
    with pytest.raises(ValueError, match="epoch"):
        online_params(0, -1, np.arange(3), 0.5, 1)


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


# --- fill value --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rpi4", "rpi-zero2w", "coral-edgetpu", "jetson-nano", "generic"])
@pytest.mark.parametrize("pixel", [0, 114, 255])
def test_fill_value_matches_the_builders_quantization_table(name, pixel):
    from edgeaug.config.targets import load_target, quantization_lut

    t = load_target(name)
    lut = quantization_lut(t)
    got = quantized_value(t.to_dict(), pixel)
    assert got.dtype == lut.dtype and got.tobytes() == lut[pixel].tobytes()
    manifest = {"target": t.to_dict(), "recipe": {"fill": pixel}}
    assert fill_value(manifest).tobytes() == lut[pixel].tobytes()


def test_fill_value_of_a_normalized_int8_target_is_not_zero():
    target = {"channels": 3, "dtype": "int8", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    target.update(scale=0.0186, zero_point=-14)
    v = quantized_value(target, 0)
    expect = np.clip(np.rint((0 - np.array(target["mean"])) / target["std"] / 0.0186) - 14, -128, 127)
    assert v.tolist() == expect.astype(np.int8).tolist() and (v != 0).all()


# --- labels ------------------------------------------------------------------------


def _paint_box(h, w, box):
    img = np.zeros((h, w, 1), np.uint8)
    _, x0, y0, x1, y1 = (int(v) for v in box)
    img[y0:y1, x0:x1] = 1
    return img


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("shift", [(0, 0), (3, -2), (-4, 5)])
def test_boxes_follow_the_pixels(flip, shift):
    h, w = 20, 24
    box = np.array([[2, 5, 3, 11, 9]], np.float32)
    img = _paint_box(h, w, box[0])
    apply_online(img[None], "NHWC", [flip], [shift], 0)
    out = transform_boxes(box, w, h, flip, shift)
    ys, xs = np.nonzero(img[..., 0])
    assert out.tolist() == [[2, xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]


def test_boxes_are_clipped_and_dropped_by_visibility():
    boxes = np.array([[0, 0, 0, 4, 4], [1, 10, 10, 14, 14]], np.float32)
    out = transform_boxes(boxes, 16, 16, False, (-3, 0), min_visibility=0.3)
    assert out.tolist() == [[1, 7, 10, 11, 14]]  # the first keeps 1/4 of its area < 0.3
    out = transform_boxes(boxes, 16, 16, False, (-3, 0), min_visibility=0.2)
    assert out.tolist() == [[0, 0, 0, 1, 4], [1, 7, 10, 11, 14]]
    assert transform_boxes(boxes, 16, 16, False, (-4, 0)).tolist() == [[1, 6, 10, 10, 14]]  # nothing left


@pytest.mark.parametrize("flip", [False, True])
def test_keypoints_follow_the_pixels_and_swap_sides(flip):
    h, w = 12, 16
    # keypoints at pixel centres: 0 = left eye, 1 = right eye, 2 = nose
    kp = np.array([[3.5, 4.5, 2], [10.5, 4.5, 2], [7.5, 8.5, 1]], np.float32)
    img = np.zeros((h, w, 1), np.uint8)
    for i, (x, y, _) in enumerate(kp):
        img[int(y), int(x)] = 10 + i
    shift = (2, -1)
    apply_online(img[None], "NHWC", [flip], [shift], 0)
    out = transform_keypoints(kp, w, h, flip, shift, flip_pairs=[(0, 1)])
    for i, (x, y, v) in enumerate(out):
        moved = img[int(y), int(x), 0]
        # The point now named i sits on the pixel of the point that was i (no flip) or its pair (flip).
        src = {0: 1, 1: 0, 2: 2}[i] if flip else i
        assert moved == 10 + src and v == kp[src, 2]


def test_keypoints_leaving_the_frame_become_invisible():
    kp = np.array([[1.0, 1.0, 2], [8.0, 8.0, 2]], np.float32)
    out = transform_keypoints(kp, 10, 10, False, (-2, 0))
    assert out.tolist() == [[-1.0, 1.0, 0.0], [6.0, 8.0, 2.0]]


def test_flip_permutation_accepts_pairs_and_yolo_flip_idx():
    assert flip_permutation([(0, 1), (3, 4)], 5).tolist() == [1, 0, 2, 4, 3]
    assert flip_permutation([1, 0, 2], 6).tolist() == [1, 0, 2, 4, 3, 5]  # two instances
    assert flip_permutation(None, 3).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="instances"):
        flip_permutation([1, 0, 2], 4)
    with pytest.raises(ValueError, match="permutation"):
        flip_permutation([0, 0, 2], 3)
    with pytest.raises(ValueError, match="outside"):
        flip_permutation([(0, 5)], 3)


@pytest.mark.parametrize("flip", [False, True])
def test_masks_follow_the_tensor_with_their_own_fill(flip):
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 5, (9, 11)).astype(np.uint8)
    img = mask[None, :, :, None].copy()
    apply_online(img, "NHWC", [flip], [(-3, 2)], np.uint8(255))
    out = transform_mask(mask, flip, (-3, 2), fill=255)
    assert np.array_equal(out, img[0, :, :, 0])
    assert transform_mask(None, flip, (1, 1)) is None


def test_transform_record_moves_tensor_and_labels_together():
    rec = {
        "x": np.arange(2 * 6 * 8, dtype=np.float32).reshape(2, 6, 8),  # NCHW
        "label": 3,
        "boxes": np.array([[0, 1, 1, 3, 3]], np.float32),
        "keypoints": np.array([[1.5, 1.5, 2], [5.5, 1.5, 2]], np.float32),
        "mask": np.eye(6, 8, dtype=np.uint8),
    }
    out = transform_record(rec, "NCHW", True, (1, 0), np.float32(-1), flip_pairs=[(0, 1)])
    assert np.array_equal(out["x"], _reference(rec["x"], "NCHW", True, 1, 0, np.float32(-1)))
    assert out["boxes"].tolist() == [[0, 6, 1, 8, 3]]
    assert out["keypoints"].tolist() == [[3.5, 1.5, 2], [7.5, 1.5, 2]]
    assert np.array_equal(out["mask"], transform_mask(rec["mask"], True, (1, 0)))
    assert out["label"] == 3 and rec["x"][0, 0, 0] == 0  # the input is not modified


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


# --- with a real pack --------------------------------------------------------------


@pytest.mark.parametrize("reader,prefetch", [("mmap", False), ("pread", True)])
def test_online_batches_do_not_depend_on_batch_size_and_match_the_records(small_pack, reader, prefetch):
    from edgeaug.device.loader import Pack

    with Pack(str(small_pack), reader=reader) as p:
        fill = fill_value(p.manifest)
        runs = {
            bs: [x.copy() for x, _ in p.batches(bs, epoch=2, hflip=0.5, shift=20, prefetch=prefetch)]
            for bs in (1, 4, 7)
        }
        whole = np.concatenate(runs[1])
        for bs in (4, 7):
            assert np.concatenate(runs[bs]).tobytes() == whole.tobytes()
        order = p.epoch_order(2)
        flips, shifts = online_params(p.seed, 2, order, 0.5, 20)
        assert flips.any() and not flips.all()
        for j, i in enumerate(order.tolist()):
            ref = _reference(np.asarray(p[i][0]), "NHWC", flips[j], *shifts[j], fill)
            assert whole[j].tobytes() == ref.tobytes()
        recs = [p.record(i, epoch=2, hflip=0.5, shift=20) for i in order[:5].tolist()]
        assert all(r["x"].tobytes() == whole[j].tobytes() for j, r in enumerate(recs))
        other = np.concatenate([x.copy() for x, _ in p.batches(4, epoch=3, hflip=0.5, shift=20)])
        assert other.tobytes() != whole.tobytes()  # a new epoch, new draws
        seen = [idx for _, _, idx in p.batches(4, epoch=2, hflip=0.5, shift=20, with_index=True)]
        assert np.concatenate(seen).tolist() == order.tolist()
        plain = np.concatenate([x.copy() for x, _ in p.batches(4, epoch=2)])
        assert plain.tobytes() == np.concatenate([np.asarray(p[i][0])[None] for i in order]).tobytes()
        with pytest.raises(ValueError, match="shift"):
            next(p.batches(4, epoch=2, shift=10_000))


# --- during the read: every reader, layout and dtype -------------------------------

SYNTH_TARGET = """[device]
name = "synth"
arch = "any"
word_size = 64
[input]
height = 10
width = {width}
channels = {channels}
layout = "{layout}"
color = "{color}"
dtype = "{dtype}"
mean = {mean}
std = {std}
{quant}"""


@pytest.fixture(scope="module")
def synth_packs(shapes_dir, tmp_path_factory):
    """Small packs (10x12 records, inline in leaf pages) for every layout x dtype, and one 1-channel.

    Two more are 16 wide, so rows of 1-byte pixels take the mirror's 8-byte word path.
    """
    from edgeaug.builder.pipeline import build

    d = tmp_path_factory.mktemp("synth")
    out = {}
    kinds = [
        (lay, dt, c, 12)
        for lay in LAYOUTS
        for dt in DTYPES
        for c in ((3, 1) if (lay, dt) == ("NHWC", "int8") else (3,))
    ]
    for layout, dtype, channels, width in kinds + [("NHWC", "int8", 1, 16), ("NCHW", "uint8", 3, 16)]:
        name = f"{layout}-{dtype}-{channels}" + ("" if width == 12 else f"-w{width}")
        c = channels
        (d / f"{name}.toml").write_text(
            SYNTH_TARGET.format(
                width=width,
                layout=layout,
                dtype=dtype,
                channels=c,
                color="RGB" if c == 3 else "GRAY",
                mean=[0.5] * c if dtype.startswith("float") else [0.0] * c,
                std=[0.25] * c if dtype.startswith("float") else [1.0] * c,
                quant=""
                if dtype.startswith("float")
                else f"scale = {1 / 255}\nzero_point = {-128 if dtype == 'int8' else 0}\n",
            )
        )
        path = d / f"{name}.lmdb"
        build(shapes_dir, path, d / f"{name}.toml", variants=1, seed=2, workers=1, val=0.25)
        out[name] = path
    return out


def _expected(p, order, epoch, hflip, shift, layout) -> np.ndarray:
    flips, shifts = online_params(p.seed, epoch, order, hflip, shift)
    fill = fill_value(p.manifest)
    return np.stack(
        [_reference(np.asarray(p[i][0]), layout, f, *s, fill) for i, f, s in zip(order.tolist(), flips, shifts)]
    )


# (hflip, shift) settings: shift only (positive, negative and zero draws), flips only, both, every record flipped.
SETTINGS = [(0.0, 3), (1.0, 0), (0.5, 4), (1.0, 9)]
WAYS = [("pread", True), ("pread", False), ("mmap-gather", False), ("mmap-copy", True), ("mmap-copy", False)]


@pytest.mark.parametrize("way,prefetch", WAYS)
def test_online_batches_equal_the_reference_for_every_reader_layout_and_dtype(synth_packs, monkeypatch, way, prefetch):
    from edgeaug.device import batchread
    from edgeaug.device.loader import Pack

    if way == "mmap-copy":  # the per-record copy path, which the defaults keep for records >= 64 KB
        monkeypatch.setattr(batchread, "_SMALL_RECORD", 0)
    for name, path in synth_packs.items():
        layout = name.split("-")[0]
        with Pack(str(path), reader=way.split("-")[0], backend="pure") as p:
            assert p._reader.small == (way != "mmap-copy")
            for epoch, (hflip, shift) in enumerate(SETTINGS):
                got = np.concatenate(
                    [x.copy() for x, _ in p.batches(3, epoch=epoch, hflip=hflip, shift=shift, prefetch=prefetch)]
                )
                order = p.epoch_order(epoch)
                assert (
                    got.dtype == p.dtype and got.tobytes() == _expected(p, order, epoch, hflip, shift, layout).tobytes()
                ), (name, hflip, shift)
                if shift:
                    s = online_params(p.seed, epoch, order, hflip, shift)[1]
                    assert (s > 0).any() and (s < 0).any() and (s == 0).any(), "draws cover every sign"
                if hflip == 0.5:
                    f = online_params(p.seed, epoch, order, hflip, shift)[0]
                    assert f.any() and not f.all()


@pytest.mark.parametrize("reader", ["pread", "mmap"])
def test_online_reads_of_large_records_equal_the_reference(small_pack, reader):
    """The rpi4 pack: 150 KB records in overflow pages (pread at offsets, mmap per-record copies)."""
    from edgeaug.device.loader import Pack

    with Pack(str(small_pack), reader=reader) as p:
        assert not p._reader.small
        for epoch, (hflip, shift) in enumerate(SETTINGS):
            got = np.concatenate([x.copy() for x, _ in p.batches(5, epoch=epoch, hflip=hflip, shift=shift)])
            order = p.epoch_order(epoch)
            assert got.tobytes() == _expected(p, order, epoch, hflip, shift, "NHWC").tobytes(), (hflip, shift)


def test_gathered_rows_near_the_file_ends_are_moved_within_their_row(synth_packs):
    """A move that would gather from before the file's start or past its end moves the tensor in its row."""
    from edgeaug.device.loader import Pack

    with Pack(str(synth_packs["NHWC-uint8-3"]), reader="mmap") as p:
        r, nb = p._reader, p.nbytes
        recs = np.arange(4)
        r.gather(recs)  # headers checked
        r._toff = r._toff.copy()
        r._toff[recs] = [2, r.file_size - nb - 3, 2, r.file_size - nb]  # tensors at the file's ends (as read)
        plain = r.gather(recs).copy()
        moves = np.array([nb - 1, -5, 3, -(nb - 1)])  # each would gather from outside the file
        got = r.gather(recs, moves)
        for j, m in enumerate(moves.tolist()):
            if m > 0:
                assert got[j, m:].tobytes() == plain[j, : nb - m].tobytes()
            else:
                assert got[j, : nb + m].tobytes() == plain[j, -m:].tobytes()


def test_moves_as_large_as_the_tensor_are_refused(small_pack):
    from edgeaug.device.loader import Pack

    with Pack(str(small_pack), reader="pread") as p:
        x = np.empty((1,) + p.shape, p.dtype)
        with pytest.raises(ValueError, match="moves"):
            p._reader.fill_pread(x, np.array([0]), np.array([p.nbytes]))
        p._reader.fill_pread(x, np.array([0]), np.array([p.nbytes - 1]))  # the largest possible move reads
        assert x.reshape(-1).view(np.uint8)[-1] == p.record_at(0)["x"].reshape(-1).view(np.uint8)[0]
