"""Pack.batches with online mosaic, mixup and cutmix (online_mix_batch): exact, deterministic, labelled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeaug import bundle
from edgeaug.device import online_mix_batch
from edgeaug.device.online_mix import mix_batch, mix_rng, plan_mix, soft_targets
from edgeaug.device.online_mix_batch import _moved_labels
from edgeaug.device.online_mix_labels import mix_labels

TARGET = """[device]
name = "mixsynth"
arch = "any"
word_size = 64
[input]
height = {height}
width = {width}
channels = 3
layout = "{layout}"
color = "RGB"
dtype = "{dtype}"
mean = {mean}
std = {std}
{quant}"""

KINDS = [(lay, dt) for lay in ("NHWC", "NCHW") for dt in ("uint8", "int8", "float16")]
OPS = [
    {"mosaic": 1.0},
    {"mixup": 0.5},
    {"cutmix": 0.5},
    {"mosaic": 0.5, "mixup": 0.5, "cutmix": 0.5, "hflip": 0.5, "shift": 2},
]


def _target(d: Path, name: str, layout: str, dtype: str, height: int = 10, width: int = 12) -> Path:
    f = dtype.startswith("float")
    path = d / f"{name}.toml"
    path.write_text(
        TARGET.format(
            height=height,
            width=width,
            layout=layout,
            dtype=dtype,
            mean=[0.5] * 3 if f else [0.0] * 3,
            std=[0.25] * 3 if f else [1.0] * 3,
            quant="" if f else f"scale = {1 / 255}\nzero_point = {-128 if dtype == 'int8' else 0}\n",
        )
    )
    return path


@pytest.fixture(scope="module")
def mix_packs(shapes_dir, tmp_path_factory):
    """Classification packs (class folders, 10x12 RGB) for NHWC/NCHW x uint8/int8/float16."""
    from edgeaug.builder.pipeline import build

    d = tmp_path_factory.mktemp("mixpacks")
    out = {}
    for layout, dtype in KINDS:
        name = f"{layout}-{dtype}"
        build(shapes_dir, d / f"{name}.lmdb", _target(d, name, layout, dtype), variants=1, seed=5, workers=1, val=0.25)
        out[(layout, dtype)] = d / f"{name}.lmdb"
    return out


# Objects per image as [class, x0, y0, x1, y1] in pixels of a 64x48 image; the last image has none (label -1).
SCENES = [
    [(0, 4, 4, 20, 16), (1, 40, 28, 60, 44)],
    [(2, 30, 6, 50, 22)],
    [(1, 6, 26, 26, 44), (0, 44, 4, 60, 18)],
    [(2, 20, 14, 44, 34)],
    [(0, 2, 2, 30, 22)],
    [(1, 34, 20, 62, 46), (2, 4, 30, 14, 40)],
    [],
]
COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


@pytest.fixture(scope="module")
def yolo_pack(tmp_path_factory):
    """A detection pack from a YOLO folder: 64x48 images, 32x40 NHWC uint8 tensors, two variants per image."""
    import cv2

    from edgeaug.builder.pipeline import build

    d = tmp_path_factory.mktemp("mixyolo")
    root = d / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i, boxes in enumerate(SCENES):
        img = np.random.default_rng(i).integers(0, 60, (48, 64, 3)).astype(np.uint8)
        rows = []
        for c, x0, y0, x1, y1 in boxes:
            img[y0:y1, x0:x1] = COLORS[c]
            rows.append(f"{c} {(x0 + x1) / 128} {(y0 + y1) / 96} {(x1 - x0) / 64} {(y1 - y0) / 48}")
        cv2.imwrite(str(root / "images" / f"{i}.png"), img)
        (root / "labels" / f"{i}.txt").write_text("".join(r + "\n" for r in rows))
    (root / "data.yaml").write_text("names: [cat, dog, bird]\n")
    out = d / "yolo.lmdb"
    build(root, out, _target(d, "det", "NHWC", "uint8", 32, 40), variants=1, seed=9, workers=1)
    return out


def _reference(p, epoch: int, bs: int, hflip=0.0, shift=0, soft=True, mixup_alpha=1.0, **mix):
    """mix_batch and soft_targets applied to the plain (flipped/shifted) batches with each batch's plan."""
    layout = p.manifest["target"]["layout"]
    h, w = (p.shape[1], p.shape[2]) if layout == "NCHW" else p.shape[:2]
    xs, ys = [], []
    for b, (x, y) in enumerate(p.batches(bs, epoch=epoch, hflip=hflip, shift=shift)):
        plan = plan_mix(mix_rng(p.seed, epoch, b), len(x), h, w, mixup_alpha=mixup_alpha, **mix)
        xs.append(mix_batch(x, layout, plan).copy())
        ys.append(soft_targets(y, plan, len(p.classes)) if soft else y)
    return np.concatenate(xs), np.concatenate(ys)


