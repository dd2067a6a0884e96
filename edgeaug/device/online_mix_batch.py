"""Online mosaic, mixup and cutmix inside :meth:`Pack.batches`: the settings, the label sections, one batch's mix.

:mod:`.online_mix` and :mod:`.online_mix_labels` hold the pure functions;
this module wires them to a pack.  Per batch ``b`` (``start // batch_size``)
the plan is ``plan_mix(mix_rng(pack seed, epoch, b), ...)``: the same seed
the online flip and shift use (the manifest's build seed unless the Pack was
opened with another), so a batch is a function of (seed, epoch, b) only,
whatever the prefetch or the reader.  The mix runs in the batch's read job,
on the prefetch thread when there is one, into a recycled output buffer
(:func:`~.prefetch.reusable`: never one the caller still holds).

Which labels a mixed batch needs depends on the pack's source kind:

* classification (class folders, CSV): ``soft_labels=True``, ``(B, classes)``
  float32 targets; a hard label would name one of up to six records;
* detection and segmentation (YOLO, COCO, mask folders): ``with_labels=True``,
  each output's boxes, keypoints, mask and instances;
* other packs (JSONL manifests): either.

``close_mosaic`` (Ultralytics: no mosaic in the last 10 epochs) is
``mosaic=1.0 if epoch < epochs - 10 else 0.0``; the mixup and cutmix draws of
every batch stay the same (:func:`~.online_mix.plan_mix` draws in a fixed
order), only the mosaic is off.  numpy and stdlib only.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .format import HEADER_SIZE, RECORD_HEADER, FormatError  # bundle: drop
from .labels import unpack_labels  # bundle: drop
from .online import online_params  # bundle: drop
from .online_labels import transform_boxes, transform_keypoints, transform_mask  # bundle: drop
from .online_mix import mix_batch, mix_rng, plan_mix, soft_targets  # bundle: drop
from .online_mix_fit import fit_windows  # bundle: drop
from .online_mix_labels import mix_labels  # bundle: drop
from .prefetch import reusable  # bundle: drop
from .readplan import PackError  # bundle: drop

#: Source kinds whose labels are one class per record, and those whose labels are boxes, keypoints or masks.
CLASSIFICATION_KINDS = ("folders", "csv")
LABELLED_KINDS = ("yolo", "coco", "masks")
BOX_KINDS = ("yolo", "coco")
#: mixup's Beta(alpha, alpha): Ultralytics' 32 keeps both images of a detection output visible; 1.0 (uniform).
DETECTION_MIXUP_ALPHA, CLASSIFICATION_MIXUP_ALPHA = 32.0, 1.0
DEFAULT_MIN_VISIBILITY = 0.1  # Ultralytics' mosaic
MOSAIC_WINDOWS = ("centre", "boxes")  # each quadrant's window: central, or placed by the boxes (online_mix_fit)


class MixSettings:
    """The mix arguments of one :meth:`Pack.batches` call, checked against the pack, with defaults resolved.

    ``on``: some probability is above 0; ``needed``: the batch goes through
    :class:`MixStage` (mixing, soft labels or labels asked for).
    """

    def __init__(
        self,
        pack,
        mosaic: float,
        mixup: float,
        cutmix: float,
        mixup_alpha: Optional[float],
        cutmix_alpha: float,
        min_visibility: Optional[float],
        soft_labels: bool,
        with_labels: bool,
        mosaic_windows: Optional[str] = None,
    ) -> None:
        m, path = pack.manifest, pack.path
        self.p = {"mosaic": float(mosaic), "mixup": float(mixup), "cutmix": float(cutmix)}
        for name, v in self.p.items():
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} {v} must be a probability in [0, 1]")
        self.on = any(v > 0 for v in self.p.values())
        self.soft, self.with_labels = bool(soft_labels), bool(with_labels)
        self.needed = self.on or self.soft or self.with_labels
        if mosaic_windows is None:  # boxes come with the labels: place the windows by them
            mosaic_windows = "boxes" if self.with_labels else "centre"
        if mosaic_windows not in MOSAIC_WINDOWS:
            raise ValueError(f"mosaic_windows {mosaic_windows!r} must be one of {', '.join(MOSAIC_WINDOWS)}")
        if mosaic_windows == "boxes" and not self.with_labels:
            raise ValueError(f"{path}: mosaic_windows='boxes' places windows by the boxes: needs with_labels=True")
        self.fit = mosaic_windows == "boxes"
        kind = m.get("source_kind")
        self._check_labels(kind, path)
        boxes = kind in BOX_KINDS or (kind not in CLASSIFICATION_KINDS + LABELLED_KINDS and self.with_labels)
        if mixup_alpha is None:
            mixup_alpha = DETECTION_MIXUP_ALPHA if boxes and not self.soft else CLASSIFICATION_MIXUP_ALPHA
        self.mixup_alpha, self.cutmix_alpha = float(mixup_alpha), float(cutmix_alpha)
        if not (self.mixup_alpha > 0 and self.cutmix_alpha > 0):
            raise ValueError(f"mixup_alpha {mixup_alpha} and cutmix_alpha {cutmix_alpha} must be > 0")
        recipe_vis = (m.get("recipe") or {}).get("min_visibility")
        if min_visibility is None:
            min_visibility = DEFAULT_MIN_VISIBILITY if recipe_vis is None else recipe_vis
        self.min_visibility = float(min_visibility)
        if not 0.0 <= self.min_visibility <= 1.0:
            raise ValueError(f"min_visibility {min_visibility} must be in [0, 1]")
        # Flip/shift labels as Pack.record gives them: the recipe's rule, 0 without one.
        self.shift_visibility = float(recipe_vis or 0.0)
        if self.soft and len(pack.labels) and int(pack.labels.min()) < 0:
            r = int(np.argmax(pack.labels < 0))
            raise ValueError(
                f"{path}: soft_labels: record {r} of split {pack.split} has no class (label -1, a detection "
                "record without boxes); use with_labels=True for this pack"
            )

    def _check_labels(self, kind: Optional[str], path: str) -> None:
        """Mixed outputs need labels that can say so: soft targets or per-output boxes."""
        if not self.on:
            return
        if kind in CLASSIFICATION_KINDS and not self.soft:
            raise ValueError(
                f"{path}: mosaic/mixup/cutmix on a classification pack ({kind}) need soft_labels=True: "
                "the hard label of a mixed output would be wrong"
            )
        if kind in LABELLED_KINDS and not self.with_labels:
            raise ValueError(
                f"{path}: mosaic/mixup/cutmix on a {kind} pack need with_labels=True: the boxes, keypoints "
                "and masks of a mixed output are not those of one record"
            )
        if not (self.soft or self.with_labels):
            raise ValueError(f"{path}: mosaic/mixup/cutmix need soft_labels=True or with_labels=True")


def label_kwargs(manifest: Dict[str, Any]) -> Dict[str, bool]:
    """The label argument a mixed :meth:`Pack.batches` call on this pack needs (for benchmarks and examples)."""
    kind = manifest.get("source_kind")
    return {"soft_labels": True} if kind in CLASSIFICATION_KINDS else {"with_labels": True}


class LabelSections:
    """The label sections of records, read at their file offsets: no tensor bytes are read again.

    ``reader`` is the pack's :class:`~.batchread.BatchReader` (offsets and
    sizes from the bounds-checked walk); ``fd`` the pack's descriptor.  Two
    small preads per record: its header (for the sections' sizes) and its
    labels section.
    """

    def __init__(self, path: str, fd: int, reader, nbytes: int, mask_shape: Tuple[int, int]) -> None:
        self.path, self.fd, self.reader, self.nbytes, self.mask_shape = path, fd, reader, nbytes, mask_shape

    def read(self, recs: np.ndarray) -> List[Dict[str, Any]]:
        """Per record (pack record numbers), ``{"boxes", "keypoints", "mask", "instances"}`` as stored."""
        off, size = self.reader.off[recs].tolist(), self.reader.size[recs].tolist()
        return [self._one(int(r), o, s) for r, o, s in zip(recs.tolist(), off, size)]

    def _one(self, r: int, off: int, size: int) -> Dict[str, Any]:
        if off < 0 or size < HEADER_SIZE or off + size > self.reader.file_size:
            raise PackError(f"{self.path}: record {r}: value cannot hold its header")
        try:
            head = os.pread(self.fd, HEADER_SIZE, off)
            if len(head) != HEADER_SIZE:
                raise PackError(f"{self.path}: record {r}: short read of its header")
            fields = RECORD_HEADER.unpack_from(head, 0)
            version, (labels_nbytes, params_nbytes) = fields[1], fields[5:7]
            stored = size - HEADER_SIZE - labels_nbytes - params_nbytes  # the tensor as stored (maybe compressed)
            if stored <= 0 or stored > self.nbytes:
                raise PackError(f"{self.path}: record {r}: section sizes in its header do not match its value")
            buf = os.pread(self.fd, labels_nbytes, off + HEADER_SIZE + stored)
        except OSError as e:
            raise PackError(f"{self.path}: record {r}: read failed: {e.strerror or e}") from None
        if len(buf) != labels_nbytes:
            raise PackError(f"{self.path}: record {r}: short read of its labels")
        try:
            labels = unpack_labels(buf, self.mask_shape, version)
        except (FormatError, ValueError) as e:
            raise PackError(f"{self.path}: record {r}: {e}") from None
        labels.setdefault("instances", None)
        return labels


def _moved_labels(lab: Dict[str, Any], w: int, h: int, flip: bool, shift, pairs, min_vis: float) -> Dict[str, Any]:
    """A record's labels after its online flip and shift (as :meth:`Pack.record`), instances kept with their boxes."""
    boxes = np.array(lab["boxes"], np.float32).reshape(-1, 5)
    tagged = boxes.copy()
    tagged[:, 0] = np.arange(len(boxes))  # which boxes survive, so the instances follow them
    moved = transform_boxes(tagged, w, h, flip, shift, min_vis)
    kept = moved[:, 0].astype(np.int64)
    moved[:, 0] = boxes[kept, 0]
    inst = lab.get("instances")
    if inst is not None:
        inst = (
            np.stack([transform_mask(m.view(np.uint8), flip, shift).view(bool) for m in inst[kept]])
            if len(kept)
            else np.zeros((0, h, w), bool)
        )
    return {
        "boxes": moved,
        "keypoints": transform_keypoints(lab["keypoints"], w, h, flip, shift, pairs),
        "mask": transform_mask(lab.get("mask"), flip, shift),
        "instances": inst,
    }


class MixStage:
    """Wraps a batch read job: mix the batch read, and give its targets and labels.

    ``read(job)`` returns ``(x, y, idx)``; the stage returns ``(x', y', idx, L)``
    with ``L`` None unless labels are asked for.  ``spare``/``lock``: the
    pack's recycled mix outputs.
    """

    def __init__(self, pack, settings: MixSettings, epoch, batch_size: int, read: Callable, online: Tuple) -> None:
        self.pack, self.s, self.epoch, self.batch_size, self.read = pack, settings, epoch, int(batch_size), read
        shape, layout = pack.shape, pack.manifest["target"]["layout"]
        self.layout = layout
        self.h, self.w = (shape[1], shape[2]) if layout == "NCHW" else (shape[0], shape[1])
        self.spare, self.lock = pack._mix_spare, pack._mix_lock
        hflip, shift = online
        self.flips = self.shifts = None
        if settings.with_labels:
            t = pack.manifest["target"]
            self.sections = LabelSections(
                pack.path, pack._db.fd, pack._reader, pack.nbytes, (int(t["height"]), int(t["width"]))
            )
            if hflip or shift:
                self.flips, self.shifts = online_params(pack.seed, epoch.number, epoch.order, hflip, shift)

    def __call__(self, job: Tuple[int, slice]):
        start, part = job
        x, y, idx = self.read(job)
        s = self.s
        plan = plan_mix(
            mix_rng(self.pack.seed, self.epoch.number, start // self.batch_size),
            len(x),
            self.h,
            self.w,
            mosaic=s.p["mosaic"],
            mixup=s.p["mixup"],
            cutmix=s.p["cutmix"],
            mixup_alpha=s.mixup_alpha,
            cutmix_alpha=s.cutmix_alpha,
        )
        recs = self.read_labels(part) if s.with_labels else None
        if s.fit and plan.mosaic.any():
            fit_windows(plan, [r["boxes"] for r in recs])
        if plan.any:
            with self.lock:
                out = reusable(self.spare, x.shape, x.dtype)
            x = mix_batch(x, self.layout, plan, out=out)
        if s.soft:
            y = soft_targets(y, plan, len(self.pack.classes))
        if recs is not None and plan.any:
            recs = mix_labels(recs, plan, self.s.min_visibility)
        return x, y, idx, recs

    def read_labels(self, part: slice) -> List[Dict[str, Any]]:
        """The records' labels of ``part`` after their flip and shift (copies)."""
        recs = self.sections.read(self.epoch.recs[part])
        if self.flips is None:
            return [{k: None if v is None else np.array(v) for k, v in lab.items()} for lab in recs]
        pairs = self.pack.manifest.get("keypoint_flip_idx")
        flips, shifts = self.flips[part].tolist(), self.shifts[part].tolist()
        vis = self.s.shift_visibility
        return [_moved_labels(lab, self.w, self.h, f, sh, pairs, vis) for lab, f, sh in zip(recs, flips, shifts)]


def new_spare() -> Tuple[list, Any]:
    """The recycled mix-output buffers of one Pack, and their lock."""
    return [], threading.Lock()
