"""Annotated datasets: YOLO txt, COCO JSON, mask folders, manifest columns, end to end."""

import json

import numpy as np
import pytest

from edgeaug.builder.pipeline import build
from edgeaug.device.loader import Pack
from edgeaug.sources.datayaml import yaml_entry
from edgeaug.sources.scan import SourceError, scan

W, H = 120, 90
COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
# image name -> boxes [class, x0, y0, x1, y1] in pixels
SCENE = {
    "a.png": [(0, 10, 10, 50, 40), (2, 60, 30, 110, 80), (2, 5, 60, 30, 85)],
    "b.png": [(1, 30, 20, 90, 70)],
    "sub/c.png": [],
    "d.png": [(1, 0, 0, 40, 30), (0, 70, 10, 100, 50)],
}


def _write_images(d):
    import cv2

    for name, boxes in SCENE.items():
        img = np.full((H, W, 3), 30, np.uint8)
        for c, x0, y0, x1, y1 in boxes:
            img[y0:y1, x0:x1] = COLORS[c]
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / name), img[..., ::-1])


def make_yolo(root, names_yaml="names: [cat, 'dog, big', bird]  # three\n"):
    _write_images(root / "images")
    for name, boxes in SCENE.items():
        if not boxes and name.startswith("sub"):
            continue  # an image without a label file: background
        lines = [
            f"{c} {(x0 + x1) / 2 / W} {(y0 + y1) / 2 / H} {(x1 - x0) / W} {(y1 - y0) / H}"
            for c, x0, y0, x1, y1 in boxes
        ]
        p = (root / "labels" / name).with_suffix(".txt")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("\n".join(lines) + "\n")
    if names_yaml is not None:
        (root / "data.yaml").write_text(names_yaml)
    return root


def make_coco(root):
    _write_images(root / "images")
    images = [{"id": 10 + i, "file_name": n, "width": W, "height": H} for i, n in enumerate(SCENE)]
    anns = []
    for i, (_n, boxes) in enumerate(SCENE.items()):
        for c, x0, y0, x1, y1 in boxes:
            a = {
                "id": len(anns),
                "image_id": 10 + i,
                "category_id": [5, 7, 9][c],
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "iscrowd": 0,
            }
            if c == 1:
                a["keypoints"] = [x0 + 1.5, y0 + 2.5, 2, x1 - 1, y1 - 1, 1]
            anns.append(a)
    anns.append({"id": 99, "image_id": 10, "category_id": 5, "bbox": [0, 0, 120, 90], "iscrowd": 1})
    cats = [
        {"id": 9, "name": "bird"},
        {"id": 5, "name": "cat"},
        {"id": 7, "name": "dog", "keypoints": ["nose", "tail"]},
    ]
    p = root / "instances.json"
    p.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return p


@pytest.mark.parametrize(
    "text,want",
    [
        ("names: [a, b, c]\n", ["a", "b", "c"]),
        ("nc: 2\nnames: ['x, y', \"z # not a comment\"] # comment\n", ["x, y", "z # not a comment"]),
        (
            "path: ../d\nnames:\n  - person\n  - 'traffic light'\n\n  # note\ntrain: images\n",
            ["person", "traffic light"],
        ),
        ("names:\n  0: person\n  1: car  # cars\nval: x\n", ["person", "car"]),
        ("names: {0: a, 1: b}\n", ["a", "b"]),
        # YAML quoting, as the spec has it: '' inside single quotes, backslash escapes inside double quotes
        ('names: [\'it\'\'s\', "say \\"hi\\"", "tab\\there"]\n', ["it's", 'say "hi"', "tab\there"]),
        ('names:\n  - "\\U0001F431 cat"\n  - 🐶 dog\n', ["\U0001f431 cat", "\U0001f436 dog"]),
        ("names: [1, 2.5]\n", ["1", "2.5"]),
    ],
)
def test_yaml_reads_names(text, want):
    assert yaml_entry(text, "names", "data.yaml") == want


