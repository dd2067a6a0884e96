"""Pure-Python, read-only reader for LMDB data files (64-bit little-endian, format 0.9).

Fallback for hosts where the native ``lmdb`` package cannot read the packs:
32-bit Raspberry Pi OS (armv7l), whose liblmdb rejects files written on
x86_64/aarch64 with ``MDB_INVALID``, and installs without ``lmdb`` at all.

Only the standard library is used.  The file is read with ``os.pread`` one
page (or one overflow run) at a time and never mapped as a whole, so files
larger than a 32-bit address space work.  Every number taken from the file is
bounds-checked; malformed input raises :class:`LmdbFormatError`.

The file layout and the parsing of single pages are in :mod:`.lmdblayout`.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections import OrderedDict
from typing import Dict, Iterator, Optional, Tuple

from .lmdblayout import (  # bundle: drop
    DB_RECORD,
    F_BIGDATA,
    F_SUBDATA,
    MAX_DEPTH,
    META_END,
    P_INVALID,
    P_OVERFLOW,
    P_TYPES,
    PAGE_HEADER,
    PAGEHDRSZ,
    PSIZE_GUESSES,
    U64,
    DbRecord,
    LmdbFormatError,
    Meta,
    Page,
    as_key,
    check_record,
    check_supported,
    parse_meta,
    parse_page,
)

__all__ = ["LmdbFormatError", "PureDatabase", "PureEnvironment", "open_pure"]

_HAVE_PREAD = hasattr(os, "pread")


class PureDatabase:
    """Handle for a named sub-database, as returned by :meth:`PureEnvironment.open_db`."""

    __slots__ = ("name", "_record", "_env")

    def __init__(self, name: bytes, record: DbRecord, env: "PureEnvironment"):
        self.name, self._record, self._env = name, record, env

    def __repr__(self) -> str:
        return f"PureDatabase({self.name!r}, entries={self._record.entries})"


class PureEnvironment:
    """Read-only view of one LMDB data file (the ``subdir=False`` layout).

    The newest valid meta page is read once at open; the reader sees that
    snapshot.  Page reads go through a small LRU cache, guarded by a lock so
    one environment may be shared between threads.
    """

    def __init__(self, path: str, max_cached_pages: int = 256, readahead: bool = True, fd: Optional[int] = None):
        """Open ``path`` (the data file itself) and validate its meta pages and size.

        ``readahead=False`` asks the kernel not to read ahead of each page
        (``POSIX_FADV_RANDOM``), like py-lmdb's option: lookups and tree walks
        on slow storage then read only the pages they need.  ``fd``: read this
        open descriptor of the file instead of opening ``path`` (which then only
        names it in messages); it stays the caller's to close.
        """
        self.path = os.fspath(path)
        self._fd: Optional[int] = None
        self._owns_fd = fd is None
        self._max_cached = max(0, int(max_cached_pages))
        self._cache: "OrderedDict[int, Page]" = OrderedDict()
        self._dbs: Dict[bytes, PureDatabase] = {}
        self._lock = threading.Lock()
        if fd is None and os.path.isdir(self.path):
            raise LmdbFormatError(f"{self.path} is a directory; pass the data file (subdir=False)")
        self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0)) if fd is None else fd
        try:
            if not readahead and hasattr(os, "posix_fadvise"):
                os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_RANDOM)
            self._file_size = os.fstat(self._fd).st_size
            self._load_meta()
        except BaseException:
            self.close()
            raise

    # -- low-level I/O -----------------------------------------------------

    def _pread(self, offset: int, size: int) -> bytes:
        """Read exactly ``size`` bytes at ``offset`` (loops over short reads)."""
        fd = self._fd
        if fd is None:
            raise ValueError("PureEnvironment is closed")
        chunks, got = [], 0
        while got < size:
            if _HAVE_PREAD:
                chunk = os.pread(fd, size - got, offset + got)
            else:  # e.g. Windows: seek+read must not interleave between threads
                with self._lock:
                    os.lseek(fd, offset + got, os.SEEK_SET)
                    chunk = os.read(fd, size - got)
            if not chunk:
                raise LmdbFormatError(f"{self.path}: unexpected end of file at offset {offset + got}")
            chunks.append(chunk)
            got += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _load_meta(self) -> None:
        if self._file_size < META_END:
            raise LmdbFormatError(
                f"{self.path}: file is {self._file_size} bytes, too small for an LMDB meta page (truncated or empty)"
            )
        m0, why0 = parse_meta(self._pread(0, META_END))
        m1, why1 = None, "not found at any supported page size"
        # Meta 1 sits one page in; if meta 0 is unusable its psize is unknown, so try the usual ones.
        for off in [m0.psize] if m0 else PSIZE_GUESSES:
            if off + META_END > self._file_size:
                why1 = "beyond end of file"
                continue
            cand, why1 = parse_meta(self._pread(off, META_END))
            if cand is not None and cand.psize != off:
                cand, why1 = None, f"page size {cand.psize} does not match its offset {off}"
            if cand is not None:
                m1 = cand
                break
        valid = [m for m in (m0, m1) if m is not None]
        if not valid:
            raise LmdbFormatError(f"{self.path}: no valid meta page (page 0: {why0}; page 1: {why1})")
        # Newest snapshot wins; max() keeps meta 0 on a tie, as LMDB does.
        self._check_meta(max(valid, key=lambda m: m.txnid))

    def _check_meta(self, meta: Meta) -> None:
        need = (meta.last_pgno + 1) * meta.psize
        if meta.last_pgno < 1 or need > self._file_size:
            raise LmdbFormatError(
                f"{self.path}: truncated file: meta (txn {meta.txnid}) needs {meta.last_pgno + 1} "
                f"pages of {meta.psize} bytes = {need} bytes, file has {self._file_size}"
            )
        self._meta, self._psize, self._last_pgno = meta, meta.psize, meta.last_pgno
        check_record(meta.main, "main DB", self._last_pgno)

    # -- pages -----------------------------------------------------------

    def _page(self, pgno: int) -> Page:
        with self._lock:
            page = self._cache.get(pgno)
            if page is not None:
                self._cache.move_to_end(pgno)
                return page
        if not 2 <= pgno <= self._last_pgno:
            raise LmdbFormatError(f"page number {pgno} outside data pages 2..{self._last_pgno}")
        page = parse_page(pgno, self._pread(pgno * self._psize, self._psize), self._psize, self._last_pgno)
        if self._max_cached:
            with self._lock:
                self._cache[pgno] = page
                while len(self._cache) > self._max_cached:
                    self._cache.popitem(last=False)
        return page

    def _value(self, page: Page, idx: int) -> bytes:
        nflags, dsize, doff = page.nodes[idx]
        if not nflags & F_BIGDATA:
            return page.raw[doff : doff + dsize]
        return self._read_overflow(U64.unpack_from(page.raw, doff)[0], dsize)

    def _read_overflow(self, pgno: int, size: int) -> bytes:
        """Return a value stored in an overflow run (header on its first page only)."""
        psize, last = self._psize, self._last_pgno
        need = (PAGEHDRSZ - 1 + size) // psize + 1  # OVPAGES() in mdb.c
        if not 2 <= pgno or pgno + need - 1 > last:
            raise LmdbFormatError(f"overflow value of {size} bytes at page {pgno} runs past page {last}")
        mp_pgno, _pad, flags, lo, up = PAGE_HEADER.unpack(self._pread(pgno * psize, PAGEHDRSZ))
        pages = lo | up << 16  # mp_pages overlays mp_lower/mp_upper
        # An overwrite may reuse a longer run in place, so pages >= need is fine.
        if mp_pgno != pgno or flags & P_TYPES != P_OVERFLOW or not need <= pages <= last - pgno + 1:
            raise LmdbFormatError(
                f"page {pgno}: not a valid overflow page for a {size}-byte value "
                f"(pgno {mp_pgno}, flags 0x{flags:x}, {pages} pages)"
            )
        return self._pread(pgno * psize + PAGEHDRSZ, size)

    # -- tree walking ----------------------------------------------------

    def _descend(self, rec: DbRecord, stack: list, pgno: int, key: Optional[bytes]) -> None:
        """Push ``[page, index]`` pairs from ``pgno`` down to a leaf onto ``stack``.

        ``key`` None takes the leftmost path, else the path to the first key
        >= ``key``.  Every leaf must sit exactly at md_depth, which bounds the
        loop and turns a cyclic child pointer into an error.
        """
        while True:
            page = self._page(pgno)
            at_leaf_level = len(stack) == rec.depth - 1
            if page.is_leaf != at_leaf_level:
                kind = "leaf" if page.is_leaf else "branch"
                raise LmdbFormatError(
                    f"page {pgno}: {kind} page at level {len(stack)} "
                    f"of a depth-{rec.depth} tree (corrupt or cyclic tree)"
                )
            if page.is_leaf:
                stack.append([page, 0 if key is None else bisect.bisect_left(page.keys, key)])
                return
            # Branch key 0 is an implicit minus-infinity: search keys 1..n-1 only.
            idx = 0 if key is None else bisect.bisect_right(page.keys, key, 1) - 1
            stack.append([page, idx])
            pgno = page.nodes[idx]

    def _walk(self, rec: DbRecord, start: Optional[bytes]) -> Iterator[Tuple[Page, int]]:
        """Yield ``(leaf_page, index)`` for each entry in key order, from ``start``."""
        if rec.root == P_INVALID:
            return
        stack: list = []
        self._descend(rec, stack, rec.root, start)
        budget = self._last_pgno + MAX_DEPTH  # a sound tree visits each page once
        prev: Optional[bytes] = None
        while True:
            page, idx = stack[-1]
            if idx < len(page.keys):
                key = page.keys[idx]
                if prev is not None and key <= prev:
                    raise LmdbFormatError(f"page {page.pgno}: keys out of order (corrupt or cyclic tree)")
                prev, stack[-1][1] = key, idx + 1
                yield page, idx
                continue
            # Leaf exhausted: climb to the nearest ancestor with a right sibling.
            stack.pop()
            while stack and stack[-1][1] + 1 >= len(stack[-1][0].keys):
                stack.pop()
            if not stack:
                return
            stack[-1][1] += 1
            depth_before = len(stack)
            self._descend(rec, stack, stack[-1][0].nodes[stack[-1][1]], None)
            budget -= len(stack) - depth_before
            if budget < 0:
                raise LmdbFormatError("tree walk visited more pages than the file holds (cycle)")

    # -- databases -------------------------------------------------------

    def _lookup(self, rec: DbRecord, key: bytes) -> Optional[Tuple[Page, int]]:
        if rec.root == P_INVALID:
            return None
        stack: list = []
        self._descend(rec, stack, rec.root, key)
        page, idx = stack[-1]
        return (page, idx) if idx < len(page.keys) and page.keys[idx] == key else None

    def open_db(self, name: bytes) -> PureDatabase:
        """Return a handle for the named sub-database ``name`` (never creates one).

        Raises KeyError if there is no such database and NotImplementedError
        for dupsort / integer-key / reverse-key databases.
        """
        name = as_key(name)
        handle = self._dbs.get(name)
        if handle is not None:
            return handle
        check_supported(self._meta.main, "main DB")
        hit = self._lookup(self._meta.main, name)
        if hit is None:
            raise KeyError(f"no named database {name!r} in {self.path}")
        page, idx = hit
        nflags, dsize, doff = page.nodes[idx]
        if not nflags & F_SUBDATA or nflags & F_BIGDATA or dsize != DB_RECORD.size:
            raise LmdbFormatError(f"key {name!r} of the main DB is not a named-database record")
        rec = DbRecord(*DB_RECORD.unpack_from(page.raw, doff))
        what = f"database {name!r}"
        check_record(rec, what, self._last_pgno)
        check_supported(rec, what)
        handle = self._dbs[name] = PureDatabase(name, rec, self)
        return handle

    def _resolve(self, db) -> DbRecord:
        if db is None:
            return self._meta.main
        if isinstance(db, PureDatabase):
            if db._env is not self:
                raise ValueError("database handle belongs to another environment")
            return db._record
        return self.open_db(db)._record

    def _readable(self, db) -> DbRecord:
        rec = self._resolve(db)
        if db is None:
            check_supported(rec, "main DB")
        return rec

    # -- public API ------------------------------------------------------

    def get(self, key: bytes, default=None, db=None) -> Optional[bytes]:
        """Return a copy of the value stored under ``key``, or ``default``.

        ``db`` is None (main DB), a sub-database name or an ``open_db`` handle.
        """
        hit = self._lookup(self._readable(db), as_key(key))
        return default if hit is None else self._value(*hit)

    def keys(self, db=None, start: Optional[bytes] = None) -> Iterator[bytes]:
        """Iterate keys in byte order, from the first key >= ``start`` (set_range)."""
        rec, start = self._readable(db), None if start is None else as_key(start)
        return (page.keys[idx] for page, idx in self._walk(rec, start))

    def items(self, db=None, start: Optional[bytes] = None) -> Iterator[Tuple[bytes, bytes]]:
        """Iterate ``(key, value)`` pairs in key order, from the first key >= ``start``."""
        rec, start = self._readable(db), None if start is None else as_key(start)
        return ((page.keys[idx], self._value(page, idx)) for page, idx in self._walk(rec, start))

    def extents(self, db=None, start: Optional[bytes] = None) -> Iterator[Tuple[bytes, int, int, int]]:
        """Yield ``(key, offset, size, overflow_pgno)``: where each value's bytes lie in the file, in key order.

        ``overflow_pgno`` is 0 for a value stored inside its leaf page.  Every
        branch and leaf page on the way is validated and every overflow run is
        checked to end at or before the last page, so ``offset + size`` never
        passes the end of the (size-checked) file.  The overflow page's own
        header is not read here: one read per value would be a card seek each.
        """
        rec, start = self._readable(db), None if start is None else as_key(start)
        psize, last = self._psize, self._last_pgno
        for page, idx in self._walk(rec, start):
            nflags, dsize, doff = page.nodes[idx]
            if not nflags & F_BIGDATA:
                yield page.keys[idx], page.pgno * psize + doff, dsize, 0
                continue
            pgno = U64.unpack_from(page.raw, doff)[0]
            need = (PAGEHDRSZ - 1 + dsize) // psize + 1  # OVPAGES() in mdb.c
            if not 2 <= pgno or pgno + need - 1 > last:
                raise LmdbFormatError(f"page {page.pgno}: {dsize}-byte value at page {pgno} runs past page {last}")
            yield page.keys[idx], pgno * psize + PAGEHDRSZ, dsize, pgno

    def check(self, db=None) -> int:
        """Validate every branch and leaf page and every overflow extent; return the entry count.

        A native (mmap) reader trusts node offsets and value sizes: run this
        first on an untrusted file so damage raises here instead of making the
        native reader read past the end of the file (SIGBUS).
        """
        return sum(1 for _ in self.extents(db))

    def stat(self, db=None) -> dict:
        """Tree statistics with py-lmdb's ``stat()`` keys (main DB by default)."""
        rec = self._resolve(db)
        return {
            "psize": self._psize,
            "depth": rec.depth,
            "branch_pages": rec.branch_pages,
            "leaf_pages": rec.leaf_pages,
            "overflow_pages": rec.overflow_pages,
            "entries": rec.entries,
        }

    def info(self) -> dict:
        """Snapshot information: ``map_size``, ``last_pgno``, ``last_txnid``."""
        meta = self._meta
        return {"map_size": meta.map_size, "last_pgno": meta.last_pgno, "last_txnid": meta.txnid}

    def close(self) -> None:
        """Close the file (unless it was given as ``fd``); further reads raise ValueError.  Safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is not None and self._owns_fd:
            os.close(fd)
        with self._lock:
            self._cache.clear()

    def __enter__(self) -> "PureEnvironment":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_pure(path: str, max_cached_pages: int = 256) -> PureEnvironment:
    """Open an LMDB data file with the pure-Python reader."""
    return PureEnvironment(path, max_cached_pages=max_cached_pages)
