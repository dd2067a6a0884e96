"""The augmentation pipeline: sample a record's parameters, then render it.

Rendering composes every geometric op and the final resize into one 3x3
matrix and resamples once, from the (optionally pre-shrunk) source straight
to the target size.  Field ops (elastic, grid and lens distortion, chromatic
aberration: :mod:`edgeaug.ops.distort`) join the chain, which is then
resampled once with ``cv2.remap`` (:mod:`.remap`); records without them keep
the matrix warp.  Photometric ops then run in recipe order on the small
output image; runs of tone-curve ops fuse into one lookup table.

A multi-image op (``mosaic``, ``mixup``, ``cutmix``, ``copy_paste``,
``scale_jitter``) may only be the recipe's first op (the recipe refuses it
anywhere else).  When it fires it renders the output frame itself from the
record's source and its partners (each resampled once); the rest of the
recipe then runs on that target-size frame as on any source: its geometric
ops compose into one extra warp (an identity or a flip is an exact copy),
then the photometric ops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from edgeaug.builder import remap
from edgeaug.builder.instances import remap_instances, warp_instances
from edgeaug.config.recipe import Recipe
from edgeaug.config.targets import Target, quantization_lut, quantize
from edgeaug.ops import boxgeom
from edgeaug.ops.base import scale, translate
from edgeaug.ops.photometric import ToneOp


@dataclass
class Labels:
    """Labels in a frame's continuous pixel coordinates.

    ``boxes`` (n, 5) float32 ``[class, x0, y0, x1, y1]``; ``keypoints`` (n, 3)
    float32 ``[x, y, visible]``; ``mask`` (h, w) uint8 class ids, or None.
    ``flip`` (n,) int: after a mirror, keypoint ``i`` is the old keypoint
    ``flip[i]`` (left/right pairs swap names); None when there are no pairs.
    ``instances`` (n, h, w) bool: row ``k`` is the mask of box ``k`` (None: a
    dataset without instance masks); each box is then its mask's bounding box.
    ``mix`` ``[(class, weight), ...]``: the soft label a multi-image op gave.
    """

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 5), np.float32))
    keypoints: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    mask: Optional[np.ndarray] = None
    flip: Optional[np.ndarray] = None
    instances: Optional[np.ndarray] = None
    mix: Optional[List[Tuple[int, float]]] = None


def record_rng(seed: int, source_key: Tuple[int, ...], variant: int) -> np.random.Generator:
    """The generator of one record: (build seed, source identity, variant index)."""
    ss = np.random.SeedSequence(seed, spawn_key=(*source_key, variant))
    return np.random.Generator(np.random.PCG64(ss))


class Augmenter:
    """Turns one decoded source into target tensors, deterministically."""

    def __init__(self, recipe: Recipe, target: Target) -> None:
        self.recipe, self.target = recipe, target
        self.ops = [spec.build() for spec in recipe.ops]
        self.lut = quantization_lut(target)
        ident = np.arange(256)[:, None]
        self._identity_lut = self.lut.dtype == np.uint8 and bool((self.lut == ident).all())

    @property
    def multi(self) -> Any:
        """The recipe's multi-image stage: its first op when that is a multi-image op or a ``one_of`` of
        them (the recipe allows no other place), else None."""
        first = self.ops[0] if self.ops else None
        if first is not None and (getattr(first, "multi", False) or _one_of_multi(first)):
            return first
        return None

    def sample(
        self, rng: np.random.Generator, src_size: Tuple[int, int], n_candidates: int = 0, plain: bool = False
    ) -> List[Dict[str, Any]]:
        """Draw every op's parameters; the frame size follows the geometry.

        One entry per recipe op: ``{"op", "on", **params}``; a composite's
        entry holds its children's entries under ``"ops"``.  A multi-image op
        draws its partners as indices among ``n_candidates``; in a ``plain``
        variant (the recipe's ``plain_variants``) the multi-image stage is off
        and draws nothing.  After it fires, the frame is the target size.
        """
        out, size = [], (float(src_size[0]), float(src_size[1]))
        for i, op in enumerate(self.ops):
            if i == 0 and self.multi is not None:
                entry = self._sample_multi(op, rng, size, n_candidates, plain)
                out.append(entry)
                if self.fires_multi(out):
                    size = (float(self.target.width), float(self.target.height))
                continue
            entry, size = _sample_op(op, rng, size, forced=False)
            out.append(entry)
        return out

    @staticmethod
    def _sample_multi(op: Any, rng: np.random.Generator, size, n: int, plain: bool) -> Dict[str, Any]:
        if plain or not rng.random() < op.p:
            return {"op": op.name, "on": False}
        if not op.composite:
            return {"op": op.name, "on": True, **op.sample(rng, size, n)}
        chosen, kids = set(op.choose(rng)), []
        for j, child in enumerate(op.children):
            kids.append(
                {"op": child.name, "on": True, **child.sample(rng, size, n)}
                if j in chosen
                else {"op": child.name, "on": False}
            )
        return {"op": op.name, "on": True, "ops": kids}

    def fires_multi(self, params: List[Dict[str, Any]]) -> Optional[Tuple[Any, Dict[str, Any]]]:
        """The multi-image op that fires in a record's params and its entry, or None."""
        if self.multi is None or not params or not params[0]["on"]:
            return None
        fired = list(leaves([self.multi], params[:1]))
        return fired[0] if fired else None

    def render_multi(
        self, images: List[np.ndarray], labels_list: List[Labels], labels_of: List[int], params: List[Dict[str, Any]]
    ) -> Tuple[np.ndarray, Labels]:
        """A record whose multi-image op fires: the op renders the target frame from the record's
        source and partners (RGB, labels in their pixels; ``labels_of``: their class labels), then
        the rest of the recipe runs on it."""
        from edgeaug.ops.instances_geom import InstanceLabels

        op, entry = self.fires_multi(params)
        r, size = self.recipe, (self.target.width, self.target.height)
        inst = [
            InstanceLabels(lab.boxes, lab.keypoints, lab.mask, lab.flip, lab.instances, c)
            for lab, c in zip(labels_list, labels_of)
        ]
        img, res = op.apply(images, inst, entry, size, r.fill, r.min_visibility, r.resize)
        lab = Labels(res.boxes, res.keypoints, res.mask, res.flip, res.instances, res.mix)
        return self.render(img, lab, params, size, start=1)

    def geometry(self, params: List[Dict[str, Any]], src_size: Tuple[int, int], start: int = 0) -> np.ndarray:
        """The one source-to-output matrix, continuous coordinates (ops from ``start`` on)."""
        m, size = np.eye(3), (float(src_size[0]), float(src_size[1]))
        for op, p in leaves(self.ops[start:], params[start:]):
            if op.geometric:
                step, size = op.matrix(p, size)
                m = step @ m
        return self._fit(size) @ m

    def stages(self, params: List[Dict[str, Any]], src_size: Tuple[int, int]) -> list:
        """The geometry as a chain: matrices, and the field ops that fired between them (:mod:`.remap`).

        One matrix (equal to :meth:`geometry`'s) when no field op moves anything.
        """
        out: list = []
        m, size = np.eye(3), (float(src_size[0]), float(src_size[1]))
        for op, p in leaves(self.ops, params):
            if not op.geometric:
                continue
            if getattr(op, "field", False) and not op.is_identity(p):
                out += [m, (op, p, size)]
                m = np.eye(3)
            step, size = op.matrix(p, size)
            m = step @ m
        return out + [self._fit(size) @ m]

    def _fit(self, size: Tuple[float, float]) -> np.ndarray:
        tw, th = self.target.width, self.target.height
        w, h = size
        if self.recipe.resize == "squash":
            return scale(tw / w, th / h)
        s = (min if self.recipe.resize == "letterbox" else max)(tw / w, th / h)
        return translate((tw - w * s) / 2, (th - h * s) / 2) @ scale(s, s)

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """The RGBA copy of an RGB source that its variants are warped from.

        OpenCV's 4-channel warps are bit-identical per channel and ~40% faster;
        converting once per source pays for itself from the first variant.
        """
        import cv2

        return image if image.shape[2] == 4 else cv2.cvtColor(image, cv2.COLOR_RGB2RGBA)

    def render(
        self, image: np.ndarray, labels: Labels, params: List[Dict[str, Any]], src_size: Tuple[int, int], start=0
    ) -> Tuple[np.ndarray, Labels]:
        """Apply sampled ``params`` (of the ops from ``start`` on): one warp, then photometric ops. No RNG.

        ``image`` is RGB, or RGBA from :meth:`prepare` (the same bytes, faster).
        """
        import cv2

        m = self.geometry(params, src_size, start)
        # The inverse of the pre-shrink scale, written out: the same numbers as np.linalg.inv's, whose
        # LAPACK call wakes OpenBLAS's threads, which then spin for a while on every record.
        unshrink = scale(1 / (image.shape[1] / src_size[0]), 1 / (image.shape[0] / src_size[1]))
        chain = self.stages(params, src_size)
        if len(chain) == 1:
            out = self._warp(self.prepare(image), m @ unshrink, linear=True)
            labels = self._warp_labels(labels, m)
        else:  # field ops: one remap through the whole chain
            pre = scale(image.shape[1] / src_size[0], image.shape[0] / src_size[1])
            out = remap.remap(self.prepare(image), chain, pre, self.target.size, self._border(True))
            labels = self._warp_labels(labels, m, chain)
        out = out if out.shape[2] == 3 else cv2.cvtColor(out, cv2.COLOR_RGBA2RGB)
        tones: List[Tuple[Any, Dict[str, Any]]] = []
        for op, p in leaves(self.ops[start:], params[start:]):
            if op.geometric and not getattr(op, "pixels", False):
                continue
            if isinstance(op, ToneOp):
                tones.append((op, p))
                continue
            out = _apply_tones(out, tones)
            tones = []
            out, labels = op.apply(out, labels, p)
        return _apply_tones(out, tones), labels

    def _warp(self, img: np.ndarray, m: np.ndarray, linear: bool) -> np.ndarray:
        import cv2

        size = (self.target.width, self.target.height)
        pix = translate(-0.5, -0.5) @ m @ translate(0.5, 0.5)  # to pixel-centre convention
        if img.shape[1::-1] == size and np.abs(pix - np.eye(3)).max() <= 1e-12:
            return img.copy()
        out = _as_resize(img, m, size, linear)
        if out is not None:
            return out
        kw = self._border(linear)
        kw["flags"] = kw.pop("interpolation")
        if np.abs(pix[2] - (0, 0, 1)).max() <= 1e-12:  # affine: the cheaper warp
            out = cv2.warpAffine(img, pix[:2], size, **kw)
        else:
            out = cv2.warpPerspective(img, pix, size, **kw)
        return out.reshape(size[1], size[0], *img.shape[2:])

    def _border(self, linear: bool) -> Dict[str, Any]:
        """Interpolation and border of the one warp (image: linear; masks: nearest, background 0)."""
        import cv2

        reflect = self.recipe.border == "reflect" and self.recipe.resize != "letterbox"
        return dict(
            interpolation=cv2.INTER_LINEAR if linear else cv2.INTER_NEAREST,
            borderMode=cv2.BORDER_REFLECT_101 if reflect else cv2.BORDER_CONSTANT,
            borderValue=(self.recipe.fill,) * 4 if linear else (0,) * 4,
        )

    def _warp_labels(self, labels: Labels, m: np.ndarray, chain: Optional[list] = None) -> Labels:
        """Labels through the matrix ``m``, or through a chain with fields (:mod:`.remap`)."""
        tw, th = self.target.width, self.target.height
        fwd = None if chain is None else remap.forward(chain)
        if labels.mask is None:
            mask = None
        elif chain is None:
            mask = self._warp(labels.mask, m, linear=False)
        else:
            mask = remap.remap(labels.mask, chain, np.eye(3), self.target.size, self._border(False))
        kp = labels.keypoints.copy()
        if len(kp) and labels.flip is not None and mirrors(m):
            kp = kp[labels.flip]  # a mirrored left eye is the right eye
        if len(kp):
            kp[:, :2] = boxgeom.transform_points(m, kp[:, :2]) if fwd is None else fwd(kp[:, :2])
            inside = (kp[:, 0] >= 0) & (kp[:, 0] < tw) & (kp[:, 1] >= 0) & (kp[:, 1] < th)
            kp[:, 2] = np.where(inside, kp[:, 2], 0)
        vis = self.recipe.min_visibility
        if labels.instances is not None:
            if chain is None:
                boxes, inst = warp_instances(labels.boxes, labels.instances, m, (tw, th), vis)
            else:
                boxes, inst = remap_instances(labels.boxes, labels.instances, chain, m, self.target.size, vis)
            return Labels(boxes, kp, mask, None, inst, labels.mix)
        return Labels(_warp_boxes(labels.boxes, m, tw, th, vis, fwd), kp, mask, None, None, labels.mix)

    def tensor(self, image: np.ndarray) -> np.ndarray:
        """Quantize a rendered RGB image into the target's tensor.

        Byte-identical to :func:`edgeaug.config.targets.quantize`; one-byte dtypes
        take OpenCV's table lookup, several times faster than numpy's.
        """
        t = self.target
        if self.lut.itemsize != 1 or image.shape != (t.height, t.width, 3) or image.dtype != np.uint8:
            return quantize(image, t, self.lut)
        import cv2

        conv = {"BGR": cv2.COLOR_RGB2BGR, "GRAY": cv2.COLOR_RGB2GRAY}.get(t.color)
        img = image if conv is None else cv2.cvtColor(image, conv)  # as targets.to_color
        if self._identity_lut:  # e.g. uint8 with scale 1/255: the pixels are the tensor
            out = img.reshape(t.height, t.width, t.channels)
        else:
            table = self.lut.view(np.uint8).reshape(1, 256, t.channels)  # int8 tables as their bytes
            out = cv2.LUT(img, table).reshape(t.height, t.width, t.channels).view(self.lut.dtype)
        return np.ascontiguousarray(out.transpose(2, 0, 1) if t.layout == "NCHW" else out)


def _as_resize(img: np.ndarray, m: np.ndarray, size: Tuple[int, int], linear: bool):
    """``cv2.resize`` of a whole-pixel source rectangle (then flips) when ``m`` is exactly that.

    Crops, flips and squash resizes give such matrices.  OpenCV's resize is
    several times faster than its float warp and samples the same points
    (pixel centres); None when the matrix rotates, shears, or reaches outside.
    """
    import cv2

    if m[0, 1] != 0 or m[1, 0] != 0 or m[2, 0] != 0 or m[2, 1] != 0 or m[0, 0] == 0 or m[1, 1] == 0:
        return None
    box = []
    for i, (n, lim) in enumerate(zip(size, img.shape[1::-1])):
        a, b = -m[i, 2] / m[i, i], (n * m[2, 2] - m[i, 2]) / m[i, i]
        lo, hi = min(a, b), max(a, b)
        if abs(lo - round(lo)) > 1e-6 or abs(hi - round(hi)) > 1e-6 or not 0 <= round(lo) < round(hi) <= lim:
            return None
        box.append((round(lo), round(hi)))
    (x0, x1), (y0, y1) = box
    out = cv2.resize(img[y0:y1, x0:x1], size, interpolation=cv2.INTER_LINEAR if linear else cv2.INTER_NEAREST_EXACT)
    fx, fy = m[0, 0] < 0, m[1, 1] < 0
    if fx or fy:
        out = cv2.flip(out, -1 if fx and fy else (1 if fx else 0))
    return out.reshape(size[1], size[0], *img.shape[2:])


def mirrors(m: np.ndarray) -> bool:
    """Whether a geometry mirrors: its linear part has a negative determinant.

    hflip, vflip, or a flip with any rotation do; a 180 degree rotation (two flips) does not.
    """
    return float(m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]) < 0