@pytest.mark.parametrize(
    "text,msg",
    [
        ("names: [a, b\n", r"data.yaml:2: invalid YAML: expected ',' or ']'"),
        ("names:\n  0: a\n  2: b\n", "class ids must be 0..1"),
        ("names:\n  a b c\n", "data.yaml: names: expected a list or an id: name map, got 'a b c'"),
        ("names: [a, [b]]\n", "data.yaml: names: every class name must be a string"),
        ("- a\n- b\n", "data.yaml: expected a mapping"),
        ("names: !!python/object/apply:os.system [echo hi]\n", "data.yaml:1: invalid YAML"),
    ],
)
def test_yaml_errors_name_file_and_line(text, msg):
    with pytest.raises(SourceError, match=msg):
        yaml_entry(text, "names", "data.yaml")


def test_yolo_scan(tmp_path):
    s = scan(make_yolo(tmp_path / "y"))
    assert s.kind == "yolo" and s.classes == ("cat", "dog, big", "bird")
    by = {x.rel: x for x in s.sources}
    assert sorted(by) == ["images/a.png", "images/b.png", "images/d.png", "images/sub/c.png"]
    a = by["images/a.png"]
    assert a.normalized and a.label == 2  # most frequent class
    np.testing.assert_allclose(np.array(a.boxes)[0], [0, 10 / W, 10 / H, 50 / W, 40 / H])
    assert by["images/d.png"].label == 0  # tie between 1 and 0: the lowest id
    assert by["images/sub/c.png"].label == -1 and by["images/sub/c.png"].boxes is None


def test_yolo_classes_txt_numeric_and_pose(tmp_path):
    root = make_yolo(tmp_path / "y", names_yaml=None)
    assert scan(root).classes == ("0", "1", "2")  # no names anywhere: ids
    (root / "classes.txt").write_text("cat\ndog\nbird\n")
    assert scan(root).classes == ("cat", "dog", "bird")
    (root / "data.yaml").write_text("kpt_shape: [2, 3]\nnames:\n- a\n- b\n- c\n")
    (root / "labels" / "b.txt").write_text("1 0.5 0.5 0.5 0.5 0.25 0.5 2 0.75 0.5 0\n")
    with pytest.raises(SourceError, match=r"a\.txt:1: expected 11 numbers"):
        scan(root)
    for f in ("a", "d"):
        (root / "labels" / f"{f}.txt").unlink()
    b = {x.rel: x for x in scan(root).sources}["images/b.png"]
    assert b.keypoints == ((0.25, 0.5, 2.0), (0.75, 0.5, 0.0))


@pytest.mark.parametrize(
    "line,msg",
    [
        ("0 0.5 0.5 0.2", "b.txt:2: expected 5 numbers"),
        ("7 0.5 0.5 0.2 0.2", "b.txt:2: class 7 is not a class id 0..2"),
        ("1.5 0.5 0.5 0.2 0.2", "b.txt:2: class 1.5 is not a class id"),
        ("0 0.5 0.5 -0.2 0.2", "b.txt:2: negative box size"),
        ("0 0.5 nan 0.2 0.2", "b.txt:2: non-finite"),
        ("zero 0.5 0.5 0.2 0.2", "b.txt:2: expected numbers"),
    ],
)
def test_yolo_bad_lines(tmp_path, line, msg):
    root = make_yolo(tmp_path / "y")
    (root / "labels" / "b.txt").write_text("0 0.5 0.5 0.1 0.1\n" + line + "\n")
    with pytest.raises(SourceError, match=msg):
        scan(root)


