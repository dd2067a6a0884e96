"""Batch reads at file offsets: one walk of the B-tree at open, then plain copies per batch.

The open-time walk (:meth:`PureEnvironment.extents`, bounds-checked) records
where every record's value lies in the file.  A batch then needs no B-tree
lookups, and each record is one read of its page header, record header and
tensor, straight into the batch buffer.  Two ways to do that read, chosen per
regime when the pack is opened (measured in ``scripts/bench_device.py`` and
``scripts/bench_loader.py``):

``pread``  one ``os.preadv`` per record, sorted by offset, with
           ``POSIX_FADV_RANDOM`` so the kernel reads exactly the record.  For
           packs larger than memory (most of an epoch comes from the card),
           and in 32-bit processes for packs over :data:`MAX_MAP_32BIT`.  A
           short read is an error, never a signal; the GIL is released during
           the read, so a thread can prefetch.
``mmap``   copies out of a read-only mapping when the pack fits in the page
           cache: per-record copies into a recycled buffer for large tensors,
           one numpy gather for small ones, where per-record Python work would
           dominate.  Headers are checked once per record (a bitmap), not on
           every epoch.

Every header read is checked against what the walk and the index say: the
overflow page's number, type and length, the record's magic, version, sizes
and ids.  A mismatch raises :class:`PackError` naming the record and the field.
"""

from __future__ import annotations

import mmap
import os
from typing import Optional

import numpy as np

from .format import (  # bundle: drop
    FORMAT_VERSION,
    HEADER_SIZE,
    RECORD_HEADER_DTYPE,
    RECORD_MAGIC,
)
from .lmdblayout import P_OVERFLOW, PAGEHDRSZ  # bundle: drop
from .readplan import PackError, RecordTable  # bundle: drop

#: What one read puts in front of a tensor: the overflow page header, then the record header.
SLOT_DTYPE = np.dtype(
    [("pgno", "<u8"), ("pad", "<u2"), ("pflags", "<u2"), ("pages", "<u4"), ("head", RECORD_HEADER_DTYPE)]
)
SLOT_SIZE = SLOT_DTYPE.itemsize  # 16 + 64
_PAGE_TYPES = 0x6F  # lmdbpure's page-type bits; P_DIRTY and friends are ignored
_SMALL_RECORD = 64 << 10  # below this, one numpy gather beats per-record copies (scripts/bench_loader.py)


