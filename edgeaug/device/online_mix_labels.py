"""Labels under online mosaic, mixup and cutmix: boxes, keypoints, instance masks and semantic masks.

A record's labels are the loader's (``Pack.record``): ``boxes (n, 5)``
``[class, x0, y0, x1, y1]`` and ``keypoints (m, 3)`` ``[x, y, visible]`` in
pixels of the tensor (pixel ``i`` spans ``[i, i + 1)``), an optional
semantic ``mask (H, W) uint8`` and optional ``instances (n, H, W) bool``
aligned with ``boxes``.  The rules, per output (see :mod:`.online_mix`):

* **mosaic**: a quadrant's record is moved by (quadrant corner - window
  corner); its boxes are clipped to the quadrant, its instance masks and
  semantic mask cropped into place; keypoints outside the quadrant become
  ``(0, 0, 0)``.
* **mixup**: both images' boxes, keypoints and instances, concatenated (own
  first); the semantic mask of the larger weight (own when ``lam >= 0.5``).
* **cutmix**: the partner's boxes clipped to the patch, keypoints outside it
  ``(0, 0, 0)``; the output's own objects lose what the patch covers: a box
  shrinks when the patch spans it across, keypoints under the patch become
  ``(0, 0, 0)``, instance masks lose the patch's pixels; the semantic mask
  takes the patch from the partner's.

A box is kept while its visible area is at least ``min_visibility`` of its
area in its source record (and more than 0); with instance masks, a box is
also cut to its mask's remaining pixels and dropped with an empty mask.  In
an output the plan changes, an unlabeled keypoint (``visible == 0``) is
``(0, 0, 0)`` too.  Keypoints are never dropped, so each record's instances
of K points stay whole.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .online_mix import MixPlan  # bundle: drop

_Rect = Tuple[int, int, int, int]  # x0, y0, x1, y1


def _record_labels(rec: Dict[str, Any], row: int, h: int, w: int) -> Dict[str, Any]:
    """One record's labels, shape-checked, as float32 boxes/keypoints and optional masks."""
    boxes = np.asarray(rec.get("boxes") if rec.get("boxes") is not None else np.zeros((0, 5)), np.float32)
    kps = np.asarray(rec.get("keypoints") if rec.get("keypoints") is not None else np.zeros((0, 3)), np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 5 or kps.ndim != 2 or kps.shape[1] != 3:
        raise ValueError(f"mix_labels: record {row}: boxes {boxes.shape} must be (n, 5), keypoints {kps.shape} (m, 3)")
    mask, inst = rec.get("mask"), rec.get("instances")
    if mask is not None and np.shape(mask) != (h, w):
        raise ValueError(f"mix_labels: record {row}: mask {np.shape(mask)} is not the {h}x{w} frame")
    if inst is not None and np.shape(inst) != (len(boxes), h, w):
        raise ValueError(f"mix_labels: record {row}: instances {np.shape(inst)} do not match {len(boxes)} boxes")
    a = (boxes[:, 3] - boxes[:, 1]).astype(np.float64) * (boxes[:, 4] - boxes[:, 2])
    return {"boxes": boxes, "area0": a, "keypoints": kps, "mask": mask, "instances": inst}


def _mask_bounds(inst: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(n, 4)`` pixel bounding boxes ``[x0, y0, x1, y1]`` of instance masks, and which are non-empty."""
    cols, rows = inst.any(axis=1), inst.any(axis=2)  # (n, W), (n, H)
    nonempty = rows.any(axis=1)
    w, h = cols.shape[1], rows.shape[1]
    x0, x1 = cols.argmax(axis=1), w - cols[:, ::-1].argmax(axis=1)
    y0, y1 = rows.argmax(axis=1), h - rows[:, ::-1].argmax(axis=1)
    return np.stack([x0, y0, x1, y1], 1).astype(np.float32), nonempty


class _Pieces:
    """The parts of the changed outputs, in output order: each shows one record's window ``src`` at ``dst``.

    Per output: its mosaic quadrants (or its record, whole), the mixup
    partner (whole), the cutmix partner's patch; ``occluded`` marks the
    pieces under their output's cutmix patch (all but the patch itself).
    """

    def __init__(self, plan: MixPlan, outputs: List[int]):
        full = (0, 0, plan.width, plan.height)
        rows: List[Tuple[int, int, _Rect, int, int, bool]] = []  # output, record, dst, dx, dy, occluded
        for j in outputs:
            cut = bool(plan.cutmix[j])
            if plan.mosaic[j]:
                rows += [(j, r, d, d[0] - s[0], d[1] - s[1], cut) for r, d, s in plan.quadrants(j)]
            else:
                rows.append((j, j, full, 0, 0, cut))
            if plan.mixup[j]:
                rows.append((j, int(plan.mix_partner[j]), full, 0, 0, cut))
            if cut:
                rect = tuple(int(v) for v in plan.rect[j])
                rows.append((j, int(plan.cut_partner[j]), rect, 0, 0, False))
        self.output = np.array([r[0] for r in rows], np.int64)
        self.record = np.array([r[1] for r in rows], np.int64)
        self.dst = np.array([r[2] for r in rows], np.float32).reshape(-1, 4)
        self.shift = np.array([r[3:5] for r in rows], np.float32).reshape(-1, 2)
        self.occluded = np.array([r[5] for r in rows], bool)
        self.rect = plan.rect[self.output].astype(np.float32)  # the output's cutmix patch

    def gather(self, counts: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """For rows stacked per record (``counts[r]`` of record ``r``): each piece's rows, and their piece."""
        n = counts[self.record]
        piece = np.repeat(np.arange(len(n)), n.astype(np.intp))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        first = np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.int64)
        return starts[self.record][piece] + np.arange(len(piece)) - first[piece], piece


def _span_cut(lo: np.ndarray, hi: np.ndarray, r0: np.ndarray, r1: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Intervals ``[lo, hi)`` minus ``[r0, r1)`` where that leaves one piece (else unchanged)."""
    covers_lo, covers_hi = (r0 <= lo) & (r1 > lo), (r0 < hi) & (r1 >= hi)
    return np.where(covers_lo & ~covers_hi, r1, lo), np.where(covers_hi & ~covers_lo, r0, hi)


def _area(b: np.ndarray) -> np.ndarray:
    return (b[:, 3] - b[:, 1]).astype(np.float64) * (b[:, 4] - b[:, 2])


def _place_boxes(b: np.ndarray, dst: np.ndarray, shift: np.ndarray, rect: np.ndarray, occluded: np.ndarray):
    """Boxes moved by ``shift``, clipped to ``dst``, cut by ``rect`` where ``occluded``: (boxes, visible area)."""
    b[:, [1, 3]] = np.clip(b[:, [1, 3]] + shift[:, :1], dst[:, :1], dst[:, 2:3])
    b[:, [2, 4]] = np.clip(b[:, [2, 4]] + shift[:, 1:], dst[:, 1:2], dst[:, 3:4])
    iw = np.clip(np.minimum(b[:, 3], rect[:, 2]) - np.maximum(b[:, 1], rect[:, 0]), 0, None)
    ih = np.clip(np.minimum(b[:, 4], rect[:, 3]) - np.maximum(b[:, 2], rect[:, 1]), 0, None)
    visible = _area(b) - np.where(occluded, iw.astype(np.float64) * ih, 0.0)
    across_x = occluded & (rect[:, 0] <= b[:, 1]) & (rect[:, 2] >= b[:, 3])  # the patch spans the box's width
    across_y = occluded & (rect[:, 1] <= b[:, 2]) & (rect[:, 3] >= b[:, 4])
    y0, y1 = _span_cut(b[:, 2], b[:, 4], rect[:, 1], rect[:, 3])
    x0, x1 = _span_cut(b[:, 1], b[:, 3], rect[:, 0], rect[:, 2])
    b[:, 2], b[:, 4] = np.where(across_x, y0, b[:, 2]), np.where(across_x, y1, b[:, 4])
    b[:, 1], b[:, 3] = np.where(across_y, x0, b[:, 1]), np.where(across_y, x1, b[:, 3])
    return b, visible


def _place_instances(labs, pieces: _Pieces, piece: np.ndarray, h: int, w: int) -> np.ndarray:
    """Each candidate box's instance mask, moved into its piece and cut by the patch where occluded."""
    inst = np.zeros((len(piece), h, w), bool)
    first = np.searchsorted(piece, np.arange(len(pieces.record) + 1))
    for p, r in enumerate(pieces.record.tolist()):
        x0, y0, x1, y1 = (int(v) for v in pieces.dst[p])
        dx, dy = (int(v) for v in pieces.shift[p])
        inst[first[p] : first[p + 1], y0:y1, x0:x1] = labs[r]["instances"][:, y0 - dy : y1 - dy, x0 - dx : x1 - dx]
        if pieces.occluded[p]:
            c0, r0, c1, r1 = (int(v) for v in pieces.rect[p])
            inst[first[p] : first[p + 1], r0:r1, c0:c1] = False
    return inst


def _place_keypoints(k: np.ndarray, pieces: _Pieces, piece: np.ndarray) -> np.ndarray:
    """Keypoints moved with their piece; ``(0, 0, 0)`` outside it, under the patch, or unlabeled."""
    dst, rect = pieces.dst[piece], pieces.rect[piece]
    k[:, :2] += pieces.shift[piece]
    inside = (k[:, 0] >= dst[:, 0]) & (k[:, 0] < dst[:, 2]) & (k[:, 1] >= dst[:, 1]) & (k[:, 1] < dst[:, 3])
    under = (k[:, 0] >= rect[:, 0]) & (k[:, 0] < rect[:, 2]) & (k[:, 1] >= rect[:, 1]) & (k[:, 1] < rect[:, 3])
    k[~inside | (under & pieces.occluded[piece]) | (k[:, 2] <= 0)] = 0
    return k


def _split(values: Optional[np.ndarray], outputs: np.ndarray, b: int) -> List[Optional[np.ndarray]]:
    """Rows sorted by output, as one array per output ``0..b-1``."""
    if values is None:
        return [None] * b
    # intp: bincount refuses int64 indices in a 32-bit process (armhf).
    return np.split(values, np.cumsum(np.bincount(outputs.astype(np.intp), minlength=b))[:-1])


def _mask_of(labs: List[Dict[str, Any]], plan: MixPlan, j: int) -> Optional[np.ndarray]:
    """Output ``j``'s semantic mask (None unless every record it shows has one)."""
    rows = [r for r, _, _ in plan.quadrants(j)] if plan.mosaic[j] else [j]
    rows += [int(plan.mix_partner[j])] * bool(plan.mixup[j]) + [int(plan.cut_partner[j])] * bool(plan.cutmix[j])
    if any(labs[r]["mask"] is None for r in rows):
        return None
    if plan.mosaic[j]:
        m = np.empty((plan.height, plan.width), np.uint8)
        for r, d, s in plan.quadrants(j):
            m[d[1] : d[3], d[0] : d[2]] = labs[r]["mask"][s[1] : s[3], s[0] : s[2]]
    else:
        m = np.array(labs[j]["mask"], np.uint8)
    if plan.mixup[j] and plan.lam[j] < 0.5:
        m = np.array(labs[int(plan.mix_partner[j])]["mask"], np.uint8)
    if plan.cutmix[j]:
        x0, y0, x1, y1 = (int(v) for v in plan.rect[j])
        m[y0:y1, x0:x1] = labs[int(plan.cut_partner[j])]["mask"][y0:y1, x0:x1]
    return m


def mix_labels(records: Sequence[Dict[str, Any]], plan: MixPlan, min_visibility: float = 0.1) -> List[Dict[str, Any]]:
    """Each output's labels: ``{"boxes", "keypoints", "mask", "instances"}`` (module doc for the rules).

    ``records[j]`` holds batch row ``j``'s labels (``Pack.record`` dicts do);
    ``min_visibility`` is the share of a box's area (in its source record)
    that must stay visible, 0.1 as Ultralytics' mosaic.  Outputs the plan
    leaves alone get copies of their record's labels.  Instance masks are
    kept when every record has them.  Boxes and keypoints of the whole batch
    go through numpy at once.
    """
    if len(records) != len(plan):
        raise ValueError(f"mix_labels: {len(records)} records for a plan of {len(plan)} outputs")
    if not 0.0 <= float(min_visibility) <= 1.0:
        raise ValueError(f"min_visibility {min_visibility} must be in [0, 1]")
    h, w, n = plan.height, plan.width, len(plan)
    labs = [_record_labels(r, i, h, w) for i, r in enumerate(records)]
    changed = np.flatnonzero(plan.mosaic | plan.mixup | plan.cutmix).tolist()
    pieces = _Pieces(plan, changed)
    nb = np.array([len(la["boxes"]) for la in labs], np.int64)
    idx, piece = pieces.gather(nb)
    b0 = np.concatenate([la["boxes"] for la in labs])
    boxes, visible = _place_boxes(
        b0[idx], pieces.dst[piece], pieces.shift[piece], pieces.rect[piece], pieces.occluded[piece]
    )
    keep = (visible > 0) & (visible >= min_visibility * np.maximum(_area(b0[idx]), 1e-12))
    inst = None
    if all(la["instances"] is not None for la in labs):
        inst = _place_instances(labs, pieces, piece, h, w)
        bounds, nonempty = _mask_bounds(inst)
        boxes[:, 1:3] = np.maximum(boxes[:, 1:3], bounds[:, :2])  # the box cut to its mask's remaining pixels
        boxes[:, 3:5] = np.minimum(boxes[:, 3:5], bounds[:, 2:])
        keep &= nonempty
        inst = inst[keep]
    kidx, kpiece = pieces.gather(np.array([len(la["keypoints"]) for la in labs], np.int64))
    kps = _place_keypoints(np.concatenate([la["keypoints"] for la in labs])[kidx], pieces, kpiece)
    out_boxes = _split(boxes[keep], pieces.output[piece][keep], n)
    out_inst = _split(inst, pieces.output[piece][keep], n)
    out_kps = _split(kps, pieces.output[kpiece], n)
    out = []
    for j, lab in enumerate(labs):
        if not (plan.mosaic[j] or plan.mixup[j] or plan.cutmix[j]):
            out.append(
                {k: None if lab[k] is None else np.array(lab[k]) for k in ("boxes", "keypoints", "mask", "instances")}
            )
            continue
        out.append(
            {"boxes": out_boxes[j], "keypoints": out_kps[j], "mask": _mask_of(labs, plan, j), "instances": out_inst[j]}
        )
    return out