def test_coco_scan(tmp_path):
    s = scan(make_coco(tmp_path / "c"))
    assert s.kind == "coco" and s.classes == ("cat", "dog", "bird")  # category ids 5, 7, 9
    by = {x.rel: x for x in s.sources}
    a = by["images/a.png"]
    assert not a.normalized and a.label == 2 and len(a.boxes) == 3  # the crowd box is skipped
    assert a.boxes[0] == (0.0, 10.0, 10.0, 50.0, 40.0) and a.keypoints is None
    assert by["images/b.png"].keypoints == ((31.5, 22.5, 2.0), (89.0, 69.0, 1.0))
    assert by["images/sub/c.png"].label == -1


@pytest.mark.parametrize(
    "edit,msg",
    [
        (lambda d: d["annotations"][0].update(image_id=555), r"annotations\[0\]\.image_id: 555 is not in images"),
        (lambda d: d["annotations"][0].update(category_id=1), r"annotations\[0\]\.category_id: 1 is not in categories"),
        (lambda d: d["annotations"][1].update(bbox=[1, 2, 3]), r"annotations\[1\]\.bbox: expected 4 finite numbers"),
        (lambda d: d["annotations"][3].update(keypoints=[1, 2]), r"annotations\[3\]\.keypoints: expected 6 finite"),
        (lambda d: d["images"][1].update(file_name="../../etc/x.png"), r"images\[1\]\.file_name: .* escapes"),
        (lambda d: d["images"][1].update(id=10), r"images\[1\]\.id: missing, not an integer/string, or duplicate 10"),
        (lambda d: d["images"][1].update(id=[1]), r"images\[1\]\.id: missing, not an integer/string"),
        (lambda d: d["annotations"][0].update(image_id={"a": 1}), r"annotations\[0\]\.image_id: \{'a': 1\} is not in"),
        (lambda d: d.pop("categories"), "categories: expected a list"),
    ],
)
def test_coco_errors_name_the_field(tmp_path, edit, msg):
    p = make_coco(tmp_path / "c")
    d = json.loads(p.read_text())
    edit(d)
    p.write_text(json.dumps(d))
    with pytest.raises(SourceError, match="instances.json: " + msg):
        scan(p)


def _mask_for(name):
    m = np.zeros((H, W), np.uint8)
    for c, x0, y0, x1, y1 in SCENE[name]:
        m[y0:y1, x0:x1] = c + 1
    return m


