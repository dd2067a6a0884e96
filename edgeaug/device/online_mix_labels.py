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


def _keep(layer: Dict[str, Any], area: np.ndarray, min_visibility: float) -> Dict[str, Any]:
    """Drop boxes (and their instances) below ``min_visibility`` of their source area, or emptied."""
    keep = (area > 0) & (area >= min_visibility * np.maximum(layer["area0"], 1e-12))
    inst = layer["instances"]
    if inst is not None and len(inst):
        bounds, nonempty = _mask_bounds(inst)
        b = layer["boxes"]
        b[:, 1:3] = np.maximum(b[:, 1:3], bounds[:, :2])  # the box cut to its mask's remaining pixels
        b[:, 3:5] = np.minimum(b[:, 3:5], bounds[:, 2:])
        keep &= nonempty
    out = dict(layer, boxes=layer["boxes"][keep], area0=layer["area0"][keep])
    if inst is not None:
        out["instances"] = inst[keep]
    return out


def _place(lab: Dict[str, Any], dst: _Rect, src: _Rect, h: int, w: int, min_visibility: float) -> Dict[str, Any]:
    """The labels of window ``src`` of a record, moved to ``dst`` (same size) and clipped to it."""
    dx, dy = dst[0] - src[0], dst[1] - src[1]
    b = lab["boxes"].copy()
    b[:, [1, 3]] = np.clip(b[:, [1, 3]] + dx, dst[0], dst[2])
    b[:, [2, 4]] = np.clip(b[:, [2, 4]] + dy, dst[1], dst[3])
    k = lab["keypoints"].copy()
    k[:, 0] += dx
    k[:, 1] += dy
    inside = (k[:, 0] >= dst[0]) & (k[:, 0] < dst[2]) & (k[:, 1] >= dst[1]) & (k[:, 1] < dst[3]) & (k[:, 2] > 0)
    k[~inside] = 0
    inst = None
    if lab["instances"] is not None:
        inst = np.zeros((len(b), h, w), bool)
        inst[:, dst[1] : dst[3], dst[0] : dst[2]] = lab["instances"][:, src[1] : src[3], src[0] : src[2]]
    layer = {"boxes": b, "area0": lab["area0"], "keypoints": k, "instances": inst}
    return _keep(layer, (b[:, 3] - b[:, 1]).astype(np.float64) * (b[:, 4] - b[:, 2]), min_visibility)


def _span_cut(lo: np.ndarray, hi: np.ndarray, r0: int, r1: int) -> Tuple[np.ndarray, np.ndarray]:
    """An interval ``[lo, hi)`` minus ``[r0, r1)`` when that leaves one piece (else unchanged)."""
    covers_lo, covers_hi = (r0 <= lo) & (r1 > lo), (r0 < hi) & (r1 >= hi)
    new_lo = np.where(covers_lo & ~covers_hi, np.float32(r1), lo)
    new_hi = np.where(covers_hi & ~covers_lo, np.float32(r0), hi)
    return new_lo, new_hi


def _occlude(layer: Dict[str, Any], rect: _Rect, min_visibility: float) -> Dict[str, Any]:
    """The labels of the objects a cutmix patch ``rect`` is pasted over."""
    x0, y0, x1, y1 = rect
    b = layer["boxes"].copy()
    area = (b[:, 3] - b[:, 1]).astype(np.float64) * (b[:, 4] - b[:, 2])
    iw = np.clip(np.minimum(b[:, 3], x1) - np.maximum(b[:, 1], x0), 0, None)
    ih = np.clip(np.minimum(b[:, 4], y1) - np.maximum(b[:, 2], y0), 0, None)
    visible = area - iw.astype(np.float64) * ih
    across_x = (x0 <= b[:, 1]) & (x1 >= b[:, 3])  # the patch spans the box's width: its height shrinks
    across_y = (y0 <= b[:, 2]) & (y1 >= b[:, 4])
    ny0, ny1 = _span_cut(b[:, 2], b[:, 4], y0, y1)
    nx0, nx1 = _span_cut(b[:, 1], b[:, 3], x0, x1)
    b[:, 2], b[:, 4] = np.where(across_x, ny0, b[:, 2]), np.where(across_x, ny1, b[:, 4])
    b[:, 1], b[:, 3] = np.where(across_y, nx0, b[:, 1]), np.where(across_y, nx1, b[:, 3])
    k = layer["keypoints"].copy()
    under = (k[:, 0] >= x0) & (k[:, 0] < x1) & (k[:, 1] >= y0) & (k[:, 1] < y1)
    k[under] = 0
    inst = layer["instances"]
    if inst is not None:
        inst = inst.copy()
        inst[:, y0:y1, x0:x1] = False
    return _keep(dict(layer, boxes=b, keypoints=k, instances=inst), visible, min_visibility)


def _concat(layers: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    inst = [la["instances"] for la in layers]
    return {
        "boxes": np.concatenate([la["boxes"] for la in layers]),
        "area0": np.concatenate([la["area0"] for la in layers]),
        "keypoints": np.concatenate([la["keypoints"] for la in layers]),
        "instances": None if any(i is None for i in inst) else np.concatenate(inst),
    }


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
    leaves alone get copies of their record's labels.
    """
    if len(records) != len(plan):
        raise ValueError(f"mix_labels: {len(records)} records for a plan of {len(plan)} outputs")
    if not 0.0 <= float(min_visibility) <= 1.0:
        raise ValueError(f"min_visibility {min_visibility} must be in [0, 1]")
    h, w = plan.height, plan.width
    labs = [_record_labels(r, i, h, w) for i, r in enumerate(records)]
    full = (0, 0, w, h)
    out = []
    for j, lab in enumerate(labs):
        if plan.mosaic[j]:
            layer = _concat([_place(labs[r], d, s, h, w, min_visibility) for r, d, s in plan.quadrants(j)])
        elif plan.mixup[j] or plan.cutmix[j]:
            layer = _place(lab, full, full, h, w, min_visibility)
        else:
            layer = {k: None if v is None else np.array(v) for k, v in lab.items()}
        if plan.mixup[j]:
            layer = _concat([layer, _place(labs[int(plan.mix_partner[j])], full, full, h, w, min_visibility)])
        if plan.cutmix[j]:
            rect = tuple(int(v) for v in plan.rect[j])
            patch = _place(labs[int(plan.cut_partner[j])], rect, rect, h, w, min_visibility)
            layer = _concat([_occlude(layer, rect, min_visibility), patch])
        out.append(
            {
                "boxes": layer["boxes"],
                "keypoints": layer["keypoints"],
                "mask": _mask_of(labs, plan, j),
                "instances": layer["instances"],
            }
        )
    return out
