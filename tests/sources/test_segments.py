"""COCO polygons / RLE / compressed RLE strings and YOLO-seg lines against hand-computed masks."""

import numpy as np
import pytest

from edgeaug.sources.base import SourceError
from edgeaug.sources.segments import (
    Segment,
    SegmentError,
    coco_segment,
    decode_rle,
    instance_labels,
    string_counts,
    yolo_line_kind,
    yolo_segment,
)

WHERE = "instances.json: annotations[id=7]"


def rle_counts(mask: np.ndarray) -> list:
    """Independent encoder: column-major runs, starting with a (possibly empty) run of zeros."""
    flat = [bool(v) for v in mask.T.reshape(-1)]
    counts, cur, run = [], False, 0
    for v in flat:
        if v == cur:
            run += 1
        else:
            counts.append(run)
            cur, run = v, 1
    counts.append(run)
    return counts


def rle_string(counts: list) -> str:
    """Independent re-implementation of maskApi.c rleToString (written from its description)."""
    out = []
    for i, c in enumerate(counts):
        x = c - counts[i - 2] if i > 2 else c
        while True:
            chunk = x & 0x1F
            x >>= 5  # arithmetic shift: negative numbers stay negative
            more = x != -1 if chunk & 0x10 else x != 0
            out.append(chr(48 + (chunk | (0x20 if more else 0))))
            if not more:
                break
    return "".join(out)


def blob(h=13, w=11):
    m = np.zeros((h, w), bool)
    m[2:9, 3:7] = True
    m[10:12, 0:2] = True
    m[5, 9] = True
    return m


def test_polygon_rasterizes_pixel_centres_inside():
    seg = coco_segment([[2, 1, 6, 1, 6, 4, 2, 4]], 3, WHERE)
    want = np.zeros((6, 8), bool)
    want[1:4, 2:6] = True  # pixel centres 2.5..5.5 x 1.5..3.5
    assert seg.cls == 3 and seg.counts is None
    assert np.array_equal(seg.mask(6, 8), want)
    assert seg.bbox(8, 6) == (2.0, 1.0, 6.0, 4.0)


def test_two_polygons_are_one_instance():
    seg = coco_segment([[0, 0, 2, 0, 2, 2, 0, 2], [4, 4, 6, 4, 6, 6, 4, 6]], 0, WHERE)
    m = seg.mask(6, 6)
    assert m.sum() == 8 and m[0:2, 0:2].all() and m[4:6, 4:6].all()


def test_triangle_matches_half_plane():
    seg = coco_segment([[0, 0, 8, 0, 0, 8]], 0, WHERE)
    yy, xx = np.mgrid[0:8, 0:8] + 0.5
    want = xx + yy < 8
    got = seg.mask(8, 8)
    assert (got != want).sum() <= 8  # only centres on the diagonal may go either way
    assert got[want & (xx + yy < 7.5)].all()


def test_uncompressed_rle_column_major():
    m = blob()
    counts = rle_counts(m)
    seg = coco_segment({"size": [13, 11], "counts": counts}, 1, WHERE)
    assert np.array_equal(seg.mask(13, 11), m)
    assert seg.bbox(11, 13) == (0.0, 2.0, 10.0, 12.0)


def test_rle_that_starts_with_ones_has_empty_zero_run():
    m = np.zeros((2, 2), bool)
    m[0, 0] = True
    assert rle_counts(m) == [0, 1, 3]
    assert np.array_equal(decode_rle([0, 1, 3], 2, 2), m)


def test_compressed_string_from_independent_encoder():
    rng = np.random.default_rng(5)
    for _ in range(20):
        h, w = rng.integers(1, 40, 2)
        m = np.zeros((h, w), bool)
        for _ in range(3):
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            m[y0 : y0 + rng.integers(1, 30), x0 : x0 + rng.integers(1, 30)] = True
        counts = rle_counts(m)
        s = rle_string(counts)
        assert string_counts(s) == tuple(counts)
        seg = coco_segment({"size": [int(h), int(w)], "counts": s}, 0, WHERE)
        assert np.array_equal(seg.mask(int(h), int(w)), m)


def test_known_strings_computed_by_hand():
    # [2, 3, 4, 1, 6]: the first three raw; then 1 - 3 = -2 (chunk 0b11110 -> 'N', sign set, done)
    # and 6 - 4 = 2.  100 = 3 * 32 + 4: chunk 4 with "more" (0x24 + 48 = 'T'), then 3.
    # 16 has its sign bit set in the first chunk, so a zero chunk must follow: 0x30 + 48 = '`', then '0'.
    assert rle_string([2, 3, 4, 1, 6]) == "234N2"
    assert string_counts("234N2") == (2, 3, 4, 1, 6)
    assert string_counts("T3") == (100,)
    assert string_counts("`0") == (16,)