def _run(p, epoch: int, bs: int, **kw):
    got = [(x.copy(), y.copy()) for x, y in p.batches(bs, epoch=epoch, **kw)]
    return np.concatenate([g[0] for g in got]), np.concatenate([g[1] for g in got])


# --- tensors and soft labels --------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: "-".join(k))
def test_each_op_equals_mix_batch_on_the_plain_batch(mix_packs, kind):
    from edgeaug.device.loader import Pack

    with Pack(str(mix_packs[kind])) as p:
        for epoch, ops in enumerate(OPS):
            x, y = _run(p, epoch, 5, soft_labels=True, **ops)
            mix = {k: v for k, v in ops.items() if k in ("mosaic", "mixup", "cutmix")}
            online = {k: v for k, v in ops.items() if k in ("hflip", "shift")}
            rx, ry = _reference(p, epoch, 5, **online, **mix)
            assert x.dtype == p.dtype and x.tobytes() == rx.tobytes(), ops
            assert y.dtype == np.float32 and y.shape == (p.sources, len(p.classes)) and np.array_equal(y, ry)
            assert np.allclose(y.sum(axis=1), 1.0, atol=1e-6)
            plain = _run(p, epoch, 5, **online)[0]
            assert x.tobytes() != plain.tobytes()  # the op did change the batch


WAYS = [("pread", True, "auto"), ("pread", False, "pure"), ("mmap-gather", False, "auto"), ("mmap-copy", True, "auto")]


def test_batches_do_not_depend_on_prefetch_reader_or_backend(mix_packs, small_pack, monkeypatch):
    from edgeaug.device import batchread
    from edgeaug.device.loader import Pack

    ops = {"mosaic": 0.5, "mixup": 0.5, "cutmix": 0.5, "hflip": 0.5, "shift": 3, "soft_labels": True}
    for path in (mix_packs[("NCHW", "int8")], small_pack):  # inline 10x12 records and 150 KB overflow ones
        runs = []
        for way, prefetch, backend in WAYS:
            monkeypatch.setattr(batchread, "_SMALL_RECORD", 0 if way == "mmap-copy" else 64 << 10)
            with Pack(str(path), reader=way.split("-")[0], backend=backend) as p:
                runs.append(_run(p, 2, 4, prefetch=prefetch, **ops))
        for x, y in runs[1:]:
            assert x.tobytes() == runs[0][0].tobytes() and np.array_equal(y, runs[0][1])
        with Pack(str(path)) as p:
            assert _run(p, 3, 4, **ops)[0].tobytes() != runs[0][0].tobytes()  # another epoch, other draws


def test_probability_zero_is_the_plain_batch_and_soft_labels_are_one_hot(mix_packs):
    from edgeaug.device.loader import Pack

    with Pack(str(mix_packs[("NHWC", "uint8")])) as p:
        x, y = _run(p, 1, 4, hflip=0.5, shift=2)
        mx, my = _run(p, 1, 4, hflip=0.5, shift=2, mosaic=0.0, mixup=0.0, cutmix=0.0, soft_labels=True)
        assert mx.tobytes() == x.tobytes()
        assert np.array_equal(my, np.eye(len(p.classes), dtype=np.float32)[y])


