"""Multi-image ops and instance masks through the whole build (issue 23's done-when).

A COCO set (polygons, RLE and compressed RLE) and a YOLO-seg set build through
the CLI with a recipe using all five multi-image ops; the packs are
byte-identical across worker counts, partners never cross the split, ``explain``
names them and ``verify --source`` regenerates every record.  The labels of
every rendered record (from the build's own render path) are checked against the
pixels: each instance mask covers the pixels drawn in its colour, boxes are their
masks' bounding boxes, masks never overlap, soft labels sum to 1.
"""

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgeaug.builder.augment import Augmenter
from edgeaug.builder.partners import Partners
from edgeaug.builder.plan import plan
from edgeaug.builder.render import load_source, render_variant, source_labels, working_image
from edgeaug.builder.resume import _changed_source
from edgeaug.builder.tasks import SourceResult
from edgeaug.cli import app
from edgeaug.config.fields import ConfigError
from edgeaug.config.recipe import load_recipe, parse_recipe
from edgeaug.config.targets import load_target
from edgeaug.device.loader import Pack
from edgeaug.sources.scan import scan
from edgeaug.sources.segments import SegmentError, rasterize

runner = CliRunner()
N = 6
FIVE = [{"op": n} for n in ("mosaic", "mixup", "cutmix", "copy_paste", "scale_jitter")]
RECIPE = """variants = 4
plain_variants = 1
fill = 114
min_visibility = 0.1
[[ops]]
op = "one_of"
ops = [{op = "mosaic"}, {op = "mixup"}, {op = "cutmix"}, {op = "copy_paste"}, {op = "scale_jitter"}]
[[ops]]
op = "hflip"
p = 0.5
"""


def colours(i):
    """Source ``i``'s background, rectangle and ellipse colours (distinct across sources)."""
    return (30, 60, 90 + 10 * i), (250, 40 + 35 * i, 40), (40, 250, 40 + 35 * i)


PALETTE = np.array([c for i in range(N) for c in colours(i)] + [(114, 114, 114)])


def scene(i):
    w, h = 256 + 16 * i, 224 + 8 * i  # larger than the 224x224 output: edges stay sharp
    bg, c_rect, c_ell = colours(i)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = bg
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    poly = [0.1 * w, 0.1 * h, 0.5 * w, 0.1 * h, 0.5 * w, 0.55 * h, 0.1 * w, 0.55 * h]
    rect = (xx >= poly[0]) & (xx < poly[2]) & (yy >= poly[1]) & (yy < poly[5])
    ell = ((xx - 0.7 * w) / (0.18 * w)) ** 2 + ((yy - 0.7 * h) / (0.2 * h)) ** 2 < 1
    img[rect], img[ell] = c_rect, c_ell
    return img, poly, ell


def rle_counts(m):
    """COCO RLE counts of a bool mask: column-major runs, zeros first."""
    flat = m.T.reshape(-1)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.r_[0, change, flat.size]
    runs = np.diff(bounds).tolist()
    return ([0] if flat[0] else []) + [int(v) for v in runs]


def rle_string(counts):
    """maskApi.c rleToString."""
    out = []
    for i, x in enumerate(counts):
        x -= counts[i - 2] if i > 2 else 0
        more = True
        while more:
            c, x = x & 0x1F, x >> 5
            more = x != -1 if c & 0x10 else x != 0
            out.append(chr((c | 0x20 if more else c) + 48))
    return "".join(out)


def make_coco(root):
    (root / "images").mkdir(parents=True)
    ims, anns = [], []
    for i in range(N):
        img, poly, ell = scene(i)
        h, w = ell.shape
        cv2.imwrite(str(root / "images" / f"c{i}.png"), img[..., ::-1])
        ims.append({"id": i, "file_name": f"c{i}.png", "width": w, "height": h})
        counts = rle_counts(ell)
        seg = {"size": [h, w], "counts": rle_string(counts) if i % 2 else counts}
        anns.append({"id": 10 * i + 1, "image_id": i, "category_id": 1, "bbox": [1, 1, 2, 2], "segmentation": [poly]})
        anns.append({"id": 10 * i + 2, "image_id": i, "category_id": 2, "bbox": [1, 1, 2, 2], "segmentation": seg})
    cats = [{"id": 1, "name": "box"}, {"id": 2, "name": "blob"}]
    (root / "instances.json").write_text(json.dumps({"images": ims, "annotations": anns, "categories": cats}))
    return root