def _sample_op(
    op: Any, rng: np.random.Generator, size: Tuple[float, float], forced: bool
) -> Tuple[Dict[str, Any], Tuple[float, float]]:
    """One op's entry; composites choose children, which then always fire."""
    if not forced and not rng.random() < op.p:  # p=0 never fires, p=1 always does
        return {"op": op.name, "on": False}, size
    if op.composite:
        chosen, kids = set(op.choose(rng)), []
        for i, child in enumerate(op.children):
            entry = {"op": child.name, "on": False}
            if i in chosen:
                entry, size = _sample_op(child, rng, size, forced=True)
            kids.append(entry)
        return {"op": op.name, "on": True, "ops": kids}, size
    params = op.sample(rng, size)
    if op.geometric:
        size = op.matrix(params, size)[1]
    return {"op": op.name, "on": True, **params}, size


def _one_of_multi(op: Any) -> bool:
    return op.name == "one_of" and bool(op.children) and all(getattr(c, "multi", False) for c in op.children)


def leaves(ops: List[Any], params: List[Dict[str, Any]]) -> Iterator[Tuple[Any, Dict[str, Any]]]:
    """The ops that fired, composites flattened, in recipe order."""
    for op, p in zip(ops, params):
        if not p["on"]:
            continue
        if op.composite:
            yield from leaves(op.children, p["ops"])
        else:
            yield op, p