@pytest.mark.parametrize(
    "seg, field",
    [
        ([[1, 2, 3, 4]], "segmentation[0]: a polygon needs"),
        ([[1, 2, 3, 4, 5, 6, 7]], "segmentation[0]: a polygon needs"),
        ([[0, 0, 4, 0, float("nan"), 4]], "segmentation[0]: expected a list of finite"),
        ([[0, 0, 4, 0, 4, 4], "x"], "segmentation[1]: expected"),
        ([[0, 0, 4, 0, True, 4]], "segmentation[0]: expected"),
        ("0 0 4 0 4 4", "segmentation: expected a list of polygons or an RLE"),
        ({"counts": [4]}, "segmentation.size: expected"),
        ({"size": [2, 0], "counts": [0]}, "segmentation.size: expected"),
        ({"size": [2, 2], "counts": [1, 2]}, "segmentation.counts: runs sum to 3, not 2x2"),
        ({"size": [2, 2], "counts": [1, -1, 4]}, "segmentation.counts: expected a string"),
        ({"size": [2, 2], "counts": None}, "segmentation.counts: expected a string"),
        ({"size": [2, 2], "counts": "4 "}, "segmentation.counts: character ' ' at offset 1"),
        ({"size": [2, 2], "counts": "T"}, "segmentation.counts: the string ends inside a count"),
        ({"size": [2, 2], "counts": "oooooooo1"}, "segmentation.counts: a count longer than"),
        ({"size": [2, 2], "counts": "13N"}, "segmentation.counts: count 2 decodes to a negative run"),
        ({"size": [2, 2], "counts": "114N"}, "segmentation.counts: count 3 decodes to a negative run"),
        ({"size": [100000, 100000], "counts": [1]}, "segmentation.size: 100000x100000 exceeds"),
    ],
)
def test_malformed_coco_names_file_annotation_and_field(seg, field):
    with pytest.raises(SegmentError) as e:
        coco_segment(seg, 0, WHERE)
    assert str(e.value).startswith(WHERE + ".") and field in str(e.value)
    assert isinstance(e.value, SourceError) and isinstance(e.value, ValueError)


def test_empty_segmentation_is_none():
    assert coco_segment([], 0, WHERE) is None and coco_segment(None, 0, WHERE) is None


def test_rle_size_must_match_image():
    seg = coco_segment({"size": [2, 2], "counts": [4]}, 0, WHERE)
    with pytest.raises(ValueError, match="does not match the 3x2 image"):
        seg.mask(3, 2)


def test_yolo_segment_line_is_normalized_until_rendered():
    seg = yolo_segment([2, 0.25, 0.25, 0.75, 0.25, 0.75, 0.5, 0.25, 0.5], "labels/a.txt:3")
    assert seg.cls == 2 and seg.normalized
    m = seg.mask(8, 16)  # rectangle x 4..12, y 2..4
    want = np.zeros((8, 16), bool)
    want[2:4, 4:12] = True
    assert np.array_equal(m, want)
    assert seg.bbox(16, 8) == (4.0, 2.0, 12.0, 4.0)


@pytest.mark.parametrize(
    "vals, msg",
    [
        ([0, 0.1, 0.1, 0.2, 0.2], "at least 3 points, got 5"),
        ([0, 0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4], "at least 3 points, got 8"),
        ([1.5, 0.1, 0.1, 0.2, 0.2, 0.3, 0.3], "class 1.5 is not a class id"),
        ([0, 0.1, 0.1, 0.2, 1.2, 0.3, 0.3], "y2 1.2 is outside 0..1"),
        ([0, 0.1, 0.1, 0.2, 0.2, -0.3, 0.3], "x3 -0.3 is outside 0..1"),
    ],
)
def test_malformed_yolo_segment_names_line(vals, msg):
    with pytest.raises(SegmentError, match="^labels/a.txt:4: .*" + msg.replace(".", "\\.")):
        yolo_segment(vals, "labels/a.txt:4")


def test_line_kind_by_length():
    assert yolo_line_kind(5, None, "f:1") == "box"
    assert yolo_line_kind(7, None, "f:1") == "segment"
    assert yolo_line_kind(11, (2, 3), "f:1") == "pose"  # 5 + 2*3, also odd: kpt_shape decides
    assert yolo_line_kind(13, (2, 3), "f:1") == "segment"
    for n in (1, 4, 6, 8):
        with pytest.raises(SegmentError, match=f"^f:1: expected 5 \\(box\\).* got {n}"):
            yolo_line_kind(n, None, "f:1")


def test_segment_is_frozen_value():
    a = Segment(0, ((0.0, 0.0, 1.0, 0.0, 1.0, 1.0),))
    assert a == Segment(0, ((0.0, 0.0, 1.0, 0.0, 1.0, 1.0),)) and hash(a) == hash(Segment(0, a.polygons))


def test_polygon_partly_outside_is_clipped_and_far_vertices_are_safe():
    seg = coco_segment([[-5, -5, 4, -5, 4, 3, -5, 3]], 0, WHERE)
    want = np.zeros((6, 6), bool)
    want[0:3, 0:4] = True
    assert np.array_equal(seg.mask(6, 6), want)
    far = coco_segment([[-1e30, 2, 1e30, 2, 1e30, 4, -1e30, 4]], 0, WHERE)
    assert far.mask(6, 6).sum() == 12


def test_instance_labels_boxes_are_mask_bounds_and_empty_instances_go():
    rle = rle_counts(blob())
    segs = [
        coco_segment([[2, 1, 6, 1, 6, 4, 2, 4]], 3, WHERE),
        coco_segment([[20, 20, 30, 20, 30, 30]], 1, WHERE),  # outside the 11x13 image
        coco_segment({"size": [13, 11], "counts": rle}, 5, WHERE),
    ]
    boxes, masks = instance_labels(segs, 11, 13)
    assert boxes.tolist() == [[3, 2, 1, 6, 4], [5, 0, 2, 10, 12]]
    assert masks.shape == (2, 13, 11) and np.array_equal(masks[1], blob())
