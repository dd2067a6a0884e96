"""Which records an epoch serves, and in what order: a function of (pack seed, epoch) only.

A split's records of one source are contiguous (one per variant).  An epoch
serves each source once: over K consecutive epochs a source with K records
serves each of them once (a seeded permutation per cycle of K epochs), then
the epoch's records are shuffled.  A variant set (``Pack.batches(variants=)``,
e.g. the recipe's plain variants for Ultralytics' ``close_mosaic``) first
narrows each source to its records with those variants; sources with none are
left out.  The functions at the end read an epoch's batches for a
:class:`~edgeaug.device.pack.Pack` (as stored, or with the online flip and
shift done during the read).  Python >= 3.9, numpy >= 1.21.
"""

from __future__ import annotations

from functools import partial
from typing import Optional, Sequence, Tuple

import numpy as np

from .batchread import BatchReader  # bundle: drop
from .decodedread import fill_decoded  # bundle: drop
from .online import border_pattern, fill_value, online_params  # bundle: drop
from .online_read import OnlineBatch, read_moves  # bundle: drop
from .prefetch import reusable  # bundle: drop

MAX_VARIANT = 0xFFFF  # the index stores the variant as u2


def epoch_rng(seed: int, stream: int, n: int) -> np.random.Generator:
    """The generator of draw ``stream`` (1: variant cycle, 2: shuffle) for cycle or epoch ``n``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(stream, n))))


def variant_rows(variants: np.ndarray, chosen: Optional[Sequence[int]], split: str) -> Optional[np.ndarray]:
    """The split rows whose variant is in ``chosen`` (None: every row, no filtering).

    ``chosen`` must be a non-empty sequence of variant indices, and some record
    of the split must have one of them: an empty epoch is an error, not silence.
    """
    if chosen is None:
        return None
    if isinstance(chosen, (str, bytes)) or not hasattr(chosen, "__len__"):
        raise ValueError(f"variants must be a sequence of variant indices, got {chosen!r}")
    want = []
    for v in chosen:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or not 0 <= v <= MAX_VARIANT:
            raise ValueError(f"variants: {v!r} is not a variant index in 0..{MAX_VARIANT}")
        want.append(int(v))
    if not want:
        raise ValueError("variants is empty (a recipe without plain_variants marks no plain variant)")
    rows = np.flatnonzero(np.isin(variants, np.array(want, np.int64)))
    if not len(rows):
        raise ValueError(f"no record of split {split} has a variant in {sorted(set(want))}")
    return rows


def source_slots(sources: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """First row and record count of each source (rows of one source are contiguous)."""
    _, first, count = np.unique(sources, return_index=True, return_counts=True)
    return first, count


def epoch_order(
    seed: int,
    epoch: int,
    slots: Tuple[np.ndarray, np.ndarray],
    shuffle: bool,
    all_variants: bool,
    rows: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Split indices of one epoch.  ``slots``: :func:`source_slots` of ``rows`` (None: all rows, in order)."""
    first, count = slots
    if all_variants:
        order = np.arange(int(count.sum()))
    else:
        k = int(count.max()) if len(count) else 1
        perms = np.argsort(epoch_rng(seed, 1, epoch // k).random((len(first), k)), axis=1)
        # Sources with fewer than k records take the slot modulo their own count.
        order = first + perms[:, epoch % k] % count
    if rows is not None:
        order = rows[order]
    if shuffle:
        order = order[epoch_rng(seed, 2, epoch).permutation(len(order))]
    return order


class Epoch:
    """One epoch's records, worked out once and sliced per batch (a few numpy calls fewer per batch).

    ``order``: split indices; ``recs``: pack record numbers; ``labels``; and
    for small mapped tensors their file offsets.  A mapped pack's headers of
    the whole epoch are checked here, so its batches skip that check.
    """

    def __init__(self, number: int, order: np.ndarray, start: int, labels: np.ndarray, reader: BatchReader) -> None:
        self.number, self.order = number, order
        self.recs = order + start
        self.labels = labels[order]
        self.starts = None
        if reader.mode == "mmap":
            reader.precheck(self.recs)
            if reader.small:
                self.starts = reader.offsets(self.recs)


def online_reader(pack, epoch: Epoch, hflip: float, shift: int):
    """Reads ``(start, part)`` jobs of ``pack``'s ``epoch`` with its flips and shifts done during the read.

    Each tensor is read at the byte offset that shifts it (see
    :func:`~edgeaug.device.online_read.read_moves`); flipped ones are read into a
    scratch batch and mirrored from there; then the exposed borders are
    filled.  The draws for the whole epoch are made once.
    """
    layout = pack.manifest["target"]["layout"]
    pattern = border_pattern(pack.shape, layout, fill_value(pack.manifest), pack.dtype)
    h, w = (pack.shape[1], pack.shape[2]) if layout == "NCHW" else (pack.shape[0], pack.shape[1])
    if not 0.0 <= hflip <= 1.0 or not 0 <= shift < min(h, w):
        raise ValueError(f"hflip must be in [0, 1] and shift in [0, {min(h, w) - 1}], got {hflip}, {shift}")
    flips, shifts = online_params(pack.seed, epoch.number, epoch.order, hflip, shift)
    moves = read_moves(pack.shape, layout, pack.dtype.itemsize, flips, shifts)
    scratch = np.empty(pack.shape, pack.dtype)  # where a flipped record is read to (this generator's own)

    def read(job: Tuple[int, slice]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        part = job[1]
        return read_batch(pack, epoch, part, (layout, flips[part], shifts[part], moves[part], pattern, scratch))

    return read


def read_batch(pack, epoch: Epoch, part: slice, online=None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The tensors, labels and split indices of ``pack``'s ``epoch``'s records ``part``, every header checked.

    ``online``: ``(layout, flips, shifts, moves, pattern, scratch)`` of these
    records, done during the read (see :class:`~edgeaug.device.online_read.OnlineBatch`).
    """
    reader, idx, recs = pack._reader, epoch.order[part], epoch.recs[part]
    moves = None if online is None else online[3]
    if reader.compressed:  # no zero-copy path: every record is decoded into the batch buffer
        with pack._spare_lock:
            x = reusable(pack._spare, (len(idx),) + pack.shape, pack.dtype)
        batch = None if online is None else OnlineBatch(x, *online)
        fill_decoded(reader, x, recs, pack.layout, moves, batch and batch.dest, batch and batch.finish)
    elif reader.mode == "mmap" and reader.small:
        x = reader.gather(recs, moves, epoch.starts[part], checked=True)
        x = x.view(pack.dtype).reshape((len(idx),) + pack.shape)
        if online is not None:
            OnlineBatch(x, *online).finish_all()
    else:
        with pack._spare_lock:
            x = reusable(pack._spare, (len(idx),) + pack.shape, pack.dtype)
        # pread checks every header it reads; the mapping's were checked for the whole epoch.
        fill = reader.fill_pread if reader.mode == "pread" else partial(reader.fill_mapped, checked=True)
        if online is None:
            fill(x, recs)
        else:
            batch = OnlineBatch(x, *online)
            fill(x, recs, moves, batch.dest, batch.finish)
    return x, epoch.labels[part], idx


def plain_read(pack, epoch: Epoch, job: Tuple[int, slice]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reads a ``(start, part)`` job of ``epoch`` as stored (no online augmentation)."""
    return read_batch(pack, epoch, job[1])
