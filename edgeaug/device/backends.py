"""How single records and the manifest are read: py-lmdb (native, 64-bit) or the pure-Python reader.

Both open read-only with no lock file, and both first walk the whole B-tree
with the bounds-checking pure reader (:mod:`.lmdbpure`), which also records
where each record lies in the file (:class:`.batchread.RecordTable`, what the
batch reader uses).  A file that does not hold every page its meta page claims,
or whose tree is damaged, is a :class:`PackError` before liblmdb reads
anything, since liblmdb trusts node offsets and would read past the mapping
(SIGBUS).  lmdb is optional: without it, the pure reader serves.
"""

from __future__ import annotations

import os
import struct
import sys
from typing import Any, Dict, List, Tuple

from .batchread import PackError, RecordTable  # bundle: drop


class _NativeBackend:
    """py-lmdb, read-only, no lock file, one long-lived read transaction."""

    name = "lmdb"

    def __init__(self, path: str, size: int) -> None:
        import lmdb

        self.path, self._error = path, lmdb.Error
        # readahead=True keeps the kernel's fault-around: first touches of a
        # mapping cost ~2x less (measured); packs usually fit in the page cache.
        self.env = lmdb.open(
            path, subdir=False, readonly=True, lock=False, readahead=True, max_readers=1, max_spare_txns=0
        )
        # Check the file covers every page the database claims before any read.
        need = (self.env.info()["last_pgno"] + 1) * self.env.stat()["psize"]
        if need > size:
            self.env.close()
            raise PackError(f"{path}: truncated: LMDB needs {need} bytes, file has {size}")
        try:
            self._check_tree()
        except BaseException:
            self.env.close()
            raise
        self.txn = self.env.begin(buffers=True)

    def _check_tree(self) -> None:
        """Validate the B-tree with the bounds-checking pure reader before any mmap read.

        liblmdb trusts node offsets and value sizes inside pages: a flipped byte
        there would make it read past the end of the file (SIGBUS).  The walk
        reads branch and leaf pages only, about 1/150 of a pack of large records,
        and records where each value lies (the batch reader's table).
        """
        lmdbpure = _pure_module()
        try:
            with lmdbpure.PureEnvironment(self.path, readahead=False) as pure:
                self.table = RecordTable(pure)
                mine = (pure.info()["last_txnid"], pure.info()["last_pgno"], pure.stat()["psize"])
        except (lmdbpure.LmdbFormatError, NotImplementedError, OSError) as e:
            raise PackError(f"{self.path}: corrupt LMDB structure: {e}") from None
        theirs = (self.env.info()["last_txnid"], self.env.info()["last_pgno"], self.env.stat()["psize"])
        if mine != theirs:  # both must read the tree the walk validated
            raise PackError(f"{self.path}: corrupt LMDB meta pages (readers disagree: {mine} vs {theirs})")

    def get(self, key: bytes):
        try:
            return self.txn.get(key)
        except self._error as e:  # e.g. MDB_CORRUPTED, MDB_PAGE_NOTFOUND on a damaged file
            raise PackError(f"{self.path}: corrupt LMDB structure: {e}") from None

    def close(self) -> None:
        self.txn.abort()
        self.env.close()


class _PureBackend:
    """The pure-Python reader; returns copies, works on 32-bit and without lmdb."""

    name = "pure"

    def __init__(self, path: str, size: int) -> None:
        lmdbpure = _pure_module()
        self.path = path
        try:
            self.env = lmdbpure.PureEnvironment(path, readahead=False)
        except (lmdbpure.LmdbFormatError, NotImplementedError, OSError) as e:
            raise PackError(f"{path}: {e}") from None
        try:
            self.table = RecordTable(self.env)
        except (lmdbpure.LmdbFormatError, NotImplementedError, OSError) as e:
            self.env.close()
            raise PackError(f"{path}: corrupt LMDB structure: {e}") from None

    def get(self, key: bytes):
        try:
            return self.env.get(key)
        except (ValueError, NotImplementedError, OSError) as e:  # LmdbFormatError is a ValueError
            raise PackError(f"{self.path}: corrupt LMDB structure: {e}") from None

    def close(self) -> None:
        self.env.close()


def _pure_module():
    """edgeaug.device.lmdbpure, or this module in the single-file bundle (which defines the reader)."""
    lmdbpure = sys.modules.get(__name__)
    if not hasattr(lmdbpure, "PureEnvironment"):
        from . import lmdbpure  # bundle: drop
    return lmdbpure


_OPEN: Dict[Tuple[str, str], List[Any]] = {}  # (realpath, backend) -> [backend, users]


def open_backend(path: str, size: int, backend: str):
    """Open (or share) a backend: py-lmdb allows one environment per file per process."""
    key = (os.path.realpath(path), backend)
    if key in _OPEN:
        _OPEN[key][1] += 1
        return _OPEN[key][0]
    db = _new_backend(path, size, backend)
    _OPEN[key] = [db, 1]
    db.release = lambda: _release(key)
    return db


def _release(key: Tuple[str, str]) -> None:
    entry = _OPEN.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] <= 0:
        del _OPEN[key]
        entry[0].close()


def _new_backend(path: str, size: int, backend: str):
    if backend == "pure":
        return _PureBackend(path, size)
    try:
        import lmdb
    except ImportError:
        if backend == "lmdb":
            raise
        return _PureBackend(path, size)
    try:
        return _NativeBackend(path, size)
    except lmdb.Error as e:
        # 32-bit liblmdb cannot read 64-bit page headers: fall back to the pure reader.
        if backend == "auto" and struct.calcsize("P") == 4:
            return _PureBackend(path, size)
        raise PackError(f"{path}: not a readable LMDB pack: {e}") from None