def make_yolo(root):
    for d in ("images", "labels"):
        (root / d).mkdir(parents=True)
    (root / "data.yaml").write_text("names: [box, blob]\n")
    for i in range(N):
        img, poly, ell = scene(i)
        h, w = ell.shape
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        outline = np.c_[0.7 * w + 0.18 * w * np.cos(t), 0.7 * h + 0.2 * h * np.sin(t)]
        img[ell] = colours(i)[0]
        img[rasterize([outline], h, w)] = colours(i)[2]  # the ellipse as its polygon fills (pixel centres)
        cv2.imwrite(str(root / "images" / f"y{i}.png"), img[..., ::-1])
        pts = outline / (w, h)
        lines = ["0 " + " ".join(f"{v / s:.6f}" for v, s in zip(poly, (w, h) * 4))]
        lines.append("1 " + " ".join(f"{v:.6f}" for v in pts.reshape(-1)))
        (root / "labels" / f"y{i}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module", params=["coco", "yolo"])
def dataset(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    src = make_coco(root / "d") if request.param == "coco" else make_yolo(root / "d")
    (root / "r.toml").write_text(RECIPE)
    packs = {}
    for w in (1, 2):
        out = root / f"p{w}.lmdb"
        args = ["build", str(src), "-o", str(out), "-t", "rpi4", "-r", str(root / "r.toml"), "-w", str(w)]
        r = runner.invoke(app, [*args, "--val", "0.34", "-q"])
        assert r.exit_code == 0, r.output
        packs[w] = out
    return src, root / "r.toml", packs


def op_entries(params):
    for e in params.get("ops", []):
        yield e
        yield from op_entries(e)


def test_builds_are_byte_identical_across_worker_counts(dataset):
    _, _, packs = dataset
    assert packs[1].read_bytes() == packs[2].read_bytes()


def test_partners_stay_in_the_split_are_named_by_explain_and_deterministic(dataset):
    src, _, packs = dataset
    with Pack(str(packs[1])) as p:
        sources = p.manifest["sources"]
        split = {e["path"]: e["split"] for e in sources}
        assert "val" in split.values()
        used, plain = [], []
        for i in range(p.records):
            r = p.record_at(i)
            fired = [e for e in op_entries(r["params"]) if e.get("on") and "partner_rels" in e]
            own = sources[r["source"]]["path"]
            for e in fired:
                assert len(e["partner_rels"]) == len(e["partners"]) == len(e["partner_sha"])
                assert all(split[rel] == split[own] for rel in e["partner_rels"]), (own, e)
                assert own not in e["partner_rels"]
                used += e["partner_rels"]
            if r["variant"] == 4:  # plain_variants = 1: the last variant never mixes
                plain.append(r["params"]["ops"][0])
            shown = json.loads(runner.invoke(app, ["explain", str(packs[1]), str(i), "--json"]).output)
            assert shown["partners"] == [rel for e in fired for rel in e["partner_rels"]]
        assert used and all(split[rel] == "train" for rel in used)  # val records (variant 0) never draw
        assert plain and all(e == {"op": "one_of", "on": False} for e in plain)
        text = runner.invoke(app, ["explain", str(packs[1]), "1"]).output
        assert "partner_rels=" in text or "scale_jitter" in text


def test_verify_source_regenerates_multi_image_records(dataset):
    src, _, packs = dataset
    r = runner.invoke(app, ["verify", str(packs[1]), "--source", str(src)])
    assert r.exit_code == 0, r.output
    assert "regenerated records byte-identical" in r.output and "OK" in r.output


def test_verify_notices_a_changed_partner(dataset, tmp_path):
    import shutil

    src, _, packs = dataset
    copy = tmp_path / "d"
    shutil.copytree(src, copy)
    with Pack(str(packs[1])) as p:
        rel = next(
            e["partner_rels"][0]
            for i in range(p.records)
            for e in op_entries(p.record_at(i)["params"])
            if e.get("on") and e.get("partner_rels")
        )
    img = cv2.imread(str(copy / rel))
    cv2.imwrite(str(copy / rel), 255 - img)
    r = runner.invoke(app, ["verify", str(packs[1]), "--source", str(copy)])
    assert r.exit_code != 0 and "partner_sha" in r.output, r.output


def rendered(src, recipe_text):
    """Every train record of ``src`` under ``recipe_text``: (image, labels, params) from the build's render path."""
    sset = scan(src)
    rcp = parse_recipe(__import__("tomllib").loads(recipe_text))
    aug = Augmenter(rcp, load_target("rpi4"))
    out = []
    for t in plan(sset, rcp, 7, 0.0):
        loaded = load_source(t.source, rcp.fill)
        size, work = loaded.image.shape[1::-1], working_image(loaded.image, aug)
        partners = Partners(t.candidates, t.position, rcp.fill, load_source)
        for v in t.variants:
            got = render_variant(aug, work, loaded.labels, size, 7, t.source, v, None, loaded.image, partners)
            x, lab, params = got
            out.append((t.source, x, lab, params))
    return out


@pytest.mark.parametrize("kind", ["coco", "yolo"])
def test_instance_masks_cover_their_pixels_and_boxes_follow(kind, tmp_path):
    """Each instance's mask against the pixels of its colour (no photometric op, so colours survive)."""
    src = make_coco(tmp_path / "d") if kind == "coco" else make_yolo(tmp_path / "d")
    text = RECIPE.replace("variants = 4", "variants = 12").replace('{op = "mixup"}, ', "")
    checked = sum(check_instances(x, lab, (source.rel, params)) for source, x, lab, params in rendered(src, text))
    assert checked > 50


def check_instances(img, lab, what):
    """Instance masks against the pixels of their colour; how many objects were large enough to check."""
    assert lab.instances is not None and lab.instances.shape == (len(lab.boxes), *img.shape[:2])
    assert (lab.instances.sum(0) <= 1).all(), "instance masks overlap"
    checked = 0
    for box, m in zip(lab.boxes, lab.instances):
        ys, xs = np.nonzero(m)
        assert np.allclose(box[1:], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], atol=1)
        if min(box[3] - box[1], box[4] - box[2]) < 16:
            continue  # a sliver: one row of blended edge pixels is over 6% of it
        nearest = np.abs(img[:, :, None, :].astype(int) - PALETTE).sum(-1).argmin(-1)  # each pixel's colour
        near = nearest == np.bincount(nearest[m]).argmax()  # the pixels of the object's colour
        n, comp = cv2.connectedComponents(near.astype(np.uint8), connectivity=4)
        touched = np.unique(comp[m & near])
        drawn = np.isin(comp, touched[touched > 0])
        iou = (m & drawn).sum() / (m | drawn).sum()
        assert iou >= 0.9, (what, iou)
        checked += 1
    return checked