def test_mask_folder_and_manifest_columns(tmp_path):
    import cv2

    root = tmp_path / "seg"
    _write_images(root / "images")
    for n in SCENE:
        (root / "masks" / n).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "masks" / n), _mask_for(n))
    (root / "classes.txt").write_text("background\ncat\ndog\nbird\n")
    s = scan(root)
    assert s.kind == "masks" and s.classes[1] == "cat" and all(x.label == -1 and x.mask for x in s.sources)
    (root / "masks" / "b.png").unlink()
    with pytest.raises(SourceError, match="images/b.png has no mask masks/b.png"):
        scan(root)
    (root / "m.csv").write_text("path,label,mask\nimages/a.png,x,masks/a.png\nimages/b.png,y,\n")
    by = {x.rel: x for x in scan(root / "m.csv").sources}
    assert by["images/a.png"].mask.endswith("a.png") and by["images/b.png"].mask is None
    rows = [{"path": "images/a.png", "label": "x", "boxes": [[1, 2, 3, 40, 50]], "keypoints": [[5, 6, 2]]}]
    (root / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    a = scan(root / "m.jsonl").sources[0]
    assert a.boxes == ((1.0, 2.0, 3.0, 40.0, 50.0),) and a.keypoints == ((5.0, 6.0, 2.0),)
    for bad, msg in (
        ({"boxes": [[1, 2, 3]]}, "boxes: expected a list of"),
        ({"boxes": [[-1, 0, 0, 1, 1]]}, "boxes: need an integer class"),
        ({"mask": "../x.png"}, "mask: '../x.png' escapes"),
    ):
        (root / "m.jsonl").write_text(json.dumps({**rows[0], **bad}) + "\n")
        with pytest.raises(SourceError, match=r"m\.jsonl:1: " + msg):
            scan(root / "m.jsonl")


@pytest.mark.parametrize("kind", ["yolo", "coco"])
def test_detection_pack_end_to_end(tmp_path, kind):
    src = make_yolo(tmp_path / "y") if kind == "yolo" else make_coco(tmp_path / "c")
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        'variants = 2\nmin_visibility = 0.0\n[[ops]]\nop = "rotate"\ndegrees = [-20, 20]\n'
        '[[ops]]\nop = "hflip"\np = 0.5\n'
    )
    out = tmp_path / "p.lmdb"
    build(src, out, "rpi4", recipe, seed=3, workers=1, val=0.25)
    with Pack(str(out)) as p:
        m = p.manifest
        assert m["source_kind"] == kind and m["classes"][2] == "bird"
        sx, sy = 224 / W, 224 / H
        for r in range(p.records):
            rec = p.record_at(r)
            entry = m["sources"][rec["source"]]
            name = entry["path"].split("images/", 1)[1]
            want = SCENE[name]
            assert rec["label"] == entry["label"]
            assert rec["boxes"].dtype == np.float32 and rec["boxes"].shape[1] == 5
            if rec["variant"] == 0:  # the original: boxes only scaled to the target
                want = np.array([[c, x0 * sx, y0 * sy, x1 * sx, y1 * sy] for c, x0, y0, x1, y1 in want])
                np.testing.assert_allclose(rec["boxes"], want.reshape(-1, 5), atol=1e-3)
                if kind == "coco" and name == "b.png":  # keypoints scale with the image
                    np.testing.assert_allclose(
                        rec["keypoints"], [[31.5 * sx, 22.5 * sy, 2], [89 * sx, 69 * sy, 1]], atol=1e-3
                    )
            for c, x0, y0, x1, y1 in rec["boxes"].tolist():  # the box's colour is inside the box
                x = np.asarray(rec["x"])[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))]
                hit = (np.abs(x.astype(int) - COLORS[int(c)]).max(-1) < 60).mean()
                assert hit > 0.5, (r, c, hit)
        assert any(p.record_at(r)["label"] == -1 for r in range(p.records))
        assert "(none)" in json.dumps(m["counts"])


def test_unlabelled_sources_are_a_val_stratum(tmp_path):
    from edgeaug.builder.plan import val_sources
    from edgeaug.sources.scan import Source, SourceSet

    srcs = tuple(Source(f"{i}.png", tmp_path / f"{i}.png", -1 if i < 4 else 0) for i in range(8))
    chosen = val_sources(SourceSet(tmp_path, srcs, ("a",), "yolo"), 0, 0.5)
    assert len(chosen & {0, 1, 2, 3}) == 2 and len(chosen & {4, 5, 6, 7}) == 2


def test_bad_mask_is_skipped_without_absolute_paths(tmp_path):
    import cv2

    root = tmp_path / "seg"
    _write_images(root / "images")
    for n in SCENE:
        (root / "masks" / n).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "masks" / n), _mask_for(n))
    cv2.imwrite(str(root / "masks" / "b.png"), np.zeros((H, W, 3), np.uint8))  # colour: refused
    cv2.imwrite(str(root / "masks" / "d.png"), np.zeros((10, 10), np.uint8))  # wrong size
    res = build(root, tmp_path / "p.lmdb", "rpi4", variants=1, seed=0, workers=1)
    reasons = {s["path"]: s["reason"] for s in res.skipped}
    assert "single-channel" in reasons["images/b.png"] and "differs from the image" in reasons["images/d.png"]
    assert str(tmp_path) not in json.dumps(res.skipped)
    with Pack(str(tmp_path / "p.lmdb")) as p:
        rec = p.record_at(0)
        assert rec["mask"].shape == (224, 224) and set(np.unique(rec["mask"])) <= {0, 1, 2, 3}