class BatchReader:
    """Fills batches with the tensors of records, by record index into the whole pack.

    ``file`` is the open pack (a backend: ``path``, ``fd``, ``size``); reads go
    through its descriptor, so they read the file the backend opened even if
    another file has been renamed over its path since.  The descriptor stays
    the backend's.  ``expect`` holds, per record, the source, variant and split
    its header must carry (from the fingerprinted index); ``nbytes`` is the
    target's tensor size.
    """

    def __init__(
        self, file, table: RecordTable, records: int, nbytes: int, expect, mode: str, compressed: bool = False
    ) -> None:
        self.path, self.nbytes, self.mode, self.psize = file.path, nbytes, mode, table.psize
        self.compressed = compressed  # records decode (edgeaug.device.decodedread) instead of being copied
        self.off, self.size, self.pgno = table.dense(records)
        self._toff = self.off + HEADER_SIZE  # where each tensor starts
        self.need = (PAGEHDRSZ - 1 + self.size) // self.psize + 1  # OVPAGES()
        self.expect = expect
        self._fd: Optional[int] = file.fd
        self._checked = np.zeros(records, bool)  # mmap: headers already validated
        self._unchecked = records
        self._mm = None
        self.file_size = file.size
        # Each record's tensor must lie inside its value and the value inside the file.
        self._fits = (self.off >= 0) & (self.size >= HEADER_SIZE + (1 if compressed else nbytes))
        self._fits &= self.off + self.size <= self.file_size
        if mode == "pread" and hasattr(os, "posix_fadvise"):  # a shuffle uses none of the kernel's readahead
            os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_RANDOM)
        if mode == "mmap":
            self._map()

    def _map(self) -> None:
        # No MADV_RANDOM: this regime has the pack in the page cache, where the kernel's fault-around
        # maps 16 cached pages per fault and halves the first pass's cost.
        self._mm = mmap.mmap(self._fd, self.file_size, access=mmap.ACCESS_READ)
        self._u8 = u8 = np.frombuffer(self._mm, np.uint8)
        self._rows, self._slots = _Rows(u8, self.nbytes), _Rows(u8, SLOT_SIZE)

    def close(self) -> None:
        if self._mm is not None:
            self._rows = self._slots = self._u8 = None
            try:
                self._mm.close()
            except BufferError:  # a batch view still exports it: the mapping goes with the last view
                pass
            self._mm = None
        self._fd = None  # the backend's: it closes it

    # --- checks ---------------------------------------------------------------------------------

    def _usable(self, recs: np.ndarray) -> None:
        if not self._fits[recs].all():
            r = int(recs[np.argmin(self._fits[recs])])
            if self.off[r] < 0:
                raise PackError(f"{self.path}: record {r} is missing")
            raise PackError(
                f"{self.path}: record {r}: value of {int(self.size[r])} bytes cannot hold a "
                f"{HEADER_SIZE}-byte header and a {self.nbytes}-byte tensor"
            )

    def _raw(self) -> None:
        """The copying paths read tensors as stored: a compressed pack's go through decodedread.fill_decoded."""
        if self.compressed:
            raise PackError(f"{self.path}: compressed records are decoded, not copied (decodedread.fill_decoded)")

    def check(self, slots: np.ndarray, recs: np.ndarray) -> None:
        """Page and record headers of ``recs`` (as read into ``slots``) against the walk and the index."""
        h, ov = slots["head"], self.pgno[recs] != 0
        src, var, split = self.expect
        size = self.size[recs]
        tests = (
            ("overflow page number", ov & (slots["pgno"] != self.pgno[recs].astype(np.uint64))),
            ("overflow page type", ov & ((slots["pflags"] & _PAGE_TYPES) != P_OVERFLOW)),
            ("overflow page count", ov & (slots["pages"] < self.need[recs])),
            ("magic", h["magic"] != RECORD_MAGIC),
            # versions 1..FORMAT_VERSION (a u2: version 0 - 1 wraps to 65535)
            ("format version", (h["version"] - 1 >= FORMAT_VERSION) | (h["header_size"] != HEADER_SIZE)),
            ("tensor size", h["tensor_nbytes"] != self.nbytes),
            ("section sizes", _stored_size_bad(h, size)),
            ("source", h["source"] != src[recs]),
            ("variant", h["variant"] != var[recs]),
            ("split", h["split"] != split[recs]),
            ("codec", _method_bad(h["method"], h["version"])),
        )
        for what, bad in tests:
            if bad.any():
                r = int(recs[np.argmax(bad)])
                raise PackError(f"{self.path}: record {r}: {what} in its header does not match the pack")

    # --- pread ----------------------------------------------------------------------------------

    def fill_pread(self, x: np.ndarray, recs: np.ndarray, moves=None, dest=None, then=None) -> np.ndarray:
        """One ``preadv`` per record (in file order): page header, record header and tensor into place.

        ``moves`` (optional, bytes per record, ``|move| < nbytes``) reads each
        tensor moved within its row, memmove-style: ``row[m:] = tensor[:-m]``
        (``m > 0``) or ``row[:m] = tensor[-m:]``; the bytes moved out go to a
        scratch iovec, so every read is still the whole value prefix, checked
        for length, and the row bytes not written are left for the caller
        (:class:`edgeaug.device.online_read.OnlineBatch` fills them).  ``dest``
        (optional): per record, the writable buffer its tensor goes to instead
        of its row of ``x``.  ``then(j)`` (optional) runs right after record
        ``j``'s read, while its bytes are in cache; the headers are checked
        after all reads, before the batch is returned.
        """
        self._raw()
        self._usable(recs)
        b, nb, fd = len(recs), self.nbytes, self._fd
        slots = np.zeros(b, SLOT_DTYPE)
        srows = slots.view(np.uint8).reshape(b, SLOT_SIZE)
        rows = x.reshape(b, -1).view(np.uint8) if dest is None else dest
        shifted = self._moves(moves, b)
        spare = memoryview(bytearray(max((abs(m) for m in shifted), default=0)))
        off, pgno = self.off[recs], self.pgno[recs]
        for j in np.argsort(off, kind="stable").tolist():
            head = memoryview(srows[j]) if pgno[j] else memoryview(srows[j])[PAGEHDRSZ:]
            at = int(off[j]) - (PAGEHDRSZ if pgno[j] else 0)
            want = len(head) + nb
            row, m = memoryview(rows[j]).cast("B"), shifted[j] if shifted else 0
            iov = [head, row] if not m else [head, row[m:], spare[:m]] if m > 0 else [head, spare[:-m], row[: nb + m]]
            try:
                got = os.preadv(fd, iov, at)
            except OSError as e:
                raise PackError(f"{self.path}: record {int(recs[j])}: read failed: {e.strerror or e}") from None
            if got != want:
                raise PackError(f"{self.path}: record {int(recs[j])}: short read, {got} of {want} bytes at {at}")
            if then is not None:
                then(j)
        self.check(slots, recs)
        return x

    def _moves(self, moves, b: int) -> list:
        if moves is None:
            return []
        m = np.asarray(moves, np.int64)
        if m.shape != (b,) or (len(m) and int(np.abs(m).max()) >= self.nbytes):
            raise ValueError(f"moves must be {b} byte offsets smaller than the {self.nbytes}-byte tensor")
        return m.tolist()

    # --- mmap -----------------------------------------------------------------------------------

    def precheck(self, recs: np.ndarray, chunk: int = 8192) -> None:
        """mmap: validate the headers of ``recs`` not validated yet, in large vectorized steps.

        Called with a whole epoch's records, so a batch rarely pays a check of
        its own; each record is checked once per open pack, not every epoch.
        """
        self._still_whole()
        if self._unchecked == 0:
            return
        todo = _sorted_unique(recs[~self._checked[recs]])  # sorted: file order for compacted packs
        for b in range(0, len(todo), chunk):
            self._check_headers(todo[b : b + chunk])

    def _still_whole(self) -> None:
        """Refuse to touch the mapping of a file that shrank: a read past its new end would be SIGBUS.

        (A file truncated by another process between this check and the copy
        can still raise SIGBUS, as with any mmap reader, py-lmdb included.)
        """
        # lseek to the end gives the size without building a stat result (a third of the cost per batch).
        if os.lseek(self._fd, 0, os.SEEK_END) < self.file_size:
            raise PackError(f"{self.path}: the file shrank while open (was {self.file_size} bytes)")

    def _check_headers(self, todo: np.ndarray) -> None:
        self._usable(todo)
        # The 16 bytes before a value: its overflow page header (inline values: leaf bytes, not checked).
        slots = self._slots.take(self.off[todo] - PAGEHDRSZ).view(SLOT_DTYPE)[:, 0]
        self.check(slots, todo)
        self._unchecked -= len(todo) - int(self._checked[todo].sum())
        self._checked[todo] = True

    def _check_mapped(self, recs: np.ndarray, checked: bool = False) -> None:
        """Validate headers of records not seen yet (once per record), and that the file kept its size."""
        self._still_whole()
        if self._unchecked and not checked:
            todo = _sorted_unique(recs[~self._checked[recs]])
            if len(todo):
                self._check_headers(todo)

    def offsets(self, recs: np.ndarray) -> np.ndarray:
        """File offsets of the tensors of ``recs`` (valid records: see :meth:`precheck`)."""
        return self._toff[recs]

    def gather(self, recs: np.ndarray, moves=None, starts=None, checked: bool = False) -> np.ndarray:
        """Small tensors: one numpy gather from the mapping into a new (len(recs), nbytes) uint8 array.

        With ``moves`` (see :meth:`fill_pread`), each row is gathered from
        ``move`` bytes before its tensor, which moves it at no extra cost (the
        bytes from outside the tensor land where the caller fills a border).
        ``starts``: ``offsets(recs)``, if the caller has them; ``checked``: the
        caller ran :meth:`precheck` on ``recs`` (the file size is still checked).
        """
        self._raw()
        self._check_mapped(recs, checked)
        starts = self._toff[recs] if starts is None else starts
        if moves is None:
            return self._rows.take(starts)
        shifted = self._moves(moves, len(recs))
        at = starts - np.asarray(shifted, np.int64)
        inside = (at >= 0) & (at <= self.file_size - self.nbytes)
        out = self._rows.take(np.where(inside, at, starts))
        for j in np.flatnonzero(~inside).tolist():  # near the file's ends: the tensor, moved within its row
            row, m = memoryview(out[j]), shifted[j]
            if m > 0:
                row[m:] = row[: self.nbytes - m]
            else:
                row[: self.nbytes + m] = row[-m:]
        return out

    def fill_mapped(
        self, x: np.ndarray, recs: np.ndarray, moves=None, dest=None, then=None, checked: bool = False
    ) -> np.ndarray:
        """Large tensors: one copy per record from the mapping into the batch buffer, in file order.

        ``moves``, ``dest`` and ``then`` as in :meth:`fill_pread` (headers are
        checked before the copies); ``checked`` as in :meth:`gather`.
        """
        self._raw()
        self._check_mapped(recs, checked)
        nb = self.nbytes
        rows = x.reshape(len(recs), -1).view(np.uint8) if dest is None else dest
        mapped = self._rows.view
        if moves is None and dest is None and then is None and mapped is not None:  # the fewest steps per record
            starts = self._toff[recs]
            for j in np.argsort(starts, kind="stable").tolist():
                rows[j] = mapped[starts[j]]
            return x
        shifted = self._moves(moves, len(recs)) or [0] * len(recs)
        starts, u8 = self._toff[recs].tolist(), self._u8
        for j in np.argsort(starts, kind="stable").tolist():
            s, m = starts[j], shifted[j]
            if m >= 0:
                rows[j][m:] = u8[s : s + nb - m]
            else:
                rows[j][: nb + m] = u8[s - m : s + nb]
            if then is not None:
                then(j)
        return x

    @property
    def small(self) -> bool:
        return self.nbytes < _SMALL_RECORD


