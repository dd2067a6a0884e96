"""The device's view of a pack: :class:`Pack`, its records and shuffled batches.

The pack is untrusted input: every size and offset is checked before use, the
file size is checked against LMDB's page count (an mmap read past the end of
the file would kill the process with SIGBUS), and only JSON and fixed
little-endian arrays are parsed.  Python >= 3.9, numpy >= 1.21.
"""

from __future__ import annotations

import json
import operator
import threading
from functools import partial
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .backends import open_backend  # bundle: drop
from .batchread import BatchReader  # bundle: drop
from .codec import CodecError, decode_into  # bundle: drop
from .decodedread import size_report  # bundle: drop
from .epochs import Epoch, epoch_order, online_reader, plain_read, source_slots, variant_rows  # bundle: drop
from .format import HEADER_SIZE, SPLITS, FormatError, RecordHeader, record_key  # bundle: drop
from .labels import unpack_labels  # bundle: drop
from .online import fill_value, online_params  # bundle: drop
from .online_labels import transform_record  # bundle: drop
from .online_mix_batch import MixSettings, MixStage, new_spare  # bundle: drop
from .packmeta import PackMeta, check_records, device_warnings, labels_summary, split_rows  # bundle: drop
from .prefetch import prefetched, prefetched_when_useful  # bundle: drop
from .readplan import READERS, PackError, choose_reader  # bundle: drop


