"""edgeaug.augment: the in-process API gives the builder's bytes for the same (seed, source, variant)."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edgeaug.augment import Augmentation, Partner, PartnerPool, source_key
from edgeaug.builder.pipeline import build
from edgeaug.builder.render import decode
from edgeaug.config.recipe import parse_recipe
from edgeaug.device.labels import pack_labels
from edgeaug.device.loader import Pack
from edgeaug.sources.scan import scan

RECIPE = {
    "variants": 3,
    "include_original": True,
    "min_visibility": 0.2,
    "ops": [
        {"op": "affine", "p": 0.9, "scale": [0.8, 1.2], "translate": [-0.1, 0.1]},
        {"op": "rotate", "p": 0.7, "degrees": [-20, 20]},
        {"op": "brightness", "p": 0.5, "delta": [-0.2, 0.2]},
    ],
}


def _records(pack_path):
    """Every record of both splits with its source's relative path."""
    out = []
    for split in ("train", "val"):
        with Pack(str(pack_path), split) as p:
            for i in range(len(p)):
                # Copies: label arrays of Pack.record view the map, which closes with the pack.
                rec = {k: np.array(v) if isinstance(v, np.ndarray) else v for k, v in p.record(i).items()}
                rec["rel"] = p.manifest["sources"][rec["source"]]["path"]
                out.append(rec)
    return out


def test_record_matches_the_builder_byte_for_byte(shapes_dir, tmp_path):
    out = tmp_path / "p.lmdb"
    build(shapes_dir, out, "rpi4", parse_recipe(RECIPE), seed=5, workers=1, val=0.25)
    aug = Augmentation(RECIPE, "rpi4", seed=5)
    images = {s.rel: decode(s.path.read_bytes()) for s in scan(shapes_dir).sources}
    recs = _records(out)
    assert len(recs) >= 24 * 2 and {r["variant"] for r in recs} == {0, 1, 2, 3}
    for rec in recs:
        x, _, params = aug.record(images[rec["rel"]], source=rec["rel"], variant=rec["variant"])
        assert x.dtype == rec["x"].dtype and x.tobytes() == rec["x"].tobytes(), (rec["rel"], rec["variant"])
        assert params == rec["params"]["ops"]
    # A different seed or variant gives other bytes (the identity really decides the record).
    r = next(r for r in recs if r["variant"] == 2)
    other = Augmentation(RECIPE, "rpi4", seed=6).record(images[r["rel"]], source=r["rel"], variant=2)[0]
    assert other.tobytes() != r["x"].tobytes()