def test_single_image_geometry_moves_instances_and_drops_them_with_their_boxes(tmp_path):
    """Rotations take the bit-packed OpenCV warp; a large translation pushes objects out of the frame."""
    src = make_coco(tmp_path / "d")
    text = """variants = 8
min_visibility = 0.3
[[ops]]
op = "rotate"
degrees = [15, 40]
[[ops]]
op = "affine"
translate = [-0.45, 0.45]
"""
    records = rendered(src, text)
    assert sum(check_instances(x, lab, params) for _, x, lab, params in records) > 20
    assert any(len(lab.boxes) < 2 for _, _, lab, _ in records)  # dropped, boxes with them (checked row for row)


def test_partner_candidates_travel_to_workers_as_a_path_not_as_sources(tmp_path):
    import pickle

    from edgeaug.builder import tasks as tasks_mod

    src = make_coco(tmp_path / "d")
    rcp = parse_recipe(__import__("tomllib").loads(RECIPE))
    planned = plan(scan(src), rcp, 7, 0.0)
    blob = pickle.dumps(planned)
    one = pickle.dumps(planned[:1])
    assert len(blob) - len(one) < 2000 * (len(planned) - 1)  # the shared list is not repeated per task
    tasks_mod._RESCANNED.clear()
    back = pickle.loads(blob)
    assert [s.rel for s in back[0].candidates] == [s.rel for s in planned[0].candidates]
    assert back[0].candidates.sources == planned[0].candidates.sources
    tasks_mod._RESCANNED.clear()
    (src / "images" / "c5.png").rename(src / "images" / "c9.png")
    data = json.loads((src / "instances.json").read_text())
    data["images"][5]["file_name"] = "c9.png"
    (src / "instances.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="changed since the build was planned"):
        pickle.loads(blob)


def test_mixup_and_cutmix_soft_labels_sum_to_one(tmp_path):
    src = make_coco(tmp_path / "d")
    text = RECIPE.replace("variants = 4", "variants = 10")
    mixed = [lab.mix for _, _, lab, p in rendered(src, text) if lab.mix is not None]
    assert mixed
    for mix in mixed:
        assert abs(sum(w for _, w in mix) - 1) < 1e-9 and all(w > 0 for _, w in mix)


def test_sources_read_segments_and_boxes_are_mask_bounding_boxes(tmp_path):
    sset = scan(make_coco(tmp_path / "d"))
    s = sset.sources[1]
    assert s.segments is not None and len(s.segments) == 2 and s.segments[1].counts is not None
    lab = source_labels(s, (272, 232))
    _, _, ell = scene(1)
    assert np.array_equal(lab.instances[1], ell)  # compressed RLE decoded exactly
    ys, xs = np.nonzero(ell)
    assert lab.boxes[1].tolist() == [1, xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]  # not the JSON's bbox
    assert sset.warnings == ()  # segmentation is read, not warned about


def test_malformed_segmentation_names_file_annotation_and_field(tmp_path):
    src = make_coco(tmp_path / "d")
    p = src / "instances.json"
    data = json.loads(p.read_text())
    data["annotations"][3]["segmentation"] = {"size": [2, 2], "counts": [1, 2]}
    p.write_text(json.dumps(data))
    with pytest.raises(SegmentError, match=r"instances\.json: annotations\[id=12\]\.segmentation\.counts: runs sum"):
        scan(src)


def test_crowd_annotations_stay_skipped(tmp_path):
    src = make_coco(tmp_path / "d")
    p = src / "instances.json"
    data = json.loads(p.read_text())
    data["annotations"][0]["iscrowd"] = 1
    p.write_text(json.dumps(data))
    assert len(scan(src).sources[0].segments) == 1


def test_yolo_seg_lines_and_bad_points(tmp_path):
    src = make_yolo(tmp_path / "d")
    s = scan(src).sources[0]
    assert s.segments[0].normalized and len(s.segments) == 2
    (src / "labels" / "y0.txt").write_text("0 0.1 0.1 0.5 0.1 1.2 0.5\n")
    with pytest.raises(SegmentError, match=r"y0\.txt:1: x3 1\.2 is outside 0\.\.1"):
        scan(src)


@pytest.mark.parametrize(
    "ops, field",
    [
        ([{"op": "hflip"}, {"op": "mosaic"}], "ops[1].op"),
        ([{"op": "some_of", "ops": FIVE}], "ops[0].ops[0].op"),
        ([{"op": "one_of", "ops": [{"op": "mosaic"}, {"op": "hflip"}]}], "ops[0].ops[0].op"),
        ([{"op": "hflip"}, {"op": "one_of", "ops": FIVE}], "ops[1].ops[0].op"),
    ],
)
def test_a_multi_image_op_must_come_first(ops, field):
    with pytest.raises(ConfigError, match=rf"{field.replace('[', '.').replace(']', '.')}: \w+ is a multi-image op"):
        parse_recipe({"ops": ops}, "r.toml")


def test_plain_variants_bounds_and_the_shipped_ultralytics_recipe():
    with pytest.raises(ConfigError, match="plain_variants: 5 is more than the 4 variants"):
        parse_recipe({"variants": 4, "plain_variants": 5}, "r.toml")
    r = load_recipe("ultralytics")
    assert r.ops[0].op == "mosaic" and r.plain_variants == 1 and r.fill == 114
    assert [o.op for o in r.ops] == ["mosaic", "affine", "hue_saturation", "brightness", "hflip"]
    assert parse_recipe(r.to_dict()) == r  # the manifest's form reads back


def test_resume_notices_a_changed_partner(tmp_path):
    src = make_coco(tmp_path / "d")
    rcp = parse_recipe(__import__("tomllib").loads(RECIPE))
    tasks = plan(scan(src), rcp, 7, 0.0)
    t = tasks[0]
    sha = load_source(t.source).sha256
    partner = t.candidates[1]
    res = SourceResult(t.index, sha256=sha, partner_sha256={partner.rel: load_source(partner).sha256})
    assert _changed_source([t], {t.index: res}) is None
    partner.path.write_bytes(partner.path.read_bytes() + b"\0")
    assert _changed_source([t], {t.index: res}) == f"{partner.rel} (a partner of {t.source.rel})"


def test_the_pack_holds_each_records_instance_masks_and_its_format_says_so(dataset):
    """End to end: Pack.record(i)["instances"] (stored in the pack, format version 3) is aligned with the boxes."""
    _, _, packs = dataset
    with Pack(str(packs[1])) as p:
        assert p.manifest["format_version"] == 3
        seen = 0
        for i in range(p.records):
            r = p.record_at(i)
            inst = r["instances"]
            assert inst is not None and inst.shape == (len(r["boxes"]), 224, 224) and inst.dtype == bool
            assert inst.any(axis=(1, 2)).all()  # an emptied instance is dropped with its box
            for (cls, x0, y0, x1, y1), m in zip(r["boxes"].tolist(), inst):
                ys, xs = np.nonzero(m)
                assert abs(xs.min() - x0) <= 1 and abs(xs.max() + 1 - x1) <= 1, (i, cls)
                assert abs(ys.min() - y0) <= 1 and abs(ys.max() + 1 - y1) <= 1, (i, cls)
            pasted = any(e.get("op") == "copy_paste" and e.get("on") for e in op_entries(r["params"]))
            if pasted and len(inst) > 1:
                assert inst.sum(0).max() <= 1  # copy_paste: no two instance masks overlap (mixup keeps both layers)
            if r["mix"]:
                assert abs(sum(w for _, w in r["mix"]) - 1) < 1e-5
            seen += len(inst)
        assert seen > 0


def test_the_partner_cache_knows_edited_annotations(tmp_path):
    """Two builds in one process: a partner whose annotations changed (same image file) is loaded again."""
    from types import SimpleNamespace

    from edgeaug.builder import partners as P
    from edgeaug.sources.base import Source

    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.zeros((8, 8, 3), np.uint8))
    calls = []

    def load(source, fill):
        calls.append(source.boxes)
        from edgeaug.builder.augment import Labels

        return SimpleNamespace(error=None, sha256="0" * 64, image=np.zeros((8, 8, 3), np.uint8), labels=Labels())

    P.clear_cache()
    one = Source("a.png", img, 0, boxes=((0, 1, 1, 4, 4),))
    edited = Source("a.png", img, 0, boxes=((0, 2, 2, 6, 6),))
    P.load_partner(one, 114, load)
    P.load_partner(one, 114, load)  # cached
    P.load_partner(edited, 114, load)  # same file, other labels: loaded again
    assert calls == [one.boxes, edited.boxes]
    P.clear_cache()