class Pack:
    """A read-only view of one split of a pack.

    ``pack[i]`` returns ``(x, y)``: a copy of the record's tensor (safe to keep
    after :meth:`close`) and its class label; :meth:`batches` is the fast path.
    ``backend`` is ``"auto"``, ``"lmdb"`` or ``"pure"``: how single records
    and the manifest are read.  ``reader`` is how batches are read:
    ``"pread"`` (one read per record, for packs larger than memory), ``"mmap"``
    (copies from a mapping, for packs that fit in the page cache) or
    ``"auto"``, which picks by file size against min(MemAvailable, the
    cgroup's memory limit); a 32-bit process maps packs of at most
    512 MB, and reads with pread when a mapping fails.
    """

    def __init__(
        self, path: str, split: str = "train", seed: Optional[int] = None, backend: str = "auto", reader: str = "auto"
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
        if reader not in READERS:
            raise ValueError(f"reader must be one of {READERS}, got {reader!r}")
        self.path, self.split = str(path), split
        self._reader: Optional[BatchReader] = None
        # Released on close() or when this Pack is garbage-collected; the last user closes the file.
        self._db, self._release = open_backend(self.path, backend, self)
        try:
            self._adopt(PackMeta(self._db, self.path))
            self._setup_split()
            self._reader = self._batch_reader(choose_reader(self._db.size, reader), reader == "auto")
        except OSError as e:
            self._release()
            raise PackError(f"{self.path}: cannot open for batch reads: {e.strerror or e}") from None
        except BaseException:
            self._release()
            raise
        self.seed = int(self.manifest["seed"]) if seed is None else int(seed)
        self._spare: List[np.ndarray] = []  # batch buffers to recycle, across epochs
        self._spare_lock = threading.Lock()
        self._mix_spare, self._mix_lock = new_spare()  # mixed batches (online_mix_batch), recycled alike
        self.reader = self._reader.mode

    def _adopt(self, meta: PackMeta) -> None:
        self.manifest, self._index, self._splits = meta.manifest, meta.index, meta.splits
        self.shape, self.dtype, self.nbytes = meta.shape, meta.dtype, meta.nbytes
        self.records, self.classes, self.input_name = meta.records, meta.classes, meta.input_name
        self.codec, self.layout = meta.codec, self.manifest["target"]["layout"]

    def _batch_reader(self, mode: str, may_fall_back: bool) -> BatchReader:
        idx = self._index
        expect = (idx["source"], idx["variant"], idx["split"])
        args = (self._db, self._db.table, self.records, self.nbytes, expect, mode, self.codec != "none")
        try:
            return BatchReader(*args)
        except PackError:
            raise
        except (OSError, ValueError, OverflowError):
            # Mapping can fail where address space is short (a 32-bit process): read with pread instead.
            if mode != "mmap" or not may_fall_back:
                raise
            return BatchReader(*args[:5], "pread", args[6])

    def _setup_split(self) -> None:
        start, count = self._splits[self.split]
        rows = split_rows(self._index, self.split, (start, count), self.path)
        self._start, self._count = start, count
        self.labels = rows["label"].astype(np.int64)
        self._sources, self._variants = rows["source"], rows["variant"]
        self._slots = source_slots(self._sources)  # records of one source are contiguous

    # --- access -------------------------------------------------------------------

    def __len__(self) -> int:
        return self._count

    @property
    def sources(self) -> int:
        """Number of distinct sources in this split (one sample per epoch each)."""
        return len(self._slots[0])

    @property
    def plain_variants(self) -> Tuple[int, ...]:
        """The variant indices the recipe's ``plain_variants = N`` marks plain: the last N of 1..K.

        Their records were built without the multi-image op, so
        ``pack.batches(..., variants=None if epoch < epochs - 10 else pack.plain_variants)``
        is Ultralytics' ``close_mosaic = 10``.  Empty when the recipe marks none.
        """
        r = self.manifest["recipe"]  # validated: 0 <= plain_variants <= variants
        k = int(r["variants"])
        return tuple(range(k - int(r.get("plain_variants", 0)) + 1, k + 1))

    def _value(self, i: int):
        i = operator.index(i)  # numpy integers too (e.g. from epoch_order)
        if not -self._count <= i < self._count:
            raise IndexError(f"record {i} out of range for {self._count} records in split {self.split}")
        i = i % self._count if i < 0 else i
        value = self._db.get(record_key(self._start + i))
        if value is None:
            raise PackError(f"{self.path}: record {self._start + i} is missing")
        return value

    def _tensor(self, value, r: int) -> np.ndarray:
        """The tensor of record ``r`` after checking its header against the target and the index."""
        try:
            h = RecordHeader(value)
        except FormatError as e:
            raise PackError(f"{self.path}: record {r}: {e}") from None
        row = self._index[r]
        if h.tensor_nbytes != self.nbytes or (h.source, h.variant, h.split) != (
            row["source"],
            row["variant"],
            row["split"],
        ):
            raise PackError(f"{self.path}: record {r}: header does not match the target or the index")
        if h.method:
            out = np.empty(self.shape, self.dtype)
            try:
                decode_into(memoryview(value)[HEADER_SIZE : h.labels_offset], out, h.method, self.layout, f"record {r}")
            except CodecError as e:
                raise PackError(f"{self.path}: {e}") from None
            return out
        # A copy: a view into py-lmdb's map would crash the process if read after close().
        return np.frombuffer(value, self.dtype, int(np.prod(self.shape)), HEADER_SIZE).reshape(self.shape).copy()

    def __getitem__(self, i: int) -> Tuple[np.ndarray, int]:
        value = self._value(i)  # bounds-checked
        return self._tensor(value, self._start + i % self._count), int(self.labels[i])

    def record(self, i: int, epoch: int = 0, hflip: float = 0.0, shift: int = 0) -> Dict[str, Any]:
        """Everything stored for record ``i`` of this split: tensor, labels, params, ids.

        Labels: ``boxes``, ``keypoints``, ``mask``, ``instances`` (``(n, H, W)``
        bool, row ``k`` the mask of box ``k``, or None) and ``mix`` (the soft
        label ``[(class, weight), ...]`` of an offline mixed record, else ``[]``).
        With ``hflip``/``shift``, the tensor, boxes, keypoints (left/right pairs
        swapped on a mirror, from the manifest's ``keypoint_flip_idx``), mask
        and instance masks come transformed exactly as :meth:`batches`
        transforms record ``i`` in ``epoch`` (a copy; the stored record is not touched).
        """
        self._value(i)  # bounds check against the split
        i = operator.index(i) % self._count
        rec = self.record_at(self._start + i)
        if not (hflip or shift):
            return rec
        (flip,), (sh,) = online_params(self.seed, epoch, np.array([i]), float(hflip), int(shift))
        pairs = self.manifest.get("keypoint_flip_idx")
        min_vis = float((self.manifest.get("recipe") or {}).get("min_visibility", 0.0))
        layout = self.manifest["target"]["layout"]
        return transform_record(rec, layout, bool(flip), sh.tolist(), fill_value(self.manifest), pairs, min_vis)

    def record_at(self, r: int) -> Dict[str, Any]:
        """Like :meth:`record`, by index into the whole pack (both splits)."""
        r = operator.index(r)
        if not 0 <= r < self.records:
            raise IndexError(f"record {r} out of range for {self.records} records")
        value = self._db.get(record_key(r))
        if value is None:
            raise PackError(f"{self.path}: record {r} is missing")
        try:
            h = RecordHeader(value)
            section = memoryview(value)[h.labels_offset : h.params_offset]
            labels = unpack_labels(section, self._mask_shape(), h.version)
            params = json.loads(bytes(value[h.params_offset :]).decode("utf-8"))
        except (FormatError, ValueError, RecursionError) as e:
            raise PackError(f"{self.path}: record {r}: {e}") from None
        return {
            "x": self._tensor(value, r),
            "label": h.label,
            "source": h.source,
            "variant": h.variant,
            "split": h.split,
            "digest": h.digest.hex(),
            "params": params,
            **labels,
        }

    def _mask_shape(self) -> Tuple[int, int]:
        t = self.manifest["target"]
        return int(t["height"]), int(t["width"])

    def epoch_order(
        self, epoch: int, shuffle: bool = True, all_variants: bool = False, variants: Optional[Sequence[int]] = None
    ) -> np.ndarray:
        """Record indices of one epoch: each source once, variant chosen by (seed, epoch).

        Over K consecutive epochs a source with K records serves each of them once.
        With ``all_variants`` every record is served every epoch.  ``variants``
        (a sequence of variant indices) first keeps only the records with those
        variants, and leaves out sources with none (see :mod:`edgeaug.device.epochs`).
        """
        rows = variant_rows(self._variants, variants, self.split)
        slots = self._slots if rows is None else source_slots(self._sources[rows])
        return epoch_order(self.seed, epoch, slots, shuffle, all_variants, rows)

    def batches(
        self,
        batch_size: int,
        epoch: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        all_variants: bool = False,
        variants: Optional[Sequence[int]] = None,
        prefetch: Optional[bool] = None,
        hflip: float = 0.0,
        shift: int = 0,
        mosaic: float = 0.0,
        mixup: float = 0.0,
        cutmix: float = 0.0,
        mixup_alpha: Optional[float] = None,
        cutmix_alpha: float = 1.0,
        min_visibility: Optional[float] = None,
        soft_labels: bool = False,
        with_labels: bool = False,
        with_index: bool = False,
        mosaic_windows: Optional[str] = None,
    ) -> Iterator[Tuple[Any, ...]]:
        """Yield ``(X, Y)``: X one contiguous array (batch, *shape) of the target dtype.

        ``prefetch`` reads the next batch on a background thread while the
        caller works on this one.  Default: on with the ``pread`` reader,
        where reads wait for storage; with ``mmap``, on once the caller's own
        work between batches is a quarter of the read time or more (a thread
        hand-off costs more than it saves when the caller only reads; see
        :func:`~edgeaug.device.batchread.prefetched_when_useful`).  Yielded
        arrays are never overwritten while the caller holds them.

        ``variants``: serve only records with these variant indices (each source
        one of them per epoch, all of them with ``all_variants``; sources with
        none are left out).  ``variants=None if epoch < epochs - 10 else
        pack.plain_variants`` reproduces Ultralytics' ``close_mosaic`` for a pack
        whose recipe sets ``plain_variants`` (see :attr:`plain_variants`).

        Online augmentation (the hybrid): ``hflip`` mirrors each record with
        that probability and ``shift`` translates it by up to that many pixels
        in x and y (pad-and-crop, the target's quantized fill in the border),
        as a function of (pack seed, epoch, record) only (see
        :mod:`edgeaug.device.online`).  ``with_index`` also yields the split
        record indices: ``pack.record(i, epoch=, hflip=, shift=)`` gives a
        record's boxes, keypoints and mask transformed the same way.

        Online mosaic, mixup and cutmix (probabilities ``mosaic``, ``mixup``,
        ``cutmix``): each output combines records of the same batch, after
        their flip and shift, drawn from (pack seed, epoch, batch index) only
        (see :mod:`edgeaug.device.online_mix` and
        :mod:`~edgeaug.device.online_mix_batch`).  ``mixup_alpha`` defaults to
        32.0 for packs with boxes, else 1.0; ``min_visibility`` to the
        recipe's, else 0.1.  ``soft_labels`` yields Y as ``(B, classes)``
        float32 targets (rows sum to 1; needed to mix a classification pack);
        ``with_labels`` yields ``(X, Y, L)``, ``L`` a list of B dicts
        ``{"boxes", "keypoints", "mask", "instances"}`` after flip, shift and
        mixing (needed to mix a detection or segmentation pack).
        ``close_mosaic``: ``mosaic=1.0 if epoch < epochs - 10 else 0.0`` (the
        other draws do not change).  ``mosaic_windows``: where each quadrant's
        window lies in its record: ``"boxes"`` (the default with
        ``with_labels``) where it cuts the fewest boxes (see
        :mod:`edgeaug.device.online_mix_fit`), ``"centre"`` (the default
        otherwise) the central window.  The record indices
        (``with_index``) come last.
        """
        mix = MixSettings(
            self,
            mosaic,
            mixup,
            cutmix,
            mixup_alpha,
            cutmix_alpha,
            min_visibility,
            soft_labels,
            with_labels,
            mosaic_windows,
        )
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        order = self.epoch_order(epoch, shuffle, all_variants, variants)
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        if self._reader is None:
            raise PackError(f"{self.path}: pack is closed")
        # Per epoch, not per batch: pack record numbers, labels and (mapped) tensor offsets, sliced per batch.
        ep = Epoch(epoch, order[:stop], self._start, self.labels, self._reader)
        jobs = ((b, slice(b, min(b + batch_size, stop))) for b in range(0, stop, batch_size))
        read = online_reader(self, ep, float(hflip), int(shift)) if hflip or shift else partial(plain_read, self, ep)

        if mix.needed:  # in the read job: on the prefetch thread when there is one
            read = MixStage(self, mix, ep, batch_size, read, (float(hflip), int(shift)))
        if prefetch or (prefetch is None and self._reader.mode == "pread"):
            batches = prefetched(jobs, read)
        elif prefetch is None:
            batches = prefetched_when_useful(jobs, read)
        else:
            batches = map(read, jobs)
        for x, y, idx, *labels in batches:
            yield (x, y) + (tuple(labels) if with_labels else ()) + ((idx,) if with_index else ())

    # --- checks -------------------------------------------------------------------

    def verify(self, limit: Optional[int] = None, split_only: bool = False) -> List[str]:
        """Check every record of the pack (both splits; with ``split_only``, this split's) against its digests.

        ``limit`` checks only the first that many.  Returns a list of problems;
        empty means every byte checked out.
        """
        first, n = (self._start, self._count) if split_only else (0, self.records)
        n = n if limit is None else min(limit, n)
        return check_records(self._db, self._index, self.nbytes, range(first, first + n), self._tensor)

    def labels_summary(self) -> Dict[str, int]:
        """Records of the whole pack with instance masks (and the masks' total), and offline mixed records."""
        return labels_summary(self._db, range(self.records))

    def device_warnings(self) -> List[str]:
        """Differences between the target's device and this process (architecture, word size)."""
        return device_warnings(self.manifest)

    def info(self) -> Dict[str, Any]:
        m = self.manifest
        return {
            "path": self.path,
            "format_version": m["format_version"],
            "fingerprint": m["fingerprint"],
            "records": self.records,
            "splits": {s: c for s, (_, c) in self._splits.items()},
            "seed": m["seed"],
            "target": m["target"].get("name"),
            "shape": list(self.shape),
            "dtype": str(self.dtype),
            "classes": self.classes,
            "backend": self._db.name,
            "reader": self.reader,
            "compression": self.manifest.get("compression", {"codec": "none"}),
            # record bytes against the same records with raw tensors (decodedread.size_report says how)
            "size": size_report(self._reader, self.records) if self._reader is not None else None,
            "plain_variants": list(self.plain_variants),  # close_mosaic: batches(..., variants=these)
        }

    def backend_name(self) -> str:
        return self._db.name

    def close(self) -> None:
        """Release the file now (dropping the Pack does it when it is garbage-collected).

        Tensors returned earlier are copies and stay valid.  Safe to call twice.
        """
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._release()
        self._db = _Closed(self._db)

    def __enter__(self) -> "Pack":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Closed:
    """Stands in for a closed Pack's backend: every read is a clear error."""

    def __init__(self, db) -> None:
        self.path, self.name = db.path, db.name

    def get(self, key: bytes):
        raise PackError(f"{self.path}: pack is closed")
