"""Format 2 on the device: ``Pack.record`` instances and soft labels, under online flip/shift; v1 packs still read."""

from __future__ import annotations

import json

import numpy as np
import pytest
from packcraft import PAINT, as_version_1, as_version_3, instance_masks, mix_of, rewrite, with_instances

from edgeaug.builder.pipeline import build
from edgeaug.device import format as F
from edgeaug.device import labels as L
from edgeaug.device.instances import instance_boxes
from edgeaug.device.loader import Pack, PackError


@pytest.fixture(scope="module")
def tiny_pack(shapes_dir, tiny_target, tmp_path_factory):
    out = tmp_path_factory.mktemp("inst") / "tiny.lmdb"
    build(shapes_dir, out, tiny_target, variants=1, seed=5, workers=1, val=0.25)
    return out


@pytest.fixture(scope="module")
def inst_pack(tiny_pack, tmp_path_factory):
    return with_instances(tiny_pack, tmp_path_factory.mktemp("inst2") / "inst.lmdb")


def test_record_returns_instances_and_mix(inst_pack):
    with Pack(str(inst_pack)) as p:
        assert p.verify() == []
        for i in range(len(p)):
            rec = p.record(i)
            r = p._start + i
            want = instance_masks(r, 8, 8)
            assert rec["instances"].dtype == bool and np.array_equal(rec["instances"], want)
            np.testing.assert_array_equal(rec["boxes"][:, 1:], instance_boxes(want))
            assert rec["mix"] == [(c, pytest.approx(w)) for c, w in mix_of(r, rec["label"], len(p.classes))]


@pytest.mark.parametrize("hflip,shift", [(1.0, 0), (0.0, 3), (1.0, 2), (0.5, 5)])
def test_instances_follow_the_pixels_under_online_flip_and_shift(inst_pack, hflip, shift):
    """Each crafted tensor paints instance k with PAINT[k]: the moved masks must be exactly those pixels."""
    seen_moved = 0
    with Pack(str(inst_pack)) as p:
        for epoch in range(3):
            for i in range(len(p)):
                rec = p.record(i, epoch=epoch, hflip=hflip, shift=shift)
                x = rec["x"][:, :, 0]
                painted = [x == v for v in PAINT]
                kept = [k for k in range(2) if painted[k].any()]
                assert rec["instances"].shape == (len(kept), 8, 8) and len(rec["boxes"]) == len(kept)
                for row, k in enumerate(kept):
                    assert np.array_equal(rec["instances"][row], painted[k])
                    np.testing.assert_array_equal(rec["boxes"][row, 1:], instance_boxes(painted[k][None])[0])
                seen_moved += not np.array_equal(rec["instances"], p.record(i)["instances"][kept])
                assert rec["mix"] == p.record(i)["mix"]  # a flip or shift does not change the soft label
    assert seen_moved > 0


def test_an_instance_shifted_out_of_the_frame_is_dropped_with_its_box(inst_pack):
    with Pack(str(inst_pack)) as p:
        dropped = 0
        for epoch in range(8):
            for i in range(len(p)):
                rec = p.record(i, epoch=epoch, shift=7)
                assert len(rec["boxes"]) == len(rec["instances"]) and rec["instances"].any(axis=(1, 2)).all()
                dropped += len(rec["boxes"]) < 2
        assert dropped > 0


def test_version_1_pack_reads_records_batches_and_verifies(tiny_pack, tmp_path):
    """A pack without instances or mix is written as version 1; as version 3 (extended sections) it reads alike."""
    v1, v3 = tiny_pack, as_version_3(tiny_pack, tmp_path / "v3.lmdb")
    with Pack(str(v1)) as old, Pack(str(v3)) as new:
        assert old.manifest["format_version"] == 1 and new.manifest["format_version"] == 3
        assert new.verify() == []
        assert old.verify() == []
        for reader in ("mmap", "pread"):
            with Pack(str(v1), reader=reader) as o:
                got = [(x.tobytes(), y.tobytes()) for x, y in o.batches(5, epoch=1, hflip=0.5, shift=2)]
            want = [(x.tobytes(), y.tobytes()) for x, y in new.batches(5, epoch=1, hflip=0.5, shift=2)]
            assert got == want
        for i in range(len(old)):
            a, b = old.record(i), new.record(i)
            assert a["digest"] != b["digest"] and a["instances"] is None and a["mix"] == []
            assert np.array_equal(a["x"], b["x"]) and a["label"] == b["label"]


