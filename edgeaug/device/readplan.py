"""Where a pack's records lie in its file, and which batch reader suits it: shared by the backends and readers.

:class:`RecordTable` is what the open-time walk of the B-tree found (every
record's offset, size and overflow page); :func:`choose_reader` picks the batch
reader (``pread`` or ``mmap``, see :mod:`.batchread`) from the file size, the
memory the page cache can hold, and the word size.
"""

from __future__ import annotations

import os
import struct
from array import array
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from .format import RECORD_PREFIX, FormatError, record_number  # bundle: drop
from .lmdbpure import PureEnvironment  # bundle: drop


class PackError(FormatError):
    """The pack cannot be used: truncated, incomplete, tampered or another version."""


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
