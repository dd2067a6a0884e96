"""How single records and the manifest are read: py-lmdb (native, 64-bit) or the pure-Python reader.

Both open read-only with no lock file, and both first walk the whole B-tree
with the bounds-checking pure reader (:mod:`.lmdbpure`), which also records
where each record lies in the file (:class:`.readplan.RecordTable`, what the
batch reader uses).  A file that does not hold every page its meta page claims,
or whose tree is damaged, is a :class:`PackError` before liblmdb reads
anything, since liblmdb trusts node offsets and would read past the mapping
(SIGBUS).  lmdb is optional: without it, the pure reader serves.

Packs of one file share its backend and its open file descriptor (py-lmdb
allows one environment per file per process), keyed by the file's identity
(device, inode, size, mtime), never its path: a pack rebuilt at the same path
is another file.  The share is released when its last Pack is closed or
garbage-collected, and the batch reader reads through the same descriptor, so
a Pack serves the file it opened, whole, even after another is renamed over it.
"""

from __future__ import annotations

import os
import stat
import struct
import sys
import threading
import weakref
from typing import Any, Callable, Dict, Optional, Tuple

from .readplan import PackError, RecordTable  # bundle: drop


class _NativeBackend:
    """py-lmdb, read-only, no lock file, one long-lived read transaction.

    ``fd`` is this backend's open file (it closes it): the structure walk and
    the batch reader read through it; liblmdb maps the file by ``path``, which
    must still name the same file once it is open (checked).
    """

    name = "lmdb"

    def __init__(self, path: str, fd: int, size: int) -> None:
        import lmdb

        self.path, self.fd, self.size, self._error = path, fd, size, lmdb.Error
        # readahead=True keeps the kernel's fault-around: first touches of a
        # mapping cost ~2x less (measured); packs usually fit in the page cache.
        self.env = lmdb.open(
            path, subdir=False, readonly=True, lock=False, readahead=True, max_readers=1, max_spare_txns=0
        )
        try:
            if not _same_file(fd, path):
                raise _Replaced(f"{path}: the file was replaced while being opened")
            # Check the file covers every page the database claims before any read.
            need = (self.env.info()["last_pgno"] + 1) * self.env.stat()["psize"]
            if need > size:
                raise PackError(f"{path}: truncated: LMDB needs {need} bytes, file has {size}")
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
            with lmdbpure.PureEnvironment(self.path, readahead=False, fd=self.fd) as pure:
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
        os.close(self.fd)


class _PureBackend:
    """The pure-Python reader; returns copies, works on 32-bit and without lmdb.  Closes ``fd``."""

    name = "pure"

    def __init__(self, path: str, fd: int, size: int) -> None:
        lmdbpure = _pure_module()
        self.path, self.fd, self.size = path, fd, size
        try:
            self.env = lmdbpure.PureEnvironment(path, readahead=False, fd=fd)
            self.table = RecordTable(self.env)
        except (lmdbpure.LmdbFormatError, NotImplementedError, OSError) as e:
            raise PackError(f"{path}: corrupt LMDB structure: {e}") from None

    def get(self, key: bytes):
        try:
            return self.env.get(key)
        except (ValueError, NotImplementedError, OSError) as e:  # LmdbFormatError is a ValueError
            raise PackError(f"{self.path}: corrupt LMDB structure: {e}") from None

    def close(self) -> None:
        self.env.close()
        os.close(self.fd)


class _Replaced(PackError):
    """The path named another file by the time liblmdb opened it."""


def _pure_module():
    """edgeaug.device.lmdbpure, or this module in the single-file bundle (which defines the reader)."""
    lmdbpure = sys.modules.get(__name__)
    if not hasattr(lmdbpure, "PureEnvironment"):
        from . import lmdbpure  # bundle: drop
    return lmdbpure


def _identity(st: os.stat_result) -> Tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _same_file(fd: int, path: str) -> bool:
    try:
        return _identity(os.fstat(fd)) == _identity(os.stat(path))
    except OSError:
        return False


