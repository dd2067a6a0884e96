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


def _rec(t, mask=None, boxes=(), keypoints=(), index=0, label=-1):
    return {
        "x": quantize(np.full((t.height, t.width, 3), 128, np.uint8), t),
        "boxes": np.array(boxes, np.float32).reshape(-1, 5),
        "keypoints": np.array(keypoints, np.float32).reshape(-1, 3),
        "mask": mask,
        "index": index,
        "source": 0,
        "variant": 0,
        "label": label,
    }


def test_mask_tints_differ_between_classes_and_match_their_boxes():
    from edgeaug.preview import color_of

    t = load_target("rpi4")
    mask = np.zeros((224, 224), np.uint8)
    mask[10:60, 10:60], mask[100:150, 100:150], mask[160:200, 160:200] = 1, 17, 3
    tile = draw_record(_rec(t, mask), t, [], 1)
    tints = {c: tuple(tile[y, y]) for c, y in ((1, 30), (17, 125), (3, 180))}
    assert len(set(tints.values())) == 3, tints  # 16 palette colours no longer wrap: 1 and 17 differ
    gray = np.full(3, 128.0)
    for c, tint in tints.items():  # the tint is class c's own colour, the one its boxes get
        assert np.abs(np.array(tint) - (0.55 * gray + 0.45 * np.array(color_of(c)))).max() <= 1, c


class _FakePack:
    def __init__(self, t, recs, classes):
        self.manifest = {"target": t.to_dict(), "classes": classes}
        self.records, self._recs = len(recs), recs

    def record_at(self, i):
        return self._recs[i]


def test_the_sheet_has_a_legend_for_keypoints_and_classes():
    from edgeaug.preview import color_of, contact_sheet, keypoint_color

    t = load_target("rpi4")
    recs = [_rec(t, boxes=[[1, 10, 10, 80, 80]], keypoints=[[50, 50, 2], [60, 60, 2], [70, 70, 1]])] * 2
    sheet = contact_sheet(_FakePack(t, recs, ["cat", "dog"]), count=2)
    grid_h = 224 + 8
    assert sheet.shape[0] > grid_h  # a legend row under the grid
    below = {tuple(p) for p in sheet[grid_h:].reshape(-1, 3).tolist()}
    for col in [color_of(1)] + [keypoint_color(i) for i in range(3)]:
        assert col in below, col
    plain = contact_sheet(_FakePack(t, [_rec(t)] * 2, ["cat"]), count=2)
    assert plain.shape[0] == grid_h  # nothing drawn, no legend


def test_pick_records_shuffles_by_seed_and_takes_classes_in_turn(small_pack):
    from edgeaug.device.loader import Pack
    from edgeaug.preview import pick_records

    with Pack(str(small_pack)) as p:
        assert pick_records(p, 4) == [0, 1, 2, 3]
        a, b = pick_records(p, 8, shuffle=True, seed=1), pick_records(p, 8, shuffle=True, seed=2)
        assert a == pick_records(p, 8, shuffle=True, seed=1) and a != b and a != list(range(8))
        label = [p.record_at(i)["label"] for i in range(p.records)]
        assert len({label[i] for i in range(4)}) == 1  # in order: one class first
        by_class = pick_records(p, 8, per_class=True)
        assert len({label[i] for i in by_class[:4]}) == 4 and len({label[i] for i in by_class[4:]}) == 4
        mixed = pick_records(p, 8, shuffle=True, seed=3, per_class=True)
        assert len({label[i] for i in mixed[:4]}) == 4 and mixed != by_class


def test_preview_cli_per_class_and_shuffle(small_pack, tmp_path):
    import cv2
    from typer.testing import CliRunner

    from edgeaug.cli import app

    for flags in (["--per-class"], ["--shuffle", "--seed", "5"]):
        out = tmp_path / "s.png"
        r = CliRunner().invoke(app, ["preview", str(small_pack), "-o", str(out), "-n", "4", *flags])
        assert r.exit_code == 0, r.output
        assert cv2.imread(str(out)).shape == (2 * (224 + 4) + 4,) * 2 + (3,)