class _Rows:
    """Rows of ``width`` bytes that start at any byte offset of a mapping; ``take(starts)`` gathers them.

    64-bit: one strided view (row o is the bytes from o; indexing checks o
    against its shape), so a gather is one numpy call.  A 32-bit process
    cannot make that view (its nominal size, offsets x width, exceeds what
    numpy can address there), so rows are copied one slice at a time.
    """

    def __init__(self, u8: np.ndarray, width: int) -> None:
        self.u8, self.width = u8, width
        try:
            self.view: Optional[np.ndarray] = np.lib.stride_tricks.as_strided(
                u8, (u8.size - width + 1, width), (1, 1), writeable=False
            )
        except ValueError:
            self.view = None

    def take(self, starts: np.ndarray) -> np.ndarray:
        """A new (len(starts), width) uint8 array; a start outside the mapping raises IndexError."""
        if self.view is not None:
            return self.view[starts]
        if len(starts) and (int(starts.min()) < 0 or int(starts.max()) > self.u8.size - self.width):
            raise IndexError("a row starts outside the mapped file")
        out = np.empty((len(starts), self.width), np.uint8)
        for j, s in enumerate(starts.tolist()):
            out[j] = self.u8[s : s + self.width]
        return out


def _stored_size_bad(h: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Raw records: sections sum to the value; compressed ones store 1..nbytes-1 tensor bytes."""
    stored = size.astype(np.int64) - HEADER_SIZE - h["labels_nbytes"] - h["params_nbytes"]
    nb = h["tensor_nbytes"].astype(np.int64)
    return np.where(h["method"] == 0, stored != nb, (stored <= 0) | (stored >= nb))


def _method_bad(method: np.ndarray, version: np.ndarray) -> np.ndarray:
    """A method byte :func:`edgeaug.device.codec.split_method` would refuse (or any but 0 in version 1)."""
    codec, filters = method & 0x0F, method >> 4
    return (codec > 2) | (filters > 7) | ((codec == 0) & (filters != 0)) | ((version == 1) & (method != 0))


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    """``np.unique`` for an integer array without its first-call cost (it imports numpy.ma: ~16 ms)."""
    a = np.sort(a)
    return a[np.concatenate(([True], a[1:] != a[:-1]))] if len(a) else a