def test_close_mosaic_turns_off_only_the_mosaic(mix_packs):
    """``mosaic=1.0 if epoch < epochs - 10 else 0.0``: mixup and cutmix keep their draws."""
    from edgeaug.device.loader import Pack

    with Pack(str(mix_packs[("NHWC", "float16")])) as p:
        x, _ = _run(p, 4, 6, mosaic=0.0, mixup=0.5, cutmix=0.5, soft_labels=True)
        ref = []
        for b, (xb, _) in enumerate(p.batches(6, epoch=4)):
            on = plan_mix(mix_rng(p.seed, 4, b), len(xb), 10, 12, mosaic=1.0, mixup=0.5, cutmix=0.5)
            off = plan_mix(mix_rng(p.seed, 4, b), len(xb), 10, 12, mosaic=0.0, mixup=0.5, cutmix=0.5)
            for name in ("mixup", "mix_partner", "lam", "cutmix", "cut_partner", "rect"):
                assert np.array_equal(getattr(on, name), getattr(off, name)), name
            assert on.mosaic.all() and not off.mosaic.any()
            on.mosaic[:] = False
            ref.append(mix_batch(xb, "NHWC", on).copy())
        assert x.tobytes() == np.concatenate(ref).tobytes()


def test_held_mixed_batches_are_never_overwritten(small_pack):
    from edgeaug.device.loader import Pack

    with Pack(str(small_pack), reader="pread") as p:
        held, copies = [], []
        for x, _y in p.batches(3, epoch=0, mosaic=1.0, mixup=0.5, soft_labels=True, prefetch=True):
            held.append(x)
            copies.append(x.copy())
        assert all(h.tobytes() == c.tobytes() for h, c in zip(held, copies))
        assert len({id(h) for h in held}) == len(held)  # none reused while held
        before = len(p._mix_spare)
        del held, x
        for _ in p.batches(3, epoch=1, mosaic=1.0, soft_labels=True, prefetch=False):
            pass
        assert len(p._mix_spare) <= max(before, 5)  # recycled, bounded


# --- errors -------------------------------------------------------------------------


def test_mixing_without_labels_that_can_say_so_is_an_error(mix_packs, yolo_pack):
    from edgeaug.device.loader import Pack

    cls = mix_packs[("NHWC", "uint8")]
    with Pack(str(cls)) as p:
        for op in ("mosaic", "mixup", "cutmix"):
            with pytest.raises(ValueError, match="classification pack.*soft_labels=True") as e:
                next(p.batches(4, **{op: 0.1}))
            assert str(cls) in str(e.value)
        with pytest.raises(ValueError, match="mosaic 1.5"):
            next(p.batches(4, mosaic=1.5, soft_labels=True))
        with pytest.raises(ValueError, match="mixup_alpha"):
            next(p.batches(4, mixup=0.5, mixup_alpha=0.0, soft_labels=True))
        with pytest.raises(ValueError, match="min_visibility"):
            next(p.batches(4, mixup=0.5, min_visibility=2.0, soft_labels=True))
    with Pack(str(yolo_pack)) as p:
        with pytest.raises(ValueError, match="yolo pack need with_labels=True") as e:
            next(p.batches(4, mosaic=1.0, soft_labels=True))
        assert str(yolo_pack) in str(e.value)
        assert (p.labels == -1).any()  # the image without boxes
        with pytest.raises(ValueError, match="soft_labels.*label -1") as e:
            next(p.batches(4, soft_labels=True))
        assert str(yolo_pack) in str(e.value)


# --- detection labels ---------------------------------------------------------------


def _record_labels(p, order, epoch, hflip, shift):
    recs = [p.record(i, epoch=epoch, hflip=hflip, shift=shift) for i in order.tolist()]
    return [{k: r.get(k) for k in ("boxes", "keypoints", "mask", "instances")} for r in recs]


def _same_labels(a, b) -> bool:
    for k in ("boxes", "keypoints", "mask", "instances"):
        if (a[k] is None) != (b[k] is None):
            return False
        if a[k] is not None and not (a[k].shape == b[k].shape and np.array_equal(a[k], b[k])):
            return False
    return True


