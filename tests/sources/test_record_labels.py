"""A detection record's label (what ``batches()`` yields as y) follows the boxes left after augmentation."""

import cv2
import numpy as np
from test_annotated_kinds import COLORS
from typer.testing import CliRunner

from edgeaug.cli import app
from edgeaug.device.loader import Pack
from edgeaug.sources.base import majority

runner = CliRunner()
W, H = 160, 120
# Per image: boxes [class, x0, y0, x1, y1] in pixels, one class per corner, so crops keep some and drop others.
SCENES = [
    [(0, 5, 5, 40, 35), (0, 120, 5, 155, 35), (1, 5, 80, 40, 115)],
    [(2, 5, 5, 40, 35), (1, 120, 80, 155, 115), (1, 60, 45, 100, 75)],
    [(1, 120, 5, 155, 35)],
    [(0, 5, 80, 40, 115), (2, 120, 80, 155, 115), (2, 60, 5, 100, 30)],
]


def _yolo(root):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i, boxes in enumerate(SCENES):
        img = np.random.default_rng(i).integers(0, 60, (H, W, 3)).astype(np.uint8)
        rows = []
        for c, x0, y0, x1, y1 in boxes:
            img[y0:y1, x0:x1] = COLORS[c]
            rows.append(f"{c} {(x0 + x1) / 2 / W} {(y0 + y1) / 2 / H} {(x1 - x0) / W} {(y1 - y0) / H}")
        cv2.imwrite(str(root / "images" / f"{i}.png"), img)
        (root / "labels" / f"{i}.txt").write_text("\n".join(rows) + "\n")
    (root / "data.yaml").write_text("names: [cat, dog, bird]\n")
    return root


def test_detection_record_label_is_the_majority_of_its_remaining_boxes(tmp_path):
    src = _yolo(tmp_path / "y")
    recipe = tmp_path / "crop.toml"
    recipe.write_text(
        'variants = 12\nmin_visibility = 0.6\n[[ops]]\nop = "random_resized_crop"\np = 1.0\nscale = [0.15, 0.4]\n'
    )
    out = tmp_path / "p.lmdb"
    args = ["build", str(src), "-o", str(out), "-t", "rpi4", "-r", str(recipe), "-w", "1", "-q", "--seed", "3"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    with Pack(str(out)) as p:
        source_label = [s["label"] for s in p.manifest["sources"]]
        recs = [p.record_at(i) for i in range(len(p))]
        recs = [(int(r["label"]), r["boxes"].tolist(), int(r["source"]), int(r["variant"])) for r in recs]
        y = np.concatenate([b[1] for b in p.batches(16, shuffle=False, all_variants=True)]).tolist()
    labels = [label for label, _, _, _ in recs]
    assert labels == [majority(boxes) for _, boxes, _, _ in recs]  # lowest id on ties, -1 without boxes
    assert y == labels  # batches() yields the same labels
    changed = [i for i, (label, _, src, _) in enumerate(recs) if label != source_label[src]]
    assert changed and -1 in labels  # crops did change labels, and emptied some records
    originals = [i for i, (_, _, _, v) in enumerate(recs) if v == 0]
    assert [labels[i] for i in originals] == source_label  # an uncropped record keeps its source's label
    names = [*p.manifest["classes"]]
    by_label = {(names[c] if c >= 0 else "(none)"): labels.count(c) for c in set(labels)}
    assert p.manifest["counts"]["train"] == by_label  # the manifest counts records by their own labels


def test_a_jsonl_records_given_label_stays(tmp_path):
    """Manifest rows name their label: boxes do not override it."""
    img = np.full((H, W, 3), 40, np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    (tmp_path / "m.jsonl").write_text('{"path": "a.png", "label": "zebra", "boxes": [[0, 150, 110, 159, 119]]}\n')
    recipe = tmp_path / "crop.toml"
    recipe.write_text('variants = 3\n[[ops]]\nop = "random_resized_crop"\np = 1.0\nscale = [0.1, 0.2]\n')
    out = tmp_path / "p.lmdb"
    r = runner.invoke(app, ["build", str(tmp_path / "m.jsonl"), "-o", str(out), "-t", "rpi4", "-r", str(recipe), "-q"])
    assert r.exit_code == 0, r.output
    with Pack(str(out)) as p:
        assert [int(p.record_at(i)["label"]) for i in range(len(p))] == [0, 0, 0, 0]
