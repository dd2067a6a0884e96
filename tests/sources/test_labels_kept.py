"""Labels are never dropped silently: COCO folders, YOLO coordinate and file-name errors, keypoint flip pairs."""

import json
import shutil

import numpy as np
import pytest
from test_annotated_kinds import SCENE, H, W, make_coco, make_yolo

from edgeaug.builder.pipeline import build
from edgeaug.device.loader import Pack
from edgeaug.sources.coco import flip_pairs
from edgeaug.sources.scan import SourceError, scan


def _boxes(sset):
    return {s.rel: len(s.boxes or ()) for s in sset.sources}


def test_a_folder_holding_a_coco_json_is_read_as_coco(tmp_path):
    make_coco(tmp_path / "c")
    want = {f"images/{n}": len(b) for n, b in SCENE.items()}
    folder = scan(tmp_path / "c")
    assert folder.kind == "coco" and folder.classes == ("cat", "dog", "bird") and _boxes(folder) == want
    assert [s.rel for s in folder.sources] == [s.rel for s in scan(tmp_path / "c" / "instances.json").sources]
    # the usual COCO layout: annotations/instances_*.json beside images/
    (tmp_path / "c" / "annotations").mkdir()
    shutil.move(tmp_path / "c" / "instances.json", tmp_path / "c" / "annotations" / "instances_train.json")
    assert _boxes(scan(tmp_path / "c")) == want
    assert _boxes(scan(tmp_path / "c" / "annotations" / "instances_train.json")) == want  # the same source paths


def test_several_coco_files_are_refused_by_name(tmp_path):
    p = make_coco(tmp_path / "c")
    shutil.copy(p, tmp_path / "c" / "val.json")
    with pytest.raises(SourceError, match=r"several COCO annotation files \(instances\.json, val\.json\)"):
        scan(tmp_path / "c")


def test_a_broken_coco_json_in_a_folder_is_an_error_naming_it(tmp_path):
    make_coco(tmp_path / "c")
    (tmp_path / "c" / "instances.json").write_text('{"images": [], "annotations": [], "categories": []}')
    with pytest.raises(SourceError, match=r"instances\.json: images: the list is empty"):
        scan(tmp_path / "c")


def test_class_folders_with_other_json_stay_class_folders(shapes_dir, tmp_path):
    shutil.copytree(shapes_dir, tmp_path / "s")
    (tmp_path / "s" / "meta.json").write_text('{"author": "me"}')
    assert scan(tmp_path / "s").kind == "folders"


@pytest.mark.parametrize(
    "line,msg",
    [
        ("0 1.5 0.5 0.2 0.2", r"a\.txt:2: cx 1\.5 is outside 0\.\.1 \(YOLO coordinates are fractions"),
        ("0 0.5 -0.25 0.2 0.2", r"a\.txt:2: cy -0\.25 is outside 0\.\.1"),
        ("0 0.5 0.5 40 30", r"a\.txt:2: w 40 is outside 0\.\.1"),
    ],
)
def test_yolo_coordinates_outside_the_image_name_file_and_line(tmp_path, line, msg):
    root = make_yolo(tmp_path / "y")
    lab = root / "labels" / "a.txt"
    lab.write_text(lab.read_text().splitlines()[0] + "\n" + line + "\n")
    with pytest.raises(SourceError, match=msg):
        scan(root)


def test_yolo_edge_rounding_is_accepted(tmp_path):
    root = make_yolo(tmp_path / "y")
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 1.0000001 1.0\n")
    assert scan(root).sources[0].boxes[0][3] == pytest.approx(1.0)


def test_label_file_differing_in_case_is_an_error_naming_both(tmp_path):
    root = make_yolo(tmp_path / "y")
    (root / "labels" / "a.txt").rename(root / "labels" / "A.txt")
    if (root / "labels" / "a.txt").is_file():  # a case-insensitive file system finds it anyway
        assert _boxes(scan(root))["images/a.png"] == 3
        return
    with pytest.raises(SourceError, match=r"labels/A\.txt: .*differs only in case from its image images/a\.png"):
        scan(root)


def _pose(tmp_path, yaml):
    root = make_yolo(tmp_path / "y", "names: [cat, dog, bird]\nkpt_shape: [3, 3]\n" + yaml)
    for lab in (root / "labels").rglob("*.txt"):
        rows = [ln.split() for ln in lab.read_text().splitlines() if ln.strip()]
        lab.write_text("".join(" ".join(r + ["0.1 0.2 2 0.3 0.4 2 0.5 0.6 1"]) + "\n" for r in rows))
    return root


def test_yolo_pose_flip_idx_from_data_yaml(tmp_path):
    sset = scan(_pose(tmp_path, "flip_idx: [0, 2, 1]\n"))
    a = next(s for s in sset.sources if s.rel == "images/a.png")  # 3 boxes: 9 keypoints
    assert sset.keypoint_flip == (0, 2, 1)
    assert a.keypoint_flip == (0, 2, 1, 3, 5, 4, 6, 8, 7)
    assert next(s for s in sset.sources if s.rel == "images/sub/c.png").keypoint_flip is None


@pytest.mark.parametrize(
    "flip,msg",
    [("[0, 1]", "a permutation of 0..2"), ("[1, 2, 0]", r"must swap pairs"), ("[0, 1, 1]", "a permutation")],
)
def test_bad_flip_idx_names_data_yaml(tmp_path, flip, msg):
    with pytest.raises(SourceError, match=r"data\.yaml: flip_idx: .*" + msg):
        scan(_pose(tmp_path, f"flip_idx: {flip}\n"))


def test_coco_flip_pairs_from_keypoint_names():
    names = ["nose", "left_eye", "right_eye", "Left_Ear", "right_ear", "left_tail"]
    assert flip_pairs(names) == [0, 2, 1, 4, 3, 5]


def _face_coco(root):
    """One image whose person has its left eye on the image's right (facing the camera)."""
    import cv2

    (root / "images").mkdir(parents=True)
    cv2.imwrite(str(root / "images" / "p.png"), np.full((H, W, 3), 90, np.uint8))
    kps = [60, 20, 2, 80, 30, 2, 40, 30, 2]  # nose, left_eye (image right), right_eye (image left)
    data = {
        "images": [{"id": 1, "file_name": "p.png"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [30, 10, 60, 60], "keypoints": kps}],
        "categories": [{"id": 1, "name": "person", "keypoints": ["nose", "left_eye", "right_eye"]}],
    }
    (root / "person.json").write_text(json.dumps(data))
    return root


def test_mirrored_keypoints_keep_their_side_in_the_pack(tmp_path):
    root = _face_coco(tmp_path / "c")
    recipe = tmp_path / "r.toml"
    recipe.write_text('variants = 1\nresize = "squash"\n[[ops]]\nop = "hflip"\np = 1.0\n')
    build(root, tmp_path / "p.lmdb", "rpi4", recipe, seed=0, workers=1)
    with Pack(str(tmp_path / "p.lmdb")) as p:
        assert p.manifest["keypoint_flip_idx"] == [0, 2, 1]
        orig, flipped = (p.record_at(r)["keypoints"].copy() for r in (0, 1))
    sx = 224 / W
    assert orig[1, 0] == pytest.approx(80 * sx) and orig[1, 0] > orig[2, 0]  # left eye on the image's right
    # mirrored: the person now faces away, so the left eye is on the image's left, where the right eye was
    assert flipped[1, 0] == pytest.approx(224 - 40 * sx) and flipped[1, 0] > flipped[2, 0]
    assert flipped[0, 0] == pytest.approx(224 - 60 * sx)
