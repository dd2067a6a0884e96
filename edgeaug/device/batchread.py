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
import queue
import struct
import sys
import threading
import time
from array import array
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from .format import (  # bundle: drop
    FORMAT_VERSION,
    HEADER_SIZE,
    RECORD_HEADER_DTYPE,
    RECORD_MAGIC,
    RECORD_PREFIX,
    FormatError,
    record_number,
)
from .lmdbpure import P_OVERFLOW, PAGEHDRSZ, PureEnvironment  # bundle: drop


class PackError(FormatError):
    """The pack cannot be used: truncated, incomplete, tampered or another version."""


#: What one read puts in front of a tensor: the overflow page header, then the record header.
SLOT_DTYPE = np.dtype(
    [("pgno", "<u8"), ("pad", "<u2"), ("pflags", "<u2"), ("pages", "<u4"), ("head", RECORD_HEADER_DTYPE)]
)
SLOT_SIZE = SLOT_DTYPE.itemsize  # 16 + 64
_PAGE_TYPES = 0x6F  # lmdbpure's page-type bits; P_DIRTY and friends are ignored
_SMALL_RECORD = 64 << 10  # below this, one numpy gather beats per-record copies (scripts/bench_loader.py)
READERS = ("auto", "pread", "mmap")
#: A 32-bit process maps a pack only up to this size (its whole address space is 2-3 GB); larger ones use pread.
MAX_MAP_32BIT = 512 << 20


