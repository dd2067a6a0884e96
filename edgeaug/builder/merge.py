"""The writing process's side of the pack: chunks merged into ``OUT.tmp``, then sealed.

Stateless calls (:func:`merge_chunk`, :func:`seal`, :func:`close`) that run in
the writer process (or inline in a one-process build), in plan order.  What
they keep between calls is per process and per ``OUT.tmp``: its open LMDB
environment, its background flush, the chunk read buffer.  ``OUT.tmp`` is
always written from its start by one environment in one process (never
resumed), so the page buffers LMDB reuses (without clearing them) hold the
same bytes in every build of the same plan: the file's bytes depend only on
the records.  One transaction commits each chunk; there is no sync per commit
(a flush runs behind the merge, one fsync seals).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from edgeaug.builder.chunks import Chunk, ChunkError
from edgeaug.builder.partial import WriteError, kept
from edgeaug.device.format import INDEX_DTYPE, INDEX_KEY, MANIFEST_KEY, RecordHeader, record_key

_ENVS: Dict[str, Any] = {}  # per process: the open environment of each OUT.tmp
_BUF: Dict[str, bytearray] = {}  # per process: the chunk read buffer, reused (no fresh pages per chunk)
# Per process: a thread writing OUT.tmp's committed pages to disk while later chunks are merged, so the
# fsync that seals finds little left to do (a multi-GB pack's fsync at the end can take many seconds).
_FLUSH: Dict[str, threading.Thread] = {}
_FLUSH_ERROR: Dict[str, OSError] = {}


def merge_chunk(
    tmp: str, chunk: str, plan: str, k: int, indices: List[int], keep: List[bool], first: int, limits: tuple
) -> bytes:
    """Put chunk ``k``'s records of the kept sources into ``tmp`` with keys from ``first``; their index rows.

    One transaction; called in plan order, from one process (see ``_ENVS``).
    """

    tasks = [_Index(i) for i in indices]
    try:
        ch = Chunk(Path(chunk), plan, k, tasks, _BUF.get("buf", bytearray()))
    except (ChunkError, OSError, ValueError) as e:
        raise WriteError(f"{chunk}: unusable ({e}); rerun the same command") from None
    _BUF["buf"] = ch.buffer
    if len(ch.records) != len(keep):
        raise WriteError(f"{chunk}: holds {len(ch.records)} sources, the plan {len(keep)}")
    items, rows = [], []
    for values, kept_ in zip(ch.records, keep):
        for value in values if kept_ else ():
            h = RecordHeader(value)
            rows.append((h.source, h.variant, h.split, 0, h.label, np.frombuffer(h.digest, np.uint8)))
            items.append((record_key(first + len(items)), value))
    _commit(tmp, items, limits)
    _flush_behind(tmp)
    return np.array(rows, dtype=INDEX_DTYPE).reshape(-1).tobytes()


def seal(tmp: str, index: bytes, manifest: bytes, limits: tuple) -> None:
    """Add the index and the manifest, then fsync: the pack is complete under its temporary name."""
    _commit(tmp, [(INDEX_KEY, index), (MANIFEST_KEY, manifest)], limits)
    close(tmp)
    try:
        _flushed(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
            _drop_cached(f.fileno())
    except OSError as e:
        raise WriteError(kept(f"cannot write {tmp}: {e.strerror or e}", Path(tmp))) from None


def close(tmp: str) -> None:
    """Close this process's environment of ``tmp``, if open (after its background flush)."""
    env = _ENVS.pop(tmp, None)
    if env is not None:
        env.close()
    _join_flush(tmp)


def release(tmp: str) -> None:
    """Forget ``tmp`` in this process: its environment, flush, and the read buffer (nothing lingers after a build)."""
    close(tmp)
    _FLUSH_ERROR.pop(tmp, None)
    _BUF.clear()


def _flush_behind(tmp: str) -> None:
    """Start an fdatasync of ``tmp`` in the background, unless one is running."""
    t = _FLUSH.get(tmp)
    if t is not None and t.is_alive():
        return
    t = _FLUSH[tmp] = threading.Thread(target=_fdatasync, args=(tmp,), name="edgeaug-flush", daemon=True)
    t.start()


def _fdatasync(tmp: str) -> None:
    try:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            getattr(os, "fdatasync", os.fsync)(fd)
            _drop_cached(fd)
        finally:
            os.close(fd)
    except OSError as e:
        # Kept for seal: a write error is reported once per open file, so the sealing fsync might not see it.
        _FLUSH_ERROR.setdefault(tmp, e)


def _drop_cached(fd: int) -> None:
    """Let the kernel drop the file's pages that are already on disk from the page cache.

    A pack is written once and read later, often on another machine: keeping
    a multi-GB pack cached would evict the workstation's useful pages, and
    the build's next writes reuse the freed pages instead of claiming more
    memory (measured: a 1-worker build's CPU fell 11-15% on this VM).  Advice
    only: pages still dirty stay, and where the call does not exist it is skipped.
    """
    advise = getattr(os, "posix_fadvise", None)
    try:
        if advise is not None:
            advise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass  # advice a file system does not take is no error of the build


def _join_flush(tmp: str) -> None:
    """Wait for the background flush of ``tmp``, if one was started."""
    t = _FLUSH.pop(tmp, None)
    if t is not None:
        t.join()


def _flushed(tmp: str) -> None:
    """Wait for the background flush of ``tmp``; raise the error it met, if any."""
    _join_flush(tmp)
    err = _FLUSH_ERROR.pop(tmp, None)
    if err is not None:
        raise err


def _commit(tmp: str, items: List[tuple], limits: tuple) -> None:
    """One transaction in this process's environment of ``tmp``; grow the map and replay when it is full."""
    import lmdb

    env = _ENVS.get(tmp)
    try:
        if env is None:
            _FLUSH_ERROR.pop(tmp, None)  # a new OUT.tmp: an error of an earlier one in this process is not its
            env = _ENVS[tmp] = lmdb.open(
                tmp, subdir=False, map_size=limits[0], lock=False, sync=False, metasync=False, readahead=False
            )
        while True:
            try:
                with env.begin(write=True) as txn:
                    for k, v in items:
                        # append=True silently drops an out-of-order key: check it.
                        if not txn.put(k, v, append=True):
                            raise WriteError(f"LMDB refused key {k!r} (out of order)")
                return
            except lmdb.MapFullError:
                size, cap = env.info()["map_size"], limits[1]
                if cap and size >= cap:
                    raise WriteError(kept(f"map full at {size} bytes (the maximum map size)", Path(tmp))) from None
                env.set_mapsize(min(size * 2, cap or size * 2))
    except lmdb.Error as e:  # disk full (ENOSPC, EFBIG), I/O errors
        close(tmp)
        raise WriteError(kept(f"cannot write {tmp}: {e}", Path(tmp))) from None
    except BaseException:
        close(tmp)
        raise


class _Index:
    """Just a task's source index, for validating a chunk in the writer."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index