def test_a_newer_pack_fails_with_a_clear_message(tiny_pack, tmp_path):
    newer = rewrite(tiny_pack, tmp_path / "v4.lmdb", lambda r, t, h, lab: (t, L.pack_labels(None, None, None)), 4)
    with pytest.raises(PackError, match="pack format 4 is newer than this loader's 3: update edgeaug"):
        Pack(str(newer))


def test_a_newer_record_in_a_current_pack_fails_with_a_clear_message(tiny_pack, tmp_path):
    bad = rewrite(tiny_pack, tmp_path / "r4.lmdb", lambda r, t, h, lab: (t, L.pack_labels(None, None, None)), 4)
    m = json.loads(_raw_manifest(bad))
    assert m["format_version"] == 4
    with Pack(str(tiny_pack)) as p:
        value = bytes(p._db.get(F.record_key(0)))
    v4 = value[:4] + (4).to_bytes(2, "little") + value[6:]
    with pytest.raises(F.FormatError, match="newer than this loader"):
        F.RecordHeader(v4)


def _raw_manifest(path):
    import lmdb

    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
    with env.begin() as txn:
        raw = bytes(txn.get(F.MANIFEST_KEY))
    env.close()
    return raw


def test_transform_instances_keeps_boxes_by_visibility_and_cuts_them_to_the_mask():
    from edgeaug.device.online_labels import transform_instances

    inst = np.zeros((3, 6, 8), bool)
    inst[0, 1:3, 0:4] = True  # 8 px, box 4x2 at the left
    inst[0, 1, 0] = False
    inst[1, 3:6, 5:8] = True  # 3x3 at the bottom right
    inst[2, 0, 7] = True  # one pixel in the top right corner
    boxes = np.concatenate([np.arange(3, dtype=np.float32)[:, None], instance_boxes(inst)], 1)
    # shift right by 3: instance 0 keeps its box whole, 1 keeps 0 of 3 columns, 2 leaves the frame
    b, m = transform_instances(boxes, inst, False, (3, 0), min_visibility=0.3)
    assert b[:, 0].tolist() == [0.0] and m.shape == (1, 6, 8)
    assert np.array_equal(m[0], np.roll(inst[0], 3, axis=1))
    np.testing.assert_array_equal(b[0, 1:], [3, 1, 7, 3])
    # mirrored, then moved right by 2: instance 0 keeps 2 of its 4 columns (kept at 0.3, not at 0.6), the notch is out
    b, m = transform_instances(boxes, inst, True, (2, 0), min_visibility=0.3)
    want0 = np.zeros((6, 8), bool)
    want0[1:3, 6:8] = True
    assert b[:, 0].tolist() == [0.0, 1.0, 2.0] and np.array_equal(m[0], want0)
    np.testing.assert_array_equal(b[:, 1:], [[6, 1, 8, 3], [2, 3, 5, 6], [2, 0, 3, 1]])
    b, m = transform_instances(boxes, inst, True, (2, 0), min_visibility=0.6)
    assert b[:, 0].tolist() == [1.0, 2.0] and len(m) == 2
    b, m = transform_instances(boxes, inst, False, (-2, 0), min_visibility=0.3)
    k = b[:, 0].tolist().index(0.0)
    want0 = np.zeros((6, 8), bool)
    want0[1:3, 0:2] = True
    assert np.array_equal(m[k], want0) and b[k, 1:].tolist() == [0, 1, 2, 3]


def test_inspect_counts_instances_and_mixed_records(inst_pack, tiny_pack, tmp_path):
    from typer.testing import CliRunner

    from edgeaug.cli import app

    with Pack(str(inst_pack)) as p:
        n = p.records
        assert p.labels_summary() == {
            "records": n,
            "with_instances": n,
            "instances": 2 * n,
            "mixed": (n + 1) // 2,
            "unreadable": 0,
        }
    res = CliRunner().invoke(app, ["inspect", str(inst_pack)])
    assert res.exit_code == 0, res.output
    assert f"labels   {2 * n} instance masks in {n} records, {(n + 1) // 2} mixed records (soft labels)" in res.output
    v1 = as_version_1(tiny_pack, tmp_path / "v1.lmdb")
    res = CliRunner().invoke(app, ["inspect", str(v1), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["labels"]["with_instances"] == 0
    res = CliRunner().invoke(app, ["inspect", str(tiny_pack)])
    assert "labels   no instance masks, no mixed records" in res.output
