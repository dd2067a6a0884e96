"""Multi-image ops: ``mosaic``, ``mixup`` and ``scale_jitter`` (``cutmix``, ``copy_paste``: :mod:`.multi_paste`).

A multi-image op (``multi = True``) combines the record's source with
``partners`` other sources of the same split and renders the output frame
itself.  Like every op it is two pure functions:

* ``sample(rng, size, n_candidates) -> params`` draws everything, including
  the partners as indices into the candidate list the builder passes
  (``params["partners"]``; drawn with replacement, empty when there is no
  candidate).  Geometry is stored as fractions of the output size, so params do
  not depend on the target;
* ``apply(images, labels_list, params, out_size, fill, min_visibility, resize)
  -> (image, InstanceLabels)`` takes the record's image and its partners' (in
  ``params["partners"]`` order) with their labels in each image's own pixels,
  and touches no RNG.  ``resize`` is the recipe's fit of a source to the
  output (``squash``, ``letterbox``, ``center_crop``).

Every image is resampled once, straight from its source
(:func:`edgeaug.ops.instances_geom.place`).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgeaug.ops.base import Op, register, scale, translate
from edgeaug.ops.instances_geom import (
    InstanceLabels,
    apply_rect,
    concat,
    fit_matrix,
    pixel_rect,
    place,
    warp_into,
)
from edgeaug.ops.mosaic_fit import best_window

Size = Tuple[int, int]


class MultiOp(Op):
    """Base of the multi-image ops: partner drawing and the no-partner fallback."""

    multi = True
    partners = 1

    def draw_partners(self, rng: np.random.Generator, n_candidates: int) -> List[int]:
        """``self.partners`` indices into the candidates, with replacement; [] without candidates."""
        if n_candidates <= 0 or self.partners == 0:
            return []
        return [int(i) for i in rng.integers(0, n_candidates, self.partners)]

    def apply(  # type: ignore[override]
        self,
        images: Sequence[np.ndarray],
        labels_list: Sequence[InstanceLabels],
        params: Dict[str, Any],
        out_size: Size,
        fill: int = 114,
        min_visibility: float = 0.0,
        resize: str = "squash",
    ) -> Tuple[np.ndarray, InstanceLabels]:
        raise NotImplementedError


def blank(images: Sequence[np.ndarray], out: Size, fill: int) -> np.ndarray:
    """An output frame of ``fill`` with the images' channel count."""
    ch = images[0].shape[2:] if images[0].ndim == 3 else ()
    return np.full((out[1], out[0], *ch), fill, images[0].dtype)


def full(out: Size) -> Tuple[int, int, int, int]:
    return (0, 0, out[0], out[1])


def fitted(
    image: np.ndarray, lab: InstanceLabels, m: np.ndarray, out: Size, fill: int, min_vis: float
) -> Tuple[np.ndarray, InstanceLabels]:
    """One image through ``m`` onto a whole output frame."""
    img = blank([image], out, fill)
    warp_into(img, image, m, full(out), fill, linear=True)
    return img, place(lab, m, full(out), out, min_vis)


def no_partner(images, labels_list, out, fill, min_vis, resize, why: str) -> Tuple[np.ndarray, InstanceLabels]:
    """The record alone, fitted to the output; ``note`` says why."""
    m = fit_matrix(images[0].shape[1::-1], out, resize)
    img, lab = fitted(images[0], labels_list[0], m, out, fill, min_vis)
    lab.note = why
    return img, lab


def soft_label(pairs: Sequence[Tuple[int, float]]) -> Optional[List[Tuple[int, float]]]:
    """``[(class, weight), ...]`` summing to 1, one entry per class in first-seen order; None without classes."""
    if any(c < 0 for c, _ in pairs):
        return None
    out: Dict[int, float] = {}
    for c, w in pairs:
        out[int(c)] = out.get(int(c), 0.0) + float(w)
    total = sum(out.values())
    return [(c, w / total) for c, w in out.items() if w > 0] if total > 0 else None


