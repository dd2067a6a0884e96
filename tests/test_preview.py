"""Preview: de-quantizing every shipped target, drawing labels, explaining nested ops."""

import numpy as np
import pytest

from edgeaug.config.targets import list_targets, load_target, quantize
from edgeaug.preview import contact_sheet, draw_record, explain, to_rgb


@pytest.mark.parametrize("path", list_targets(), ids=lambda p: p.stem)
def test_to_rgb_inverts_every_target(path):
    t = load_target(path)
    img = np.random.default_rng(0).integers(0, 256, (t.height, t.width, 3), dtype=np.uint8)
    back = to_rgb(quantize(img, t), t)
    assert back.shape == img.shape and back.dtype == np.uint8
    if t.color == "GRAY":
        import cv2

        img = np.repeat(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None], 3, 2)
    step = 1 if t.dtype not in ("uint8", "int8") else max(1, int(np.ceil(1 / (255 * t.scale * min(t.std)))))
    assert np.abs(back.astype(int) - img).max() <= step  # within one quantization step


def test_draw_record_marks_boxes_keypoints_and_mask():
    t = load_target("rpi4")
    x = quantize(np.zeros((224, 224, 3), np.uint8), t)
    mask = np.zeros((224, 224), np.uint8)
    mask[100:150, 100:150] = 2
    rec = {
        "x": x,
        "boxes": np.array([[0, 10, 20, 60, 80]], np.float32),
        "keypoints": np.array([[200, 200, 2], [180, 30, 0]], np.float32),
        "mask": mask,
        "index": 3,
        "source": 1,
        "variant": 2,
        "label": 0,
    }
    tile = draw_record(rec, t, ["cat"], 1)
    assert tuple(tile[50, 10]) == (230, 25, 75)  # class 0's colour on the box's left edge
    assert tile[200, 200].any() and not tile[30, 180].any()  # visible keypoint drawn, invisible not
    assert tile[125, 125].any() and tuple(tile[100, 125]) == (255, 255, 255)  # tint and boundary


def test_contact_sheet_and_explain_of_a_nested_recipe(shapes_dir, tmp_path):
    from edgeaug.builder.pipeline import build
    from edgeaug.device.loader import Pack

    recipe = tmp_path / "r.toml"
    recipe.write_text(
        'variants = 2\n[[ops]]\nop = "some_of"\nn = [1, 2]\n'
        'ops = [{op = "rot90"}, {op = "one_of", ops = [{op = "jpeg"}, {op = "grayscale"}]}]\n'
    )
    out = tmp_path / "p.lmdb"
    build(shapes_dir, out, "rpi-zero2w", recipe, seed=1, workers=1)
    with Pack(str(out)) as p:
        sheet = contact_sheet(p, count=3, start=1)
        lines = explain(p, 1)
    # 3 tiles -> a 2 x 2 grid of 96 px targets drawn at 2x, 4 px gaps.
    assert sheet.shape == (2 * (192 + 4) + 4,) * 2 + (3,) and sheet.dtype == np.uint8
    assert lines[0].startswith("record 1: train") and any(ln.strip().startswith("- some_of") for ln in lines)
    assert any(ln.startswith("      - ") for ln in lines)  # the nested children are indented