def test_boxes_match_the_builder(tmp_path):
    """A JSONL detection set: the API's boxes pack to the same label bytes as the stored ones."""
    rng = np.random.default_rng(0)
    data = tmp_path / "det"
    data.mkdir()
    rows = []
    for i in range(6):
        img = rng.integers(0, 60, (90, 120, 3), np.uint8)
        x0, y0 = int(rng.integers(5, 60)), int(rng.integers(5, 40))
        img[y0 : y0 + 30, x0 : x0 + 40] = 220
        cv2.imwrite(str(data / f"{i}.png"), img)
        rows.append({"path": f"{i}.png", "label": "obj", "boxes": [[0, x0, y0, x0 + 40, y0 + 30]]})
    (data / "set.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "d.lmdb"
    build(data / "set.jsonl", out, "rpi4", parse_recipe(RECIPE), seed=9, workers=1)
    aug = Augmentation(RECIPE, "rpi4", seed=9)
    boxes = {r["path"]: {"boxes": r["boxes"]} for r in rows}
    n = 0
    for rec in _records(out):
        img = cv2.cvtColor(cv2.imread(str(data / rec["rel"])), cv2.COLOR_BGR2RGB)
        x, lab, _ = aug.record(img, boxes[rec["rel"]], source=rec["rel"], variant=rec["variant"])
        assert x.tobytes() == rec["x"].tobytes()
        assert pack_labels(lab.boxes, lab.keypoints, lab.mask) == pack_labels(rec["boxes"], rec["keypoints"], None)
        n += len(lab.boxes)
    assert n > 0


MOSAIC = {
    "variants": 4,
    "plain_variants": 1,
    "include_original": True,
    "fill": 114,
    "min_visibility": 0.1,
    "ops": [
        {"op": "mosaic", "p": 0.8, "grid": 2},
        {"op": "affine", "p": 1.0, "scale": [0.7, 1.3], "translate": [-0.1, 0.1]},
        {"op": "hflip", "p": 0.5},
    ],
}


def _detection_set(root, n):
    """``n`` PNGs of a bright box on noise, with a JSONL manifest of their boxes; rows as written."""
    rng = np.random.default_rng(0)
    root.mkdir()
    rows = []
    for i in range(n):
        img = rng.integers(0, 60, (90, 120, 3), np.uint8)
        x0, y0 = int(rng.integers(5, 60)), int(rng.integers(5, 40))
        img[y0 : y0 + 30, x0 : x0 + 40] = (220, 40 * (i % 5), 90)
        cv2.imwrite(str(root / f"{i}.png"), img)
        rows.append({"path": f"{i}.png", "label": "obj", "boxes": [[0, x0, y0, x0 + 40, y0 + 30]]})
    (root / "set.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return rows


def test_multi_image_records_match_the_builder_byte_for_byte(tmp_path):
    """A mosaic recipe: with the split's sources as partners (files, or in memory), every record is the build's."""
    data = tmp_path / "det"
    rows = _detection_set(data, 10)
    out = tmp_path / "m.lmdb"
    build(data / "set.jsonl", out, "rpi4", parse_recipe(MOSAIC), seed=3, workers=1, val=0.3)
    aug = Augmentation(MOSAIC, "rpi4", seed=3)
    by_rel = {s.rel: s for s in scan(data / "set.jsonl").sources}
    with Pack(str(out), "train") as p:
        entries = p.manifest["sources"]
    images = {r["path"]: cv2.cvtColor(cv2.imread(str(data / r["path"])), cv2.COLOR_BGR2RGB) for r in rows}
    boxes = {r["path"]: {"boxes": r["boxes"]} for r in rows}
    sha = {e["path"]: e["sha256"] for e in entries}
    pools = {}
    for split in ("train", "val"):  # the split's sources in manifest (plan) order, three ways
        rels = [e["path"] for e in entries if e["split"] == split]
        pools[split] = (
            PartnerPool([by_rel[r] for r in rels]),
            PartnerPool([Partner(r, sha[r], images[r], boxes[r], by_rel[r].label) for r in rels]),
            PartnerPool([(r, images[r], boxes[r], by_rel[r].label) for r in rels]),
        )
    recs, mosaics = _records(out), 0
    for rec in recs:
        split = next(e["split"] for e in entries if e["path"] == rec["rel"])
        files, memory, tuples = pools[split]
        want = pack_labels(rec["boxes"], rec["keypoints"], None)
        for pool in (files, memory, tuples):
            x, lab, params = aug.record(
                images[rec["rel"]], boxes[rec["rel"]], rec["rel"], rec["variant"], partners=pool
            )
            assert x.tobytes() == rec["x"].tobytes(), (rec["rel"], rec["variant"])
            assert pack_labels(lab.boxes, lab.keypoints, lab.mask) == want
            stored = [dict(o) for o in rec["params"]["ops"]]
            if pool is tuples and stored and "partner_sha" in stored[0]:  # no file hashes in memory: empty
                stored[0]["partner_sha"] = [""] * len(stored[0]["partner_sha"])
            assert params == stored
        first = rec["params"]["ops"][0] if rec["params"]["ops"] else {}
        mosaics += bool(first.get("on"))
        assert len(first.get("partners", [])) in (0, 3)
    assert mosaics >= 10 and {r["variant"] for r in recs} == {0, 1, 2, 3, 4}
    # online: epoch e is the pack's variant 1 + e, mosaic included
    r = next(r for r in recs if r["variant"] == 2 and r["params"]["ops"][0]["on"])
    x = aug.online(images[r["rel"]], 1, boxes[r["rel"]], r["rel"], partners=pools["train"][1])[0]
    assert x.tobytes() == r["x"].tobytes()


def test_multi_image_recipe_without_partners_says_what_to_pass():
    aug = Augmentation(MOSAIC, "rpi4", seed=0)
    img = np.zeros((40, 40, 3), np.uint8)
    with pytest.raises(ValueError, match=r"multi-image op 'mosaic'.*variant 2.*partners=PartnerPool"):
        aug.record(img, source="a.png", variant=2)
    # The original and the plain (close_mosaic) variant draw no partner: they need none.
    assert aug.record(img, source="a.png", variant=0)[0].shape == aug.record(img, source="a.png", variant=4)[0].shape
    with pytest.raises(TypeError, match=r"partners\[1\]: expected \(rel, image, labels\[, label\]\)"):
        PartnerPool([("b.png", img, None), "c.png"])
    with pytest.raises(ValueError, match=r"partners\[0\] \(b.png\): image: expected uint8"):
        PartnerPool([("b.png", img.astype(np.float32), None)])


def test_online_is_a_fresh_variant_per_epoch(shapes_dir):
    aug = Augmentation(RECIPE, "rpi4", seed=1)
    src = scan(shapes_dir).sources[0]
    img = decode(src.path.read_bytes())
    by_epoch = [aug.online(img, e, source=src.rel)[0].tobytes() for e in range(4)]
    assert len(set(by_epoch)) == 4
    assert by_epoch[2] == aug.record(img, source=src.rel, variant=3)[0].tobytes()  # epoch e: variant 1 + e
    far = aug.online(img, 2, source=src.rel, first_variant=10**6)[0].tobytes()
    assert far == aug.record(img, source=src.rel, variant=10**6 + 2)[0].tobytes() and far != by_epoch[2]
    # source_key= is the same identity as source=
    assert aug.record(img, source_key=source_key(src.rel), variant=3)[0].tobytes() == by_epoch[2]
    assert source_key(src.rel) == src.key


def test_gray_images_render_as_the_builder_decodes_them():
    aug = Augmentation(RECIPE, "rpi4", seed=0)
    g = np.arange(40 * 50, dtype=np.uint8).reshape(40, 50)
    a = aug.record(g, source="a.png", variant=1)[0]
    b = aug.record(np.repeat(g[:, :, None], 3, axis=2), source="a.png", variant=1)[0]
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"source": "a.png", "variant": -1}, "variant"),
        ({"variant": 1}, "exactly one of source"),
        ({"source": "a.png", "source_key": (1, 2, 3, 4)}, "exactly one of source"),
        ({"source": "a.png", "labels": {"boxes": [[1, 2, 3]]}}, "boxes: expected (n, 5)"),
        ({"source": "a.png", "labels": {"box": []}}, "unknown fields"),
    ],
)
def test_bad_arguments_say_what_is_wrong(kwargs, message):
    aug = Augmentation(RECIPE, "rpi4", seed=0)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        aug.record(np.zeros((8, 8, 3), np.uint8), **kwargs)
    with pytest.raises(ValueError, match="image: expected uint8"):
        aug.record(np.zeros((8, 8, 3), np.float32), source="a.png")


def test_import_loads_no_opencv():
    code = "import sys, edgeaug.augment; print('cv2' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"