@register
class Mosaic(MultiOp):
    """Ultralytics' mosaic: a grid of the record and partners on a larger canvas, then one affine back.

    ``grid = 2``: a 2W x 2H canvas of ``fill``; each image is scaled to fit
    W x H and put in its quadrant against a centre drawn uniformly in
    [0.5, 1.5] x (W, H) (the record top-left, then top-right, bottom-left,
    bottom-right).  ``grid = 3``: a 3W x 3H canvas of W x H cells, each image
    centred in its cell, the record in the middle; the affine's centre is drawn
    in the middle cell.  The affine scales about that centre by ``scale`` and
    moves it to the output centre plus ``translate`` x (W, H).  Each tile is
    warped once, straight from its source, into the output pixels of its
    quadrant.  Missing partners leave their tiles ``fill``.  ``windows =
    "boxes"`` (grid 2) slides each tile inside its quadrant so the output shows
    the window of its image that cuts the fewest boxes
    (:mod:`edgeaug.ops.mosaic_fit`); ``"corner"`` (default) is Ultralytics'.
    """

    name = "mosaic"
    RANGES = {"scale": ((0.5, 1.5), (0.05, 10.0)), "translate": ((-0.1, 0.1), (-1.0, 1.0))}
    OPTIONS = {"grid": (int, 2), "windows": (str, "corner")}

    def __init__(self, p: float = 1.0, **kw: Any) -> None:
        super().__init__(p, **kw)
        self.partners = int(self.options["grid"]) ** 2 - 1

    @classmethod
    def check(cls, ranges, options):
        if options.get("grid") not in (2, 3):
            return "grid", f"expected 2 or 3, got {options.get('grid')!r}"
        if options.get("windows") not in ("corner", "boxes"):
            return "windows", f"expected 'corner' or 'boxes', got {options.get('windows')!r}"
        if options["windows"] == "boxes" and options["grid"] != 2:
            return "windows", "'boxes' needs grid = 2"
        return super().check(ranges, options)

    def sample(self, rng, size, n_candidates: int = 0):
        lo = 0.5 if self.options["grid"] == 2 else 1.0
        return {
            "partners": self.draw_partners(rng, n_candidates),
            "cx": float(lo + rng.random()),
            "cy": float(lo + rng.random()),
            "scale": self.uniform(rng, "scale"),
            "tx": self.uniform(rng, "translate"),
            "ty": self.uniform(rng, "translate"),
        }

    def final(self, params: Dict[str, Any], out: Size) -> np.ndarray:
        """Canvas to output: scale about the canvas centre (grid 2) or the drawn centre (grid 3)."""
        w, h = out
        if self.options["grid"] == 2:
            c = (w, h)
        else:
            c = (params["cx"] * w, params["cy"] * h)
        s = params["scale"]
        return translate(w / 2 + params["tx"] * w, h / 2 + params["ty"] * h) @ scale(s, s) @ translate(-c[0], -c[1])

    @staticmethod
    def tile(layout, shift=(0.0, 0.0)):
        """A tile's source-to-canvas matrix and canvas region (x0, y0, x1, y1): its :meth:`_layout`, slid."""
        r, tw, th, ox, oy, quad = layout
        ox, oy = ox + shift[0], oy + shift[1]
        placed = (ox, oy, ox + tw, oy + th)
        region = (max(quad[0], placed[0]), max(quad[1], placed[1]), min(quad[2], placed[2]), min(quad[3], placed[3]))
        return translate(ox, oy) @ scale(r, r), region

    def _layout(self, i: int, size: Tuple[int, int], params: Dict[str, Any], out: Size):
        """Tile ``i``'s fit scale ``r``, size ``tw, th``, Ultralytics' corner ``ox, oy`` and its quadrant."""
        w, h = out
        r = min(w / size[0], h / size[1])
        tw, th = size[0] * r, size[1] * r
        if self.options["grid"] == 2:
            xc, yc = params["cx"] * w, params["cy"] * h
            right, below = i in (1, 3), i in (2, 3)
            ox, oy = (xc if right else xc - tw), (yc if below else yc - th)
            quad = (xc if right else 0, yc if below else 0, 2 * w if right else xc, 2 * h if below else yc)
        else:
            cell = 4 if i == 0 else (i - 1 if i <= 4 else i)  # the record in the middle, partners row by row
            cx, cy = cell % 3 * w, cell // 3 * h
            ox, oy = cx + (w - tw) / 2, cy + (h - th) / 2
            quad = (cx, cy, cx + w, cy + h)
        return r, tw, th, ox, oy, quad

    def _shift(self, layout, lab: InstanceLabels, view) -> Tuple[float, float]:
        """How far ``windows = "boxes"`` slides a tile (its :meth:`_layout`) from Ultralytics' corner, else 0, 0."""
        if self.options["windows"] != "boxes" or not len(lab.boxes):
            return 0.0, 0.0
        r, tw, th, ox, oy, quad = layout
        v = (max(quad[0], view[0]), max(quad[1], view[1]), min(quad[2], view[2]), min(quad[3], view[3]))
        if v[2] <= v[0] or v[3] <= v[1]:  # the output shows none of this quadrant
            return 0.0, 0.0
        default = (v[0] - ox, v[1] - oy)  # where the view starts in the tile at Ultralytics' corner
        boxes = np.asarray(lab.boxes, np.float64)[:, 1:] * r
        sx, sy = best_window(boxes, (tw, th), (v[2] - v[0], v[3] - v[1]), default)
        return default[0] - sx, default[1] - sy

    def apply(self, images, labels_list, params, out_size, fill=114, min_visibility=0.0, resize="squash"):
        out = blank(images, out_size, fill)
        m, parts = self.final(params, out_size), []
        inv = np.linalg.inv(m)  # scale and translate: the output frame is an upright rectangle of the canvas
        view = (*(inv @ [0.0, 0.0, 1.0])[:2], *(inv @ [out_size[0], out_size[1], 1.0])[:2])
        for i, (img, lab) in enumerate(zip(images[: self.partners + 1], labels_list)):
            layout = self._layout(i, img.shape[1::-1], params, out_size)
            p, region = self.tile(layout, self._shift(layout, lab, view))
            a = m @ p
            rect = pixel_rect(apply_rect(m, region), out_size)
            warp_into(out, img, a, rect, fill, linear=True)
            parts.append(place(lab, a, rect, out_size, min_visibility))
        res = concat(parts, labels_list[0].label)
        if len(images) < self.partners + 1:
            res.note = f"mosaic: {self.partners + 1 - len(images)} tiles without a partner"
        return out, res


