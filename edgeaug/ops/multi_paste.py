"""Multi-image ops that paste part of a partner over the record: ``cutmix`` and ``copy_paste``.

See :mod:`edgeaug.ops.multi` for the sample/apply contract.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Tuple

import numpy as np

from edgeaug.ops.base import register, scale, translate
from edgeaug.ops.instances_geom import (
    InstanceLabels,
    boxes_from_instances,
    concat,
    count,
    fit_matrix,
    hflip,
    occlude,
    place,
    visible,
    warp_into,
    warp_masks,
)
from edgeaug.ops.multi import MultiOp, blank, fitted, full, no_partner, soft_label

MAX_PASTE = 64  # instances of a partner that copy_paste can select (bits of params["select"])


@register
class CutMix(MultiOp):
    """Paste a rectangle of the partner (both fitted to the output) into the record.

    ``lam ~ Beta(alpha, alpha)`` sets the patch to ``sqrt(1 - lam)`` of each
    side around a uniform centre, clipped to the frame and rounded to whole
    pixels (CutMix / torchvision).  Classification: ``mix`` weights are the
    patch's actual area fraction.  Detection: partner boxes (instances) are
    clipped to the patch and kept when at least ``min_visibility`` of them is
    inside it; the record's lose what the patch covers (a box shrinks when the
    patch spans its height or width) and are dropped below ``min_visibility``.
    """

    name = "cutmix"
    RANGES = {"alpha": ((1.0, 1.0), (0.01, 1000.0))}

    def sample(self, rng, size, n_candidates: int = 0):
        a = self.uniform(rng, "alpha")
        return {
            "partners": self.draw_partners(rng, n_candidates),
            "lam": float(rng.beta(a, a)),
            "cx": float(rng.random()),
            "cy": float(rng.random()),
        }

    @staticmethod
    def patch(params: Dict[str, Any], out: Tuple[int, int]) -> Tuple[int, int, int, int]:
        """The pasted rectangle in whole output pixels (x0, y0, x1, y1)."""
        w, h = out
        f = math.sqrt(max(0.0, 1.0 - params["lam"]))
        cx, cy = params["cx"] * w, params["cy"] * h
        x0, x1 = (int(np.clip(round(v), 0, w)) for v in (cx - f * w / 2, cx + f * w / 2))
        y0, y1 = (int(np.clip(round(v), 0, h)) for v in (cy - f * h / 2, cy + f * h / 2))
        return x0, y0, x1, y1

    def apply(self, images, labels_list, params, out_size, fill=114, min_visibility=0.0, resize="squash"):
        if len(images) < 2:
            return no_partner(images, labels_list, out_size, fill, min_visibility, resize, "cutmix: no partner")
        own, partner = labels_list[0], labels_list[1]
        f0 = fit_matrix(images[0].shape[1::-1], out_size, resize)
        img, lab = fitted(images[0], own, f0, out_size, fill, min_visibility)
        rect = self.patch(params, out_size)
        x0, y0, x1, y1 = rect
        cover = np.zeros((out_size[1], out_size[0]), bool)
        cover[y0:y1, x0:x1] = True
        mp = fit_matrix(images[1].shape[1::-1], out_size, resize)
        pasted = place(partner, mp, rect, out_size, min_visibility)
        warp_into(img, images[1], mp, rect, fill, linear=True)
        res = concat([occlude(lab, cover, min_visibility), pasted], own.label)
        res.mask = _composite(lab.mask, pasted.mask, cover)
        area = (x1 - x0) * (y1 - y0) / float(out_size[0] * out_size[1])
        res.mix = soft_label([(own.label, 1.0 - area), (partner.label, area)])
        return img, res


def _composite(own: np.ndarray, other: np.ndarray, cover: np.ndarray):
    """Semantic masks: the other's classes where it was pasted, when both have masks."""
    if own is None or other is None:
        return own
    return np.where(cover, other, own)


