"""Chunks: runs of consecutive planned sources, the unit of work of every executor.

The plan is cut into chunks of about :data:`CHUNK_RECORDS` records, a pure
function of the plan, so the chunks (and therefore the pack) never depend on
the worker count, the executor or the number of shards.  Whoever renders a
chunk (a local worker process, a Dask worker via its client, a shard on
another machine) writes one chunk file into the partial build folder
``OUT.partial/``: the records of its sources in plan order, and what the
manifest needs about each source (:meth:`SourceResult.meta`).

A chunk file is written under a temporary name and renamed when complete, and
its trailer repeats its length and a sha256 of its header and metadata, so a
half-written chunk (a killed process, a torn copy on a shared folder) is never
used: it is rendered again.

Layout::

    b"EDGEAUGC" | u32 version | u32 0 | u64 metadata length | metadata JSON
    | records ... | sha256(everything before the records) | u64 file length | b"EDGEAUGE"

The metadata: ``{"plan": fingerprint, "chunk": k, "results": [meta, ...],
"sizes": [[record bytes, ...] per source]}``.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from edgeaug.builder.plan import SourceResult, Task
from edgeaug.device.format import canonical_json

#: At most this many records, and about this many bytes, per chunk: part of the plan, never tuned per machine.
CHUNK_RECORDS = 64
CHUNK_BYTES = 16 << 20
CHUNK_VERSION = 1
_HEAD = struct.Struct("<8sIIQ")
_TAIL = struct.Struct("<32sQ8s")
_MAGIC, _END = b"EDGEAUGC", b"EDGEAUGE"


class ChunkError(ValueError):
    """A chunk file is incomplete or not of this plan; the message says why."""


def chunk_ranges(tasks: Sequence[Task], record_bytes: int) -> List[Tuple[int, int]]:
    """``[(start, stop), ...]`` task index ranges: whole sources, about one chunk's records each.

    ``record_bytes`` (the target's tensor size) bounds a chunk's bytes, so memory stays flat for big tensors.
    """
    per = max(1, min(CHUNK_RECORDS, CHUNK_BYTES // max(1, record_bytes)))
    out, start, n = [], 0, 0
    for i, t in enumerate(tasks):
        n += len(t.variants)
        if n >= per:
            out.append((start, i + 1))
            start, n = i + 1, 0
    if start < len(tasks):
        out.append((start, len(tasks)))
    return out


def chunk_path(folder: Path, k: int) -> Path:
    return folder / f"chunk-{k:08d}.bin"


def encode(plan: str, k: int, results: Sequence[SourceResult]) -> List[bytes]:
    """A chunk file's content as a list of buffers (records are not copied)."""
    meta = canonical_json(
        {
            "plan": plan,
            "chunk": k,
            "results": [r.meta() for r in results],
            "sizes": [[len(v) for v in r.records] for r in results],
        }
    )
    head = _HEAD.pack(_MAGIC, CHUNK_VERSION, 0, len(meta)) + meta
    size = len(head) + sum(len(v) for r in results for v in r.records) + _TAIL.size
    tail = _TAIL.pack(hashlib.sha256(head).digest(), size, _END)
    return [head, *(v for r in results for v in r.records), tail]


def write(folder: Path, k: int, parts: Sequence[bytes]) -> Path:
    """Write a chunk file atomically: a temporary name unique to this host and process, then rename."""
    path = chunk_path(folder, k)
    tmp = path.with_name(f"{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.writelines(parts)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    return path


class Chunk:
    """A validated chunk file: ``results`` (its sources' metadata) and, when read, each source's records.

    ``buf``: read the records into this buffer (a larger one is made when it
    is too small: reuse ``self.buffer`` for the next chunk); None: metadata only.
    """

    def __init__(self, path: Path, plan: str, k: int, tasks: Sequence[Task], buf: Optional[bytearray] = None) -> None:
        self.path, self.buffer = path, buf
        self.records: List[List[memoryview]] = []
        with open(path, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            if size < _HEAD.size + _TAIL.size:
                raise ChunkError(f"{path.name}: {size} bytes is too short")
            body = self._parse(f.fileno(), size, plan, k, tasks)
            if buf is not None:
                self._read(f.fileno(), body, size - _TAIL.size - body)

    def _parse(self, fd: int, size: int, plan: str, k: int, tasks: Sequence[Task]) -> int:
        magic, version, _, meta_len = _HEAD.unpack(os.pread(fd, _HEAD.size, 0))
        digest, length, end = _TAIL.unpack(os.pread(fd, _TAIL.size, size - _TAIL.size))
        if magic != _MAGIC or end != _END or version != CHUNK_VERSION:
            raise ChunkError(f"{self.path.name}: not a complete version-{CHUNK_VERSION} chunk file")
        body = _HEAD.size + meta_len
        if length != size or body > size - _TAIL.size:
            raise ChunkError(f"{self.path.name}: {size} bytes, its trailer says {length}")
        head = os.pread(fd, body, 0)
        if len(head) != body or hashlib.sha256(head).digest() != digest:
            raise ChunkError(f"{self.path.name}: metadata checksum mismatch")
        meta = json.loads(head[_HEAD.size :])
        if meta.get("plan") != plan or meta.get("chunk") != k:
            raise ChunkError(f"{self.path.name}: made for another plan or chunk")
        self.results = [SourceResult.from_meta(m) for m in meta["results"]]
        if [r.index for r in self.results] != [t.index for t in tasks]:
            raise ChunkError(f"{self.path.name}: holds other sources than the plan's chunk {k}")
        self.sizes = meta["sizes"]
        if len(self.sizes) != len(self.results) or sum(map(sum, self.sizes)) != size - _TAIL.size - body:
            raise ChunkError(f"{self.path.name}: record sizes do not add up to the file's")
        return body

    def _read(self, fd: int, offset: int, n: int) -> None:
        if self.buffer is None or len(self.buffer) < n:
            self.buffer = bytearray(max(n, 1 << 20))
        view = memoryview(self.buffer)[:n]
        got = 0
        while got < n:  # a plain file gives it all at once; be safe with other file systems
            m = os.preadv(fd, [view[got:]], offset + got)
            if m <= 0:
                raise ChunkError(f"{self.path.name}: shorter than it was a moment ago")
            got += m
        pos = 0
        for sizes in self.sizes:
            values = []
            for size in sizes:
                values.append(view[pos : pos + size])
                pos += size
            self.records.append(values)