class _Shared:
    """One open file's backend and how many Packs use it."""

    def __init__(self, key: Tuple[Any, ...], db: Any) -> None:
        self.key, self.db, self.users = key, db, 0


_OPEN: Dict[Tuple[Any, ...], _Shared] = {}  # (device, inode, size, mtime, backend name) -> share
_LOCK = threading.RLock()  # re-entrant: a garbage collection inside open_backend may release another share


def open_backend(path: str, backend: str, owner: object) -> Tuple[Any, Callable[[], None]]:
    """Open (or share) the backend of the file at ``path`` for ``owner``: ``(backend, release)``.

    ``release()`` gives ``owner``'s share back (once; later calls do nothing);
    it also runs when ``owner`` is garbage-collected.  The last share to go
    closes the file.  ``backend`` is ``"auto"``, ``"lmdb"`` or ``"pure"``.
    """
    fd, size = _open_file(path)
    ident = _identity(os.fstat(fd))
    try:
        with _LOCK:
            share = _find(ident, backend)
            if share is None:
                share = _Shared(ident, _new_backend(path, fd, size, backend))
                fd = None  # the backend owns it now
                _OPEN[ident + (share.db.name,)] = share
            share.users += 1
    finally:
        if fd is not None:
            os.close(fd)
    release = weakref.finalize(owner, _release, share)
    release.atexit = False  # at exit the OS closes the file; a prefetch thread may still be reading it
    return share.db, release


def _open_file(path: str) -> Tuple[int, int]:
    """A read-only descriptor of the regular, non-empty file at ``path``, and its size."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise PackError(f"{path}: cannot open: {e.strerror or e}") from None
    st = os.fstat(fd)
    problem = "not a regular file" if not stat.S_ISREG(st.st_mode) else "empty file" if st.st_size == 0 else ""
    if problem:
        os.close(fd)
        raise PackError(f"{path}: {problem}")
    return fd, st.st_size


def _find(ident: Tuple[int, ...], backend: str) -> Optional[_Shared]:
    names = ("lmdb", "pure") if backend == "auto" else (backend,)
    for name in names:
        share = _OPEN.get(ident + (name,))
        if share is not None:
            return share
    return None


def _release(share: _Shared) -> None:
    with _LOCK:
        share.users -= 1
        if share.users > 0:
            return
        key = share.key + (share.db.name,)
        if _OPEN.get(key) is share:
            del _OPEN[key]
    share.db.close()


def _new_backend(path: str, fd: int, size: int, backend: str):
    """The backend asked for; ``auto`` takes py-lmdb when it can read the file, else the pure reader."""
    if backend == "pure":
        return _PureBackend(path, fd, size)
    try:
        import lmdb
    except ImportError:
        if backend == "lmdb":
            raise ImportError(
                "backend 'lmdb' needs the lmdb package: install it (apt install python3-lmdb, or "
                "pip install lmdb), or use backend 'pure' or 'auto'"
            ) from None
        return _PureBackend(path, fd, size)
    try:
        return _NativeBackend(path, fd, size)
    except (lmdb.Error, _Replaced) as e:
        # The pure reader serves where liblmdb cannot: 32-bit liblmdb does not read 64-bit page headers,
        # py-lmdb refuses a second environment on a file (or, in some versions, a path) it has open, and
        # the path may name a newer file than ``fd`` by now.
        if backend == "auto" and (isinstance(e, _Replaced) or struct.calcsize("P") == 4 or _native_at(path)):
            return _PureBackend(path, fd, size)
        raise PackError(f"{path}: not a readable LMDB pack: {e}") from None


def _native_at(path: str) -> bool:
    """Whether a py-lmdb environment of this process is open at ``path`` (maybe on an older file)."""
    real = os.path.realpath(path)
    return any(s.db.name == "lmdb" and os.path.realpath(s.db.path) == real for s in list(_OPEN.values()))