@register
class CopyPaste(MultiOp):
    """Simple Copy-Paste (Ghiasi et al.): paste a partner's instances with their masks.

    The partner is fitted to the output, then (``mode = "flip"``, Ultralytics'
    default) mirrored with probability 1/2, or (``mode = "lsj"``) scaled by
    ``scale`` and cropped or padded at a drawn offset (large-scale jitter).
    Each of the partner's first 64 instances is selected with probability
    ``fraction`` (``params["select"]``: 16 hex digits, bit i for instance i).
    Selected instances keep their masks (a later one covers an earlier one),
    and those left with less than ``min_visibility`` of their area are not
    pasted.  The record's instances lose the pasted pixels, their boxes follow
    their masks, and those keeping less than ``min_visibility`` are dropped
    (the paper's rule).  Without instances in the partner nothing happens and
    ``note`` says so.  Keypoints under pasted pixels become occluded (v=1).
    """

    name = "copy_paste"
    RANGES = {"scale": ((0.1, 2.0), (0.01, 10.0)), "fraction": ((0.5, 0.5), (0.01, 1.0))}
    OPTIONS = {"mode": (str, "flip")}

    @classmethod
    def check(cls, ranges, options):
        if options.get("mode") not in ("flip", "lsj"):
            return "mode", f"expected 'flip' or 'lsj', got {options.get('mode')!r}"
        return super().check(ranges, options)

    def sample(self, rng, size, n_candidates: int = 0):
        bits = rng.random(MAX_PASTE) < self.uniform(rng, "fraction")
        lsj = self.options["mode"] == "lsj"
        return {
            "partners": self.draw_partners(rng, n_candidates),
            "flip": bool(rng.random() < 0.5) if not lsj else False,
            "scale": self.uniform(rng, "scale") if lsj else 1.0,
            "ox": float(rng.random()) if lsj else 0.0,
            "oy": float(rng.random()) if lsj else 0.0,
            "select": f"{int(np.packbits(bits, bitorder='little').view('<u8')[0]):016x}",
        }

    @staticmethod
    def partner_matrix(params: Dict[str, Any], src: Tuple[int, int], out: Tuple[int, int], resize: str) -> np.ndarray:
        m = fit_matrix(src, out, resize)
        if params["flip"]:
            m = hflip(out[0]) @ m
        s = params["scale"]
        return translate(params["ox"] * (1 - s) * out[0], params["oy"] * (1 - s) * out[1]) @ scale(s, s) @ m

    def apply(self, images, labels_list, params, out_size, fill=114, min_visibility=0.0, resize="squash"):
        if len(images) < 2:
            return no_partner(images, labels_list, out_size, fill, min_visibility, resize, "copy_paste: no partner")
        partner = labels_list[1]
        if partner.instances is None or not len(partner.boxes):
            why = "copy_paste: the partner has no instance masks"
            return no_partner(images, labels_list, out_size, fill, min_visibility, resize, why)
        own = labels_list[0]
        f0 = fit_matrix(images[0].shape[1::-1], out_size, resize)
        img, lab = fitted(images[0], own, f0, out_size, fill, min_visibility)
        mp = self.partner_matrix(params, images[1].shape[1::-1], out_size, resize)
        pasted = _pasted(partner, _selected_index(len(partner.boxes), params["select"]), mp, out_size, min_visibility)
        cover = pasted.instances.any(0)
        if not cover.any():
            lab.note = "copy_paste: no selected instance of the partner is visible"
            return img, lab
        other = blank(images, out_size, fill)
        warp_into(other, images[1], mp, full(out_size), fill, linear=True)
        img = np.where(cover[..., None] if img.ndim == 3 else cover, other, img)
        res = concat([occlude(lab, cover, min_visibility), pasted], own.label)
        if lab.mask is not None and partner.mask is not None:
            theirs = np.zeros_like(lab.mask)
            warp_into(theirs, partner.mask, mp, full(out_size), 0, linear=False)
            res.mask = _composite(lab.mask, theirs, cover)
        return img, res


def _selected_index(n: int, select: str) -> np.ndarray:
    """Indices of the partner's instances whose bit is set in ``select`` (hex, bit i = instance i)."""
    bits = int(select, 16)
    return np.array([i for i in range(min(n, MAX_PASTE)) if bits >> i & 1], np.intp)


def _pasted(partner: InstanceLabels, idx: np.ndarray, m: np.ndarray, out: Tuple[int, int], min_vis: float):
    """The selected instances warped into the output, made disjoint (a later one covers an earlier
    one), and kept when at least ``min_vis`` of their warped area stays visible."""
    warped = warp_masks(partner.instances[idx], m, full(out), out)
    above = np.zeros(warped.shape[1:], bool)
    for k in range(len(warped) - 1, -1, -1):
        warped[k] &= ~above
        above |= warped[k]
    before = count(partner.instances[idx]) * abs(float(m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]))
    kept = visible(count(warped), before, min_vis)
    return InstanceLabels(boxes_from_instances(partner.boxes[idx][kept, 0], warped[kept]), instances=warped[kept])