def _apply_tones(image: np.ndarray, tones: List[Tuple[Any, Dict[str, Any]]]) -> np.ndarray:
    """Fuse consecutive tone curves into one table: one pass, one rounding."""
    if not tones:
        return image
    import cv2

    x = np.arange(256, dtype=np.float64)
    for op, p in tones:
        x = np.clip(op.curve(x, p), 0, 255)
    return cv2.LUT(image, np.rint(x).astype(np.uint8)).reshape(image.shape)


def _warp_boxes(boxes: np.ndarray, m: np.ndarray, tw: int, th: int, min_vis: float, fwd=None) -> np.ndarray:
    """Boxes through the warp (:mod:`edgeaug.ops.boxgeom`), each clipped to the frame and kept by visibility.

    With a non-affine map ``fwd`` the outline is sampled densely
    (:func:`.remap.outline`) and each point mapped; the clipping (against the
    convex frame) holds for any outline.
    """
    if not len(boxes):
        return boxes.astype(np.float32).reshape(0, 5)
    if fwd is None:
        return boxgeom.warp_boxes(boxes, m, tw, th, min_vis)
    line = remap.outline(boxes)
    return boxgeom.clip_outlines(boxes, fwd(line.reshape(-1, 2)).reshape(line.shape), tw, th, min_vis)