@pytest.mark.parametrize("reader", ["pread", "mmap"])
def test_detection_labels_follow_flip_shift_and_mixing(yolo_pack, reader):
    from edgeaug.device.loader import Pack

    with Pack(str(yolo_pack), reader=reader) as p:
        assert p.manifest["source_kind"] == "yolo"
        vis = float(p.manifest["recipe"]["min_visibility"])
        online = {"hflip": 0.5, "shift": 4}
        # p = 0: exactly Pack.record's labels after the same flip and shift.
        for x, _y, labels, idx in p.batches(4, epoch=1, with_labels=True, with_index=True, **online):
            assert len(labels) == len(x)
            for lab, ref in zip(labels, _record_labels(p, idx, 1, **online)):
                assert _same_labels(lab, ref) and lab["instances"] is None
        mix = {"mosaic": 0.5, "mixup": 0.5, "cutmix": 0.5}
        got = list(p.batches(4, epoch=2, with_labels=True, with_index=True, mosaic_windows="centre", **online, **mix))
        changed = 0
        for b, (x, _y, labels, idx) in enumerate(got):
            # mixup_alpha defaults to 32 for a box pack, min_visibility to the recipe's.
            plan = plan_mix(mix_rng(p.seed, 2, b), len(x), 32, 40, mixup_alpha=32.0, **mix)
            assert not plan.mixup.any() or (np.abs(plan.lam[plan.mixup] - 0.5) < 0.3).all()
            recs = _record_labels(p, idx, 2, **online)
            plain = np.stack([r["x"] for r in (p.record(i, epoch=2, **online) for i in idx.tolist())])
            assert x.tobytes() == mix_batch(plain, "NHWC", plan).tobytes()
            for lab, ref in zip(labels, mix_labels(recs, plan, vis)):
                assert _same_labels(lab, ref)
            changed += int(plan.any)
            assert all(lab["boxes"].shape[1:] == (5,) for lab in labels)
        assert changed
        boxes = np.concatenate([lab["boxes"] for _, _, labels, _ in got for lab in labels])
        assert len(boxes) and (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= 40).all() and (boxes[:, 4] <= 32).all()
        strict = list(
            p.batches(4, epoch=2, with_labels=True, min_visibility=1.0, mosaic_windows="centre", **online, **mix)
        )
        assert sum(len(lab["boxes"]) for _, _, ls in strict for lab in ls) < len(boxes)


def test_box_aware_mosaic_windows_are_the_default_with_labels_and_equal_fit_windows(yolo_pack):
    from edgeaug.device.loader import Pack
    from edgeaug.device.online_mix_fit import fit_windows

    online = {"hflip": 0.5, "shift": 4}
    with Pack(str(yolo_pack)) as p:
        vis = float(p.manifest["recipe"]["min_visibility"])
        moved = 0
        for b, (x, _y, labels, idx) in enumerate(
            p.batches(4, epoch=3, with_labels=True, with_index=True, mosaic=1.0, **online)  # boxes: the default
        ):
            plan = plan_mix(mix_rng(p.seed, 3, b), len(x), 32, 40, mixup_alpha=32.0, mosaic=1.0)
            recs = _record_labels(p, idx, 3, **online)
            central = [plan.window(j, q) for j in range(len(x)) for q in range(4)]
            fit_windows(plan, [r["boxes"] for r in recs])
            moved += sum(plan.window(j, q) != c for (j, q), c in zip(np.ndindex(len(x), 4), central))
            plain = np.stack([r["x"] for r in (p.record(i, epoch=3, **online) for i in idx.tolist())])
            assert x.tobytes() == mix_batch(plain, "NHWC", plan).tobytes()
            for lab, ref in zip(labels, mix_labels(recs, plan, vis)):
                assert _same_labels(lab, ref)
        assert moved  # the boxes moved some windows off the centre
        with pytest.raises(ValueError, match="needs with_labels=True"):
            next(p.batches(4, mosaic=1.0, mosaic_windows="boxes", soft_labels=True))
        with pytest.raises(ValueError, match="mosaic_windows 'middle' must be one of centre, boxes"):
            next(p.batches(4, mosaic=1.0, with_labels=True, mosaic_windows="middle"))


