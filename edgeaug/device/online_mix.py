"""Online mosaic, mixup and cutmix on the device, from the records of one batch: numpy and stdlib only.

The hybrid's multi-image ops.  Every output combines records **of the same
batch** (torchvision's batch-wise MixUp/CutMix): partners are other rows of
the batch, so the device reads no more than for plain batches.  Per output
``j``, in this order (each op applies with its own probability):

1. **mosaic**: the frame is cut at a seeded centre ``(cx, cy)`` into four
   quadrants; each quadrant is a crop of one record (``j`` in a seeded
   quadrant, three other rows in the others).  No resampling: a quadrant of
   ``qh x qw`` pixels is a plain copy of the **central** ``qh x qw`` window of
   its record (top-left corner ``((H - qh) // 2, (W - qw) // 2)``), so objects
   near the centre of each record are kept.  ``cx`` and ``cy`` are uniform
   integers in ``[0.25, 0.75]`` of the width and height (Ultralytics' centre
   range on its 2x canvas).  With ``plan.windows`` set (by
   :func:`~.online_mix_fit.fit_windows`, from the records' boxes) each
   quadrant copies the window of its record placed there instead.
2. **mixup**: ``lambda * (output so far) + (1 - lambda) * partner record``,
   ``lambda ~ Beta(alpha, alpha)`` rounded to a multiple of 1/128 in
   ``[1/128, 127/128]``.  Integer codes are blended directly: for a
   quantized target ``s * (l*q1 + (1-l)*q2 - zp)`` is the blend of the
   dequantized values, so blending the codes is exact up to one rounding:
   ``floor(l*q1 + (1-l)*q2 + 1/2)`` (half up), computed exactly in int16; the
   result lies between the two codes, so it never leaves the dtype's range.
   float16/float32 blend as ``b + l * (a - b)`` in float32.
3. **cutmix**: a seeded rectangle of the partner record is pasted at the same
   place (torchvision's rule: ``lambda ~ Beta(alpha, alpha)``, side ratio
   ``sqrt(1 - lambda)``, uniform centre, clipped to the frame).

The partners of mixup and cutmix are the partner's record **as read** (not
its mosaic), so the source batch is never written.  Every draw comes from
:func:`mix_rng` ``(seed, epoch, batch)``, all in a fixed order whatever the
probabilities, so a plan is a pure function of (seed, epoch, batch index,
batch size, frame size) and the output a pure function of the plan and the
batch: independent of prefetch, reader and call order::

    plan = plan_mix(mix_rng(seed, epoch, b), len(x), h, w, mosaic=1.0, mixup=0.1)
    out = mix_batch(x, layout, plan, out=buffer)            # tensors
    y_soft = soft_targets(y, plan, classes)                 # classification: (B, classes) float32
    labels = mix_labels(records, plan, min_visibility=0.1)  # detection (online_mix_labels)
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

MIX_STREAM = 0x6D6978  # "mix": the SeedSequence spawn key's last word, apart from other device draws
MIX_LEVELS = 128  # mixup's lambda is a multiple of 1/128, so an integer blend is exact in int16
CENTRE_RANGE = (0.25, 0.75)
MIX_SOURCES = 6  # per output: 4 quadrants (or the record itself), the mixup partner, the cutmix partner


def mix_rng(seed: int, epoch: int, batch: int) -> np.random.Generator:
    """The generator of one batch: PCG64 of ``SeedSequence(seed, spawn_key=(epoch, batch, MIX_STREAM))``."""
    for name, v in (("seed", seed), ("epoch", epoch), ("batch", batch)):
        if int(v) != v or v < 0:
            raise ValueError(f"mix_rng: {name} {v} must be a non-negative integer")
    ss = np.random.SeedSequence(int(seed), spawn_key=(int(epoch), int(batch), MIX_STREAM))
    return np.random.Generator(np.random.PCG64(ss))


class MixPlan:
    """What one batch's outputs are made of; arrays of one row per output ``j``.

    ``mosaic (B,) bool``, ``quads (B, 4)`` the batch rows shown in the
    top-left, top-right, bottom-left and bottom-right quadrants (``j`` among
    them), ``centre (B, 2)`` as ``(cx, cy)``; ``mixup (B,) bool``,
    ``mix_partner (B,)``, ``lam (B,)`` (the output's own weight);
    ``cutmix (B,) bool``, ``cut_partner (B,)``, ``rect (B, 4)`` as
    ``(x0, y0, x1, y1)``.  Rows where an op is off still hold its draws.
    ``windows``: None (each quadrant shows its record's central window) or
    ``(B, 4, 2)`` int64, the top-left corner ``(sx, sy)`` in its record of
    each quadrant's window (:func:`~.online_mix_fit.fit_windows`).
    """

    def __init__(self, height: int, width: int, **arrays: np.ndarray):
        self.height, self.width = int(height), int(width)
        self.mosaic, self.quads, self.centre = arrays["mosaic"], arrays["quads"], arrays["centre"]
        self.mixup, self.mix_partner, self.lam = arrays["mixup"], arrays["mix_partner"], arrays["lam"]
        self.cutmix, self.cut_partner, self.rect = arrays["cutmix"], arrays["cut_partner"], arrays["rect"]
        self.windows: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.mosaic)

    @property
    def any(self) -> bool:
        """Whether any output differs from its record."""
        return bool(self.mosaic.any() or self.mixup.any() or self.cutmix.any())

    def quadrants(self, j: int) -> list:
        """Output ``j``'s mosaic as ``[(row, dst, src), ...]``: rects ``(x0, y0, x1, y1)`` of equal size."""
        out = []
        for q, (x0, y0, x1, y1) in enumerate(self.quadrant_rects(j)):
            sx, sy = self.window(j, q)
            out.append((int(self.quads[j, q]), (x0, y0, x1, y1), (sx, sy, sx + x1 - x0, sy + y1 - y0)))
        return out

    def quadrant_array(self) -> np.ndarray:
        """``(B, 4, 4)`` int64: every output's :meth:`quadrant_rects` at once."""
        b, h, w = len(self), self.height, self.width
        cx, cy = self.centre[:, 0].astype(np.int64), self.centre[:, 1].astype(np.int64)
        zero, full_w, full_h = np.zeros(b, np.int64), np.full(b, w, np.int64), np.full(b, h, np.int64)
        return np.stack(
            [
                np.stack([zero, zero, cx, cy], 1),
                np.stack([cx, zero, full_w, cy], 1),
                np.stack([zero, cy, cx, full_h], 1),
                np.stack([cx, cy, full_w, full_h], 1),
            ],
            axis=1,
        )

    def quadrant_rects(self, j: int) -> list:
        """Output ``j``'s four quadrants ``(x0, y0, x1, y1)``: top-left, top-right, bottom-left, bottom-right."""
        h, w = self.height, self.width
        cx, cy = (int(v) for v in self.centre[j])
        return [(0, 0, cx, cy), (cx, 0, w, cy), (0, cy, cx, h), (cx, cy, w, h)]

    def window(self, j: int, q: int) -> Tuple[int, int]:
        """The top-left corner in its record of output ``j``'s quadrant ``q`` window (central unless fitted)."""
        if self.windows is not None:
            return int(self.windows[j, q, 0]), int(self.windows[j, q, 1])
        x0, y0, x1, y1 = self.quadrant_rects(j)[q]
        return (self.width - (x1 - x0)) // 2, (self.height - (y1 - y0)) // 2

    def explain(self, j: int) -> dict:
        """Output ``j`` as plain JSON: the batch rows it is made of and how."""
        d: dict = {"row": int(j)}
        if self.mosaic[j]:
            d["mosaic"] = {"quads": self.quads[j].tolist(), "centre": self.centre[j].tolist()}
            if self.windows is not None:
                d["mosaic"]["windows"] = self.windows[j].tolist()
        if self.mixup[j]:
            d["mixup"] = {"partner": int(self.mix_partner[j]), "lam": float(self.lam[j])}
        if self.cutmix[j]:
            d["cutmix"] = {"partner": int(self.cut_partner[j]), "rect": self.rect[j].tolist()}
        return d


def _check_p(name: str, p: float) -> float:
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{name} {p} must be a probability in [0, 1]")
    return float(p)


def _offsets(u: np.ndarray, b: int) -> np.ndarray:
    """(B, 5) partner offsets in ``1..B-1`` from uniforms ``u (B, 5)``: 3 distinct for mosaic, then mixup, cutmix.

    The mosaic's three are drawn without replacement by skipping the ones
    already taken (fewer than 3 other rows: they repeat); a batch of one
    partners itself (offset 0).
    """
    n = b - 1
    if n < 1:
        return np.zeros((b, 5), np.int64)
    r = np.floor(u * np.array([n, n - 1, n - 2, n, n], np.float64)).astype(np.int64)
    if n >= 3:
        r[:, 1] += r[:, 1] >= r[:, 0]
        lo, hi = np.minimum(r[:, 0], r[:, 1]), np.maximum(r[:, 0], r[:, 1])
        r[:, 2] += r[:, 2] >= lo
        r[:, 2] += r[:, 2] >= hi
    else:
        r[:, :3] = np.floor(u[:, :3] * n).astype(np.int64)
    return np.minimum(r, n - 1) + 1


def _uniform_int(u: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Uniform integers in ``[lo, hi]`` from uniforms in [0, 1)."""
    return lo + np.minimum(np.floor(u * (hi - lo + 1)).astype(np.int64), hi - lo)


def plan_mix(
    rng: np.random.Generator,
    batch_size: int,
    height: int,
    width: int,
    mosaic: float = 0.0,
    mixup: float = 0.0,
    cutmix: float = 0.0,
    mixup_alpha: float = 1.0,
    cutmix_alpha: float = 1.0,
    centre_range: Tuple[float, float] = CENTRE_RANGE,
) -> MixPlan:
    """Draw one batch's plan (see the module doc).  Every draw is made whatever the probabilities.

    ``mixup_alpha``: 1.0 (torchvision's MixUp default, lambda uniform; the
    soft label carries the proportion) suits classification; detection,
    where both images keep all their boxes, wants both clearly visible:
    Ultralytics' 32.0 keeps lambda near 0.5 (sd 0.06).
    """
    b, h, w = int(batch_size), int(height), int(width)
    if b < 1 or h < 1 or w < 1:
        raise ValueError(f"plan_mix: batch {b} of {h}x{w} frames must be non-empty")
    p = [_check_p(n, v) for n, v in (("mosaic", mosaic), ("mixup", mixup), ("cutmix", cutmix))]
    if mixup_alpha <= 0 or cutmix_alpha <= 0:
        raise ValueError(f"mixup_alpha {mixup_alpha} and cutmix_alpha {cutmix_alpha} must be > 0")
    f0, f1 = (float(v) for v in centre_range)
    if not 0.0 <= f0 <= f1 <= 1.0:
        raise ValueError(f"centre_range {centre_range} must be 0 <= lo <= hi <= 1")
    u = rng.random((b, 13))  # per output: gates (3), partners (5), own quadrant, centre (2), cutmix centre (2)
    lam_mix = rng.beta(mixup_alpha, mixup_alpha, b)
    lam_cut = rng.beta(cutmix_alpha, cutmix_alpha, b)
    off, uc, ur = _offsets(u[:, 3:8], b), u[:, 9:11], u[:, 11:13]

    rows = np.arange(b)
    quads = np.empty((b, 4), np.int64)
    quads[:, 1:] = (rows[:, None] + off[:, :3]) % b
    quads[:, 0] = rows
    qpos = np.minimum(np.floor(u[:, 8] * 4).astype(np.int64), 3)  # own row swapped into its seeded quadrant
    quads[rows, 0], quads[rows, qpos] = quads[rows, qpos], rows
    cx = _uniform_int(uc[:, 0], int(np.ceil(f0 * w)), max(int(np.floor(f1 * w)), int(np.ceil(f0 * w))))
    cy = _uniform_int(uc[:, 1], int(np.ceil(f0 * h)), max(int(np.floor(f1 * h)), int(np.ceil(f0 * h))))
    lam = np.clip(np.rint(lam_mix * MIX_LEVELS), 1, MIX_LEVELS - 1) / MIX_LEVELS
    return MixPlan(
        h,
        w,
        mosaic=u[:, 0] < p[0],
        quads=quads,
        centre=np.stack([cx, cy], axis=1),
        mixup=u[:, 1] < p[1],
        mix_partner=(rows + off[:, 3]) % b,
        lam=lam,
        cutmix=u[:, 2] < p[2],
        cut_partner=(rows + off[:, 4]) % b,
        rect=_cut_rects(lam_cut, ur, h, w),
    )


def _cut_rects(lam: np.ndarray, u: np.ndarray, h: int, w: int) -> np.ndarray:
    """torchvision's CutMix box: sides ``sqrt(1 - lam)`` of the frame's, uniform centre, clipped."""
    r = np.sqrt(1.0 - lam)
    hw, hh = (r * w / 2).astype(np.int64), (r * h / 2).astype(np.int64)
    rx, ry = _uniform_int(u[:, 0], 0, w - 1), _uniform_int(u[:, 1], 0, h - 1)
    return np.stack([np.maximum(rx - hw, 0), np.maximum(ry - hh, 0), np.minimum(rx + hw, w), np.minimum(ry + hh, h)], 1)


# --- tensors ------------------------------------------------------------------------


def _frame(x: np.ndarray, layout: str) -> Tuple[int, int]:
    if layout not in ("NHWC", "NCHW") or x.ndim != 4:
        raise ValueError(f"mix_batch: expected a 4-d NHWC or NCHW batch, got {layout} {x.shape}")
    return (x.shape[2], x.shape[3]) if layout == "NCHW" else (x.shape[1], x.shape[2])


def _blend_into(dst: np.ndarray, partner: np.ndarray, wgt, scratch: np.ndarray) -> None:
    """``dst = l * dst + (1 - l) * partner`` with ``l = wgt / 128`` (``wgt`` an int or broadcastable ints).

    Integer codes: exactly, rounded half up, in int16; floats in float32.
    """
    if dst.dtype.kind in "iu":
        np.subtract(dst, partner, out=scratch, dtype=np.int16)  # |a - b| <= 255, * 127 + 64 fits int16
        scratch *= np.asarray(wgt, np.int16)
        scratch += MIX_LEVELS // 2
        scratch >>= 7  # floor division by 128 (arithmetic shift)
        np.add(partner, scratch, out=dst, casting="unsafe")
    else:
        np.subtract(dst, partner, out=scratch, dtype=np.float32)
        scratch *= np.asarray(wgt, np.float32) / np.float32(MIX_LEVELS)
        np.add(partner, scratch, out=dst, casting="same_kind")


def _mosaic_into(out: np.ndarray, x: np.ndarray, layout: str, plan: MixPlan) -> None:
    """Each output's quadrants (:meth:`MixPlan.quadrants`, inlined: per output it is the cost), others copied."""
    h, w = plan.height, plan.width
    c = (slice(None),) if layout == "NCHW" else ()
    mosaic, quads, centres = plan.mosaic.tolist(), plan.quads.tolist(), plan.centre.tolist()
    for j in range(len(x)):
        if not mosaic[j]:
            out[j] = x[j]
            continue
        if plan.windows is not None:
            for r, (x0, y0, x1, y1), (sx, sy, sx1, sy1) in plan.quadrants(j):
                out[(j, *c, slice(y0, y1), slice(x0, x1))] = x[(r, *c, slice(sy, sy1), slice(sx, sx1))]
            continue
        (cx, cy), (tl, tr, bl, br) = centres[j], quads[j]
        ax, ay, bx, by = (w - cx) // 2, (h - cy) // 2, cx // 2, cy // 2  # the central windows' corners
        top, bottom, left, right = slice(0, cy), slice(cy, h), slice(0, cx), slice(cx, w)
        out[(j, *c, top, left)] = x[(tl, *c, slice(ay, ay + cy), slice(ax, ax + cx))]
        out[(j, *c, top, right)] = x[(tr, *c, slice(ay, ay + cy), slice(bx, bx + w - cx))]
        out[(j, *c, bottom, left)] = x[(bl, *c, slice(by, by + h - cy), slice(ax, ax + cx))]
        out[(j, *c, bottom, right)] = x[(br, *c, slice(by, by + h - cy), slice(bx, bx + w - cx))]


def _mixup_into(out: np.ndarray, x: np.ndarray, plan: MixPlan) -> None:
    """Blend the mixup outputs with their partners: per record when large (in cache), else all at once."""
    rows = np.flatnonzero(plan.mixup)
    if not len(rows):
        return
    wgt = np.rint(plan.lam[rows] * MIX_LEVELS).astype(np.int64)
    kind = np.int16 if x.dtype.kind in "iu" else np.float32
    if x[0].nbytes >= 1 << 16:
        scratch = np.empty(x.shape[1:], kind)
        for j, k, wj in zip(rows.tolist(), plan.mix_partner[rows].tolist(), wgt.tolist()):
            _blend_into(out[j], x[k], wj, scratch)
        return
    part = out[rows]
    _blend_into(part, x[plan.mix_partner[rows]], wgt.reshape((-1,) + (1,) * (x.ndim - 1)), np.empty(part.shape, kind))
    out[rows] = part


def mix_batch(x: np.ndarray, layout: str, plan: MixPlan, out: Optional[np.ndarray] = None) -> np.ndarray:
    """The mixed batch, written into ``out`` (a reused buffer: x's shape and dtype, not overlapping x).

    ``x`` is never written.  Mosaic and cutmix are slice copies of stored
    values (bytes equal to the records'); mixup blends codes (module doc).
    With no output mixed and no ``out``, ``x`` itself is returned.
    """
    h, w = _frame(x, layout)
    if len(plan) != len(x) or (plan.height, plan.width) != (h, w):
        raise ValueError(f"mix_batch: plan for {len(plan)} x {plan.height}x{plan.width}, batch {x.shape} {layout}")
    if out is None:
        if not plan.any:
            return x
        out = np.empty_like(x)
    elif out.shape != x.shape or out.dtype != x.dtype or np.may_share_memory(out, x):
        raise ValueError(f"mix_batch: out {out.shape} {out.dtype} must be a separate {x.shape} {x.dtype} array")
    if plan.mosaic.any():
        _mosaic_into(out, x, layout, plan)
    else:
        np.copyto(out, x)
    _mixup_into(out, x, plan)
    c = (slice(None),) if layout == "NCHW" else ()
    for j, k, (x0, y0, x1, y1) in zip(
        np.flatnonzero(plan.cutmix).tolist(), plan.cut_partner[plan.cutmix].tolist(), plan.rect[plan.cutmix].tolist()
    ):
        out[(j, *c, slice(y0, y1), slice(x0, x1))] = x[(k, *c, slice(y0, y1), slice(x0, x1))]
    return out


# --- classification: soft labels --------------------------------------------------


def _overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection areas of rects ``(..., 4)`` as ``(x0, y0, x1, y1)``."""
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    return iw * ih


def mix_weights(plan: MixPlan) -> Tuple[np.ndarray, np.ndarray]:
    """Per output, the batch rows it shows and their shares: ``(B, 6) int64`` rows, ``(B, 6) float64`` weights.

    Columns: the four mosaic quadrants (or the record itself, then three
    zeros), the mixup partner, the cutmix partner.  A share is the fraction
    of the frame a row's pixels cover, times its blend weight: the quadrant's
    area outside the cutmix patch times ``lam``, the mixup partner's
    ``(1 - lam)`` of the area outside the patch, the patch's area.  Each row
    sums to 1 (torchvision's rule, lambda reset to the patch's area).
    """
    b, h, w = len(plan), plan.height, plan.width
    rows = np.arange(b)
    quad = plan.quadrant_array()
    whole = np.tile(np.array([0, 0, w, h], np.int64), (b, 1))
    m = plan.mosaic[:, None, None]
    regions = np.where(m, quad, np.concatenate([whole[:, None], np.zeros((b, 3, 4), np.int64)], 1))
    cut = np.where(plan.cutmix[:, None], plan.rect, 0)
    area = (regions[..., 2] - regions[..., 0]) * (regions[..., 3] - regions[..., 1])
    visible = (area - _overlap(regions, cut[:, None])).astype(np.float64) / (h * w)
    lam = np.where(plan.mixup, plan.lam, 1.0)
    cut_share = _overlap(cut, whole).astype(np.float64) / (h * w)
    weights = np.concatenate([visible * lam[:, None], ((1 - lam) * (1 - cut_share))[:, None], cut_share[:, None]], 1)
    own = np.where(plan.mosaic[:, None], plan.quads, rows[:, None])
    sources = np.concatenate([own, plan.mix_partner[:, None], plan.cut_partner[:, None]], axis=1)
    return sources, weights


def soft_targets(y, plan: MixPlan, classes: int) -> np.ndarray:
    """``(B, classes) float32`` targets of a classification batch: classes weighted by :func:`mix_weights`.

    ``y`` holds the batch's class ids ``(B,)``; rows sum to 1.  With no
    output mixed these are the one-hot labels.
    """
    y = np.asarray(y)
    if y.shape != (len(plan),) or y.dtype.kind not in "iu":
        raise ValueError(f"soft_targets: y must be {len(plan)} integer class ids, got {y.dtype} {y.shape}")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= int(classes)):
        raise ValueError(f"soft_targets: class ids must be in [0, {classes}), got {int(y.min())}..{int(y.max())}")
    sources, weights = mix_weights(plan)
    # intp: bincount refuses int64 indices in a 32-bit process (armhf).
    cells = (np.arange(len(y))[:, None] * int(classes) + y[sources]).reshape(-1).astype(np.intp)
    t = np.bincount(cells, weights.reshape(-1), minlength=len(y) * int(classes)).reshape(len(y), int(classes))
    return (t / t.sum(axis=1, keepdims=True)).astype(np.float32)