@register
class MixUp(MultiOp):
    """Blend the record with a partner: ``lam * record + (1 - lam) * partner``, ``lam ~ Beta(alpha, alpha)``.

    ``alpha`` is one number (Ultralytics' 32) or a range.  Both images are
    fitted to the output by the recipe's resize.  Boxes, instances and
    keypoints of both are kept; the semantic mask is the dominant image's;
    classification gets ``mix = [(class, lam), (partner class, 1 - lam)]``.
    """

    name = "mixup"
    RANGES = {"alpha": ((32.0, 32.0), (0.01, 1000.0))}  # a range draws alpha per record first

    def sample(self, rng, size, n_candidates: int = 0):
        a = self.uniform(rng, "alpha")
        return {"partners": self.draw_partners(rng, n_candidates), "lam": float(rng.beta(a, a))}

    def apply(self, images, labels_list, params, out_size, fill=114, min_visibility=0.0, resize="squash"):
        if len(images) < 2:
            return no_partner(images, labels_list, out_size, fill, min_visibility, resize, "mixup: no partner")
        lam = float(params["lam"])
        pieces = [
            fitted(img, lab, fit_matrix(img.shape[1::-1], out_size, resize), out_size, fill, min_visibility)
            for img, lab in zip(images[:2], labels_list[:2])
        ]
        (a, la), (b, lb) = pieces
        img = np.clip(np.rint(a * lam + b.astype(np.float64) * (1 - lam)), 0, 255).astype(images[0].dtype)
        res = concat([la, lb], labels_list[0].label)
        res.mask = la.mask if lam >= 0.5 else lb.mask
        res.mix = soft_label([(labels_list[0].label, lam), (labels_list[1].label, 1 - lam)])
        return img, res


@register
class ScaleJitter(MultiOp):
    """Large-scale jitter: fit to the output, scale by ``scale``, then crop or pad back to the output.

    ``ox, oy`` in [0, 1] place the scaled frame: the crop window (scale > 1)
    or the padding (scale < 1) splits in that proportion.  No partners.
    """

    name = "scale_jitter"
    partners = 0
    RANGES = {"scale": ((0.1, 2.0), (0.01, 10.0))}

    def sample(self, rng, size, n_candidates: int = 0):
        return {"scale": self.uniform(rng, "scale"), "ox": float(rng.random()), "oy": float(rng.random())}

    @staticmethod
    def jitter(params: Dict[str, Any], out: Size) -> np.ndarray:
        s = params["scale"]
        return translate(params["ox"] * (1 - s) * out[0], params["oy"] * (1 - s) * out[1]) @ scale(s, s)

    def apply(self, images, labels_list, params, out_size, fill=114, min_visibility=0.0, resize="squash"):
        m = self.jitter(params, out_size) @ fit_matrix(images[0].shape[1::-1], out_size, resize)
        return fitted(images[0], labels_list[0], m, out_size, fill, min_visibility)