def test_box_aware_batches_do_not_depend_on_prefetch_reader_or_backend(yolo_pack):
    """The windows come from the labels read with the batch: the same whatever reads them."""
    from edgeaug.device.loader import Pack

    ops = {"mosaic": 1.0, "mixup": 0.3, "hflip": 0.5, "shift": 3, "with_labels": True}
    runs = []
    for way, prefetch, backend in WAYS:
        with Pack(str(yolo_pack), reader=way.split("-")[0], backend=backend) as p:
            got = list(p.batches(4, epoch=2, prefetch=prefetch, **ops))
        runs.append((b"".join(x.tobytes() for x, _, _ in got), [lab["boxes"].tolist() for *_, ls in got for lab in ls]))
    assert all(r == runs[0] for r in runs[1:])


def test_labels_are_read_without_reading_tensors_again(yolo_pack, monkeypatch):
    from edgeaug.device.loader import Pack

    sizes = []
    real = online_mix_batch.os.pread

    def counting(fd, n, off):
        sizes.append(n)
        return real(fd, n, off)

    with Pack(str(yolo_pack), reader="pread") as p:
        monkeypatch.setattr(online_mix_batch.os, "pread", counting)  # after the open's own reads
        n = sum(len(x) for x, _, _ in p.batches(4, mosaic=1.0, with_labels=True))
        assert sizes and len(sizes) == 2 * n and max(sizes) < p.nbytes


def test_instances_follow_their_boxes_through_flip_and_shift():
    inst = np.zeros((2, 6, 8), bool)
    inst[0, 1:3, 0:2] = True  # near the left edge: leaves the frame under the shift
    inst[1, 2:5, 4:7] = True
    lab = {
        "boxes": np.array([[0, 0, 1, 2, 3], [1, 4, 2, 7, 5]], np.float32),
        "keypoints": np.zeros((0, 3), np.float32),
        "mask": None,
        "instances": inst,
    }
    out = _moved_labels(lab, 8, 6, True, (2, 0), None, 0.5)  # mirrored, then 2 px right: box 0 leaves
    assert out["boxes"].tolist() == [[1.0, 3.0, 2.0, 6.0, 5.0]]
    assert out["instances"].shape == (1, 6, 8) and out["instances"].dtype == bool
    ys, xs = np.nonzero(out["instances"][0])
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (3, 6, 2, 5)  # the box is the mask's bounds


# --- the bundle ---------------------------------------------------------------------


def test_every_device_module_is_bundled():
    device = Path(bundle.__file__).parent / "device"
    modules = {f.name for f in device.glob("*.py")} - {"__init__.py"}
    assert modules == set(bundle.SOURCES)
    order = list(bundle.SOURCES)
    assert order.index("online_mix.py") < order.index("online_mix_labels.py") < order.index("online_mix_batch.py")
    assert order.index("online_mix_batch.py") < order.index("pack.py")


# --- the device CLI -----------------------------------------------------------------


def test_cli_bench_measures_mixed_batches(mix_packs, yolo_pack, capsys):
    from edgeaug.device import loader

    for path, op in ((mix_packs[("NHWC", "uint8")], "--mosaic"), (yolo_pack, "--mixup")):
        assert loader.main(["bench", str(path), "--seconds", "0.05", "--batch", "4", op, "0.5", "--cutmix", "1"]) == 0
        out = capsys.readouterr().out
        assert f"online {op[2:]} 0.5, cutmix 1)" in out and "records/s" in out
    assert loader.main(["bench", str(yolo_pack), "--seconds", "0.05", "--mosaic", "2"]) == 2
    assert "mosaic 2.0 must be a probability" in capsys.readouterr().err
    for windows in ("centre", "boxes"):
        args = ["bench", str(yolo_pack), "--seconds", "0.05", "--batch", "4", "--mosaic", "1", "--mosaic-windows"]
        assert loader.main(args + [windows]) == 0
        assert f"online mosaic 1, {windows} windows)" in capsys.readouterr().out
    args = ["bench", str(mix_packs[("NHWC", "uint8")]), "--seconds", "0.05", "--mosaic", "1", "--mosaic-windows"]
    assert loader.main(args + ["boxes"]) == 2  # a classification pack has no boxes to place windows by
    assert "needs with_labels=True" in capsys.readouterr().err