class RecordTable:
    """Where each record's value lies: offset, size and first overflow page (0: inside its leaf).

    Built by walking the whole tree once; that walk is also the structure
    check that must pass before the native (mmap) LMDB reader touches the file.
    """

    def __init__(self, env: PureEnvironment) -> None:
        # Compact arrays, not lists of ints: a list costs ~36 bytes per number, kept by the allocator.
        keys, offs, sizes, pgnos = array("q"), array("q"), array("q"), array("q")
        n = 0
        for key, off, size, pgno in env.extents():
            n += 1
            r = record_number(key) if key[:1] == RECORD_PREFIX else -1
            if r >= 0:  # other keys (index, manifest) are read through the backend
                keys.append(r)
                offs.append(off)
                sizes.append(size)
                pgnos.append(pgno)
        self.entries = n
        self.keys = np.frombuffer(keys, np.int64)  # strictly increasing: the walk checks key order
        self.offsets = np.frombuffer(offs, np.int64)
        self.sizes = np.frombuffer(sizes, np.int64)
        self.pgnos = np.frombuffer(pgnos, np.int64)
        self.psize = env.stat()["psize"]

    def dense(self, n: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Offsets, sizes and overflow pages of records ``0..n-1``; offset -1 where a record is missing."""
        off, size, pgno = np.full(n, -1, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
        k = self.keys < n
        off[self.keys[k]], size[self.keys[k]], pgno[self.keys[k]] = self.offsets[k], self.sizes[k], self.pgnos[k]
        return off, size, pgno


def _memory_budget() -> Optional[int]:
    """Bytes the page cache can hold for us: min(MemAvailable, this cgroup's memory limit); None if unknown."""
    values = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                values.append(int(line.split()[1]) << 10)
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, ctrls, rel = line.split(":", 2)
            if ctrls == "":  # cgroup v2
                f = Path("/sys/fs/cgroup") / rel.lstrip("/") / "memory.max"
            elif "memory" in ctrls.split(","):
                f = Path("/sys/fs/cgroup/memory") / rel.lstrip("/") / "memory.limit_in_bytes"
            else:
                continue
            text = f.read_text().strip() if f.exists() else "max"
            if text.isdigit():
                values.append(int(text))
    except (OSError, ValueError):
        pass
    return min(values) if values else None


def choose_reader(file_size: int, wanted: str = "auto") -> str:
    """``pread`` or ``mmap`` for a pack of ``file_size`` bytes in this process."""
    if wanted not in READERS:
        raise ValueError(f"reader must be one of {READERS}, got {wanted!r}")
    if wanted != "auto":
        return wanted
    if not hasattr(os, "preadv"):
        return "mmap"
    budget = _memory_budget()
    # mmap pays one card read per 4 KB page fault when the pack does not stay cached: only when it fits easily.
    fits = budget is not None and file_size <= budget * 3 // 4
    if struct.calcsize("P") < 8:  # a 32-bit process: only what its address space holds easily
        fits = fits and file_size <= MAX_MAP_32BIT
    return "mmap" if fits else "pread"


class BatchReader:
    """Fills batches with the tensors of records, by record index into the whole pack.

    ``expect`` holds, per record, the source, variant and split its header must
    carry (from the fingerprinted index); ``nbytes`` is the target's tensor size.
    """

    def __init__(self, path: str, table: RecordTable, records: int, nbytes: int, expect, mode: str) -> None:
        self.path, self.nbytes, self.mode, self.psize = path, nbytes, mode, table.psize
        self.off, self.size, self.pgno = table.dense(records)
        self._toff = self.off + HEADER_SIZE  # where each tensor starts
        self.need = (PAGEHDRSZ - 1 + self.size) // self.psize + 1  # OVPAGES()
        self.expect = expect
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        self._checked = np.zeros(records, bool)  # mmap: headers already validated
        self._unchecked = records
        self._mm = None
        try:
            self.file_size = os.fstat(self._fd).st_size
            # Each record's tensor must lie inside its value and the value inside the file.
            self._fits = (self.off >= 0) & (self.size >= HEADER_SIZE + nbytes)
            self._fits &= self.off + self.size <= self.file_size
            if mode == "pread" and hasattr(os, "posix_fadvise"):  # a shuffle uses none of the kernel's readahead
                os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_RANDOM)
            if mode == "mmap":
                self._map()
        except BaseException:
            self.close()
            raise

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
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

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
            ("format version", (h["version"] != FORMAT_VERSION) | (h["header_size"] != HEADER_SIZE)),
            ("tensor size", h["tensor_nbytes"] != self.nbytes),
            (
                "section sizes",
                HEADER_SIZE + h["tensor_nbytes"].astype(np.int64) + h["labels_nbytes"] + h["params_nbytes"] != size,
            ),
            ("source", h["source"] != src[recs]),
            ("variant", h["variant"] != var[recs]),
            ("split", (h["split"] != split[recs]) | (h["reserved"] != 0)),
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
        (:class:`edgeaug.device.online.OnlineBatch` fills them).  ``dest``
        (optional): per record, the writable buffer its tensor goes to instead
        of its row of ``x``.  ``then(j)`` (optional) runs right after record
        ``j``'s read, while its bytes are in cache; the headers are checked
        after all reads, before the batch is returned.
        """
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


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    """``np.unique`` for an integer array without its first-call cost (it imports numpy.ma: ~16 ms)."""
    a = np.sort(a)
    return a[np.concatenate(([True], a[1:] != a[:-1]))] if len(a) else a


def prefetched(jobs: Iterable, fill: Callable, depth: int = 1) -> Iterator:
    """``fill(job)`` for each job on a background thread, ``depth`` results ahead; yields them in order.

    The reads release the GIL, so the next batch is read while the caller's
    model runs.  An exception in ``fill`` is raised here, at the batch it
    belongs to.  Closing the generator stops the thread before returning.
    """
    q: "queue.Queue" = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for job in jobs:
                if stop.is_set() or not put((fill(job), None)):
                    return
            put((done, None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            put((None, e))

    t = threading.Thread(target=work, name="edgeaug-prefetch", daemon=True)
    t.start()
    try:
        while True:
            item, err = q.get()
            if err is not None:
                raise err
            if item is done:
                return
            yield item
            item = None
    finally:
        stop.set()
        t.join()


def prefetched_when_useful(
    jobs: Iterable, fill: Callable, clock: Callable[[], float] = time.perf_counter, share: float = 0.25, probe: int = 3
) -> Iterator:
    """``fill(job)`` for each job, in order: on this thread while the caller is quick, then on a background one.

    A background thread costs a queue hand-off per batch (10-30% of a mapped
    read when the caller does nothing with the batches), and saves the whole
    read when the caller's own work (a model step that releases the GIL) is
    as long.  So batches are read here until ``probe`` of them show the
    caller spending more than ``share`` of the read time between batches;
    the rest go through :func:`prefetched`.  Only the speed depends on the
    timing: the batches and their order are the same either way.
    """
    it = iter(jobs)
    reading = waiting = 0.0
    for k, job in enumerate(it):
        t0 = clock()
        item = fill(job)
        t1 = clock()
        yield item
        item = None
        reading, waiting = reading + (t1 - t0), waiting + (clock() - t1)
        if k + 1 >= probe and waiting > share * reading:
            yield from prefetched(it, fill)
            return


def reusable(spare: List[np.ndarray], shape: Tuple[int, ...], dtype: np.dtype, keep: int = 5) -> np.ndarray:
    """A batch array: a recycled one if nobody else holds it any more, else a new one.

    A fresh multi-megabyte ``np.empty`` per batch can cost as much as the copy
    itself (page faults, depending on the allocator's state).  Arrays the
    caller (or a view, a queue, a session) still references are never
    recycled: ``sys.getrefcount`` is 2 only for the ``spare`` list's reference
    plus the call's own argument (a view the caller holds references its
    base).  A shorter batch (an epoch's last) is the front of a free full one.
    ``keep`` bounds the list: the caller's batch, the one before, one queued,
    one being filled.
    """
    for k in range(len(spare)):
        fits = spare[k].shape[1:] == shape[1:] and spare[k].shape[0] >= shape[0] and spare[k].dtype == dtype
        if fits and sys.getrefcount(spare[k]) == 2:
            spare.append(spare.pop(k))
            # A short (last) batch is the front of a full one: no new buffer to fault in.
            return spare[-1] if spare[-1].shape[0] == shape[0] else spare[-1][: shape[0]]
    spare.append(np.empty(shape, dtype))
    if len(spare) > keep:
        spare.pop(0)
    return spare[-1]