def _l_record(instances, mix=None):
    t = load_target("rpi4")
    rec = {
        "x": quantize(np.zeros((224, 224, 3), np.uint8), t),
        "boxes": np.array([[1, 40, 40, 140, 140]], np.float32),
        "keypoints": np.zeros((0, 3), np.float32),
        "mask": None,
        "instances": instances,
        "mix": mix or [],
        "index": 0,
        "source": 0,
        "variant": 0,
        "label": 1,
    }
    return rec, t


def test_draw_record_outlines_each_instance_in_its_class_colour():
    inst = np.zeros((1, 224, 224), bool)
    inst[0, 40:140, 40:90] = True  # an L: the inner corner at (90, 90) lies inside the box
    inst[0, 90:140, 90:140] = True
    rec, t = _l_record(inst)
    tile = draw_record(rec, t, ["cat", "dog"], 1)
    colour = (60, 180, 75)  # class 1
    assert tuple(tile[60, 89]) == colour and tuple(tile[90, 110]) == colour  # the L's inner edges
    assert tuple(tile[60, 60]) != colour  # inside the mask: not filled
    plain = draw_record(dict(rec, instances=None), t, ["cat", "dog"], 1)
    assert tuple(plain[60, 89]) != colour and tuple(plain[90, 110]) != colour


def test_draw_record_shows_the_soft_label_of_a_mixed_record():
    rec, t = _l_record(None, [(0, 0.7), (1, 0.3)])
    tile = draw_record(rec, t, ["cat", "dog"], 1)
    plain = draw_record(dict(rec, mix=[]), t, ["cat", "dog"], 1)
    bottom = (slice(212, 224), slice(0, 120))
    assert (tile[bottom] == 255).any() and not (plain[bottom] == 255).any()


def test_explain_names_instances_and_the_soft_label():
    class FakePack:
        manifest = {
            "sources": [{"path": "a.jpg"}],
            "classes": ["cat", "dog"],
            "recipe": {"resize": "squash"},
            "target": {"width": 8, "height": 8},
        }

        def record_at(self, i):
            rec, _ = _l_record(np.zeros((1, 8, 8), bool), [(0, 0.625), (1, 0.375)])
            return dict(rec, digest="ab" * 32, params={"ops": []}, split=0)

    lines = explain(FakePack(), 0)
    assert "1 instance masks" in lines[1]
    assert "soft label (mixed record): cat 0.62 + dog 0.38" in lines[2]


@pytest.mark.parametrize(
    "ops, says, not_says",
    [
        ([{"op": "rotate", "on": True, "angle": 3.0}], "resize to 8x8 resample once", "multi-image"),
        (
            [{"op": "one_of", "on": True, "ops": [{"op": "mosaic", "on": True, "partners": [1, 2, 3]}]}],
            "the multi-image op renders the 8x8 frame",
            "resample once",
        ),
        (
            [{"op": "mosaic", "on": False}, {"op": "randaugment", "on": True, "chain": []}],
            "an auto policy's geometric members warp the output again",
            "multi-image",
        ),
    ],
)
def test_explain_header_says_how_the_ops_were_rendered(ops, says, not_says):
    class FakePack:
        manifest = {"sources": [{"path": "a.jpg"}], "recipe": {"resize": "squash"}, "target": {"width": 8, "height": 8}}

        def record_at(self, i):
            empty = np.zeros((0, 5), np.float32)
            return {
                "source": 0,
                "split": 0,
                "variant": 1,
                "label": -1,
                "boxes": empty,
                "keypoints": empty[:, :3],
                "mask": None,
                "digest": "ab" * 32,
                "params": {"ops": ops},
            }

    header = explain(FakePack(), 0)[2]
    assert says in header and not_says not in header and "into one warp" not in header
