"""scripts/study_augment.py --quick (no PyTorch) runs and prints every condition; the AP metric is correct."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scripts_under_test import load

pytest.importorskip("sklearn")
study_augment = load("study_augment")
study_detect = load("study_detect")
study_cuts = load("study_cuts")
average_precision, heat_targets, iou = study_detect.average_precision, study_detect.heat_targets, study_detect.iou


def test_quick_study_prints_every_condition(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert study_augment.main(["--quick", "--work", str(tmp_path / "w"), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    cls, det = json.loads(out.read_text())
    names = [r["condition"] for r in cls["rows"]]
    assert names == [
        "none (originals)",
        "online (fresh draw every epoch, in-process API)",
        "offline K=1",
        "offline K=4",
        "offline K=4 + shift 2",
        "offline K=4 + shift 2 + mixup 0.15 + cutmix 0.15",
    ]
    det_names = [r["condition"] for r in det["rows"]]
    assert det_names == [
        "none (originals)",
        "online with mosaic (Ultralytics-like), close_mosaic",
        "online + batch mosaic 1.0 (box-aware windows), close_mosaic",
        "offline K=8, no mosaic",
        "offline K=8 + online batch mosaic (box-aware windows)",
        "offline K=8 with mosaic",
        "offline K=8 with mosaic + online batch mosaic (box-aware windows)",
    ]
    for name in names + det_names:
        assert f"| {name} |" in text
    for r in cls["rows"]:
        assert len(r["accs"]) == 2 and all(0.0 <= a <= 1.0 for a in r["accs"])
        assert r["storage_mb"] > 0 and r["epoch_s"] > 0
    # Packs grow with K; the online row stores only the sources.
    mb = {r["condition"]: r["storage_mb"] for r in cls["rows"]}
    assert mb["offline K=4"] > 2.5 * mb["offline K=1"] and mb["online (fresh draw every epoch, in-process API)"] < 0.2
    # Sanity on fixed seeds: augmentation helps against the shifted val set.
    acc = {r["condition"]: r["mean"] for r in cls["rows"]}
    assert acc["online (fresh draw every epoch, in-process API)"] > acc["none (originals)"]
    assert acc["offline K=4"] > acc["none (originals)"]
    # Detection in --quick: data, packs (the builder's mosaic too) and the data path run; training is skipped.
    for r in det["rows"]:
        assert "PyTorch" in r["skipped"] and r["storage_mb"] > 0 and r["epoch_s"] > 0
    check_mosaic_pack(tmp_path / "w" / "det" / "k8m.lmdb")
    check_online_mosaic(tmp_path / "w" / "det")
    check_cut_stats(tmp_path / "w" / "det")


def check_cut_stats(det):
    """The cut measurement follows the packs' objects: the boxes it finds visible are those the builder wrote.

    One warp (no mosaic): the pack holds exactly the objects with v >= 0.1.  With the mosaic, the builder applies
    min_visibility 0.1 twice (the mosaic, then the affine, each to the box it receives), so it holds every object
    with v >= 0.1 and some down to 0.1 x 0.1.
    """
    from edgeaug.device.loader import Pack

    stats = study_cuts.cut_stats(det, 64, n=120)  # --quick's 120 train scenes, variants 1-7
    for pack, name in (("k8", "affine only (K=8, no mosaic)"), ("k8m", "builder mosaic (K=8 with mosaic)")):
        with Pack(str(det / f"{pack}.lmdb"), "train") as p:
            recs = [p.record(i) for i in range(len(p))]
        boxes = sum(len(np.asarray(r["boxes"]).reshape(-1, 5)) for r in recs if r["variant"] <= 7)
        v = np.asarray(stats[name]["vis"])
        assert ((v >= 0.0) & (v <= 1.0)).all() and int(np.sum(v >= 0.1)) == len(stats[name]["size"])
        if pack == "k8":
            assert boxes == int(np.sum(v >= 0.1))
        else:
            assert int(np.sum(v >= 0.1)) <= boxes <= int(np.sum(v >= 0.0099)) and boxes < int(np.sum(v > 0))
    # A mosaic shows the objects of all four tiles; the plain records only their own.
    assert len(stats["builder mosaic (K=8 with mosaic)"]["vis"]) > 3 * len(stats["affine only (K=8, no mosaic)"]["vis"])
    # The device's mosaic copies central windows: an object whole in it was whole in its record.
    batch = stats["affine only (K=8, no mosaic) + batch mosaic"]
    assert np.array_equal(np.asarray(batch["vis"]) >= 0.999, np.asarray(batch["total"]) >= 0.999)


def check_online_mosaic(det):
    """The Ultralytics-like online row renders the builder's mosaic: its epoch 0 is, byte for byte, variant 1 of
    the K=8 mosaic pack (same seed, recipe and partner order); its close_mosaic epochs are plain."""
    import cv2

    from edgeaug.device.loader import Pack

    lines = [json.loads(line) for line in (det / "scenes" / "set.jsonl").read_text().splitlines()]
    rows = [(r["path"], cv2.imread(str(det / "scenes" / r["path"]))[:, :, ::-1].copy(), r["boxes"]) for r in lines]
    ultra, _ = study_detect.online_conditions(rows, det / "target_rgb64.toml")
    ultra.epochs = 20
    served = sorted(x.tobytes() for xb, _ in ultra.batches(0, 0) for x in xb)
    with Pack(str(det / "k8m.lmdb"), "train") as p:
        stored = sorted(p.record(i)["x"].tobytes() for i in range(len(p)) if p.record(i)["variant"] == 1)
    assert served == stored and len(served) == len(rows)
    aug = ultra._augs[20]
    rel, img, boxes = rows[0]
    on = [aug.online(img, e, {"boxes": boxes}, source=rel, partners=ultra.online[2])[2][0]["on"] for e in (16, 17)]
    assert on == [True, False] and ultra.closed(17) and not ultra.closed(16)


def check_mosaic_pack(path):
    """The K=8 mosaic pack: variants 1-7 are canvas mosaics with three partners, variant 8 is plain, and the
    close_mosaic epochs serve exactly the plain variant of every source."""
    from edgeaug.device.loader import Pack

    with Pack(str(path), "train") as p:
        recs = [p.record(i) for i in range(len(p))]
    assert {r["variant"] for r in recs} == set(range(1, 9))
    for r in recs:
        first = r["params"]["ops"][0]
        assert first["op"] == "mosaic" and first["on"] == (r["variant"] < 8)
        assert len(first.get("partners", [])) == (3 if r["variant"] < 8 else 0)
    cond = study_detect.DetCondition("k8m", path, mosaic=True, plain=True)
    cond.epochs = 20
    assert not cond.closed(16) and cond.closed(17)  # the last 15% (3 of 20 epochs)
    served = [bx for _, boxes in cond.batches(0, 19) for bx in boxes]
    plain = [r for r in recs if r["variant"] == 8]
    assert len(served) == len(plain) == len({r["source"] for r in recs})
    key = sorted(np.asarray(b, np.float32).reshape(-1, 5).tobytes() for b in served)
    assert key == sorted(np.asarray(r["boxes"], np.float32).reshape(-1, 5).tobytes() for r in plain)


def test_iou():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    assert np.allclose(iou(a, b), [[1.0, 50 / 150, 0.0]])


def test_average_precision_by_hand():
    gts = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.array([[0, 0, 10, 10]])]
    perfect = [np.array([[0.9, 0, 0, 10, 10], [0.8, 20, 20, 30, 30]]), np.array([[0.7, 0, 0, 10, 10]])]
    assert average_precision(perfect, gts) == pytest.approx(1.0)
    # Ranked: TP (0.9), FP (0.8: IoU 1/3 < 0.5), TP (0.7), duplicate of a matched box FP (0.6); one gt missed.
    dets = [
        np.array([[0.9, 0, 0, 10, 10], [0.8, 25, 20, 35, 30], [0.6, 0, 0, 10, 10]]),
        np.array([[0.7, 1, 0, 11, 10]]),
    ]
    # recall/precision: (1/3, 1), (1/3, 1/2), (2/3, 2/3), (2/3, 1/2) -> envelope 1 then 2/3.
    assert average_precision(dets, gts) == pytest.approx(1 / 3 * 1 + 1 / 3 * 2 / 3)
    assert average_precision([np.zeros((0, 5)), np.zeros((0, 5))], gts) == 0.0
    assert np.isnan(average_precision([np.zeros((0, 5))], [np.zeros((0, 4))]))


def test_heat_targets_peak_at_box_centres():
    heat, reg, mask = heat_targets([np.array([[0, 8, 8, 24, 16]])], 16, 16)
    assert heat[0, 0, 3, 4] == 1.0 and mask.sum() == 1 and mask[0, 0, 3, 4] == 1
    assert np.allclose(reg[0, :, 3, 4], [4.0, 2.0, 0.0, 0.0])
