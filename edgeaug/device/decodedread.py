"""Batch reads of a compressed pack: read each value, check its header, decode into the batch buffer.

A compressed tensor cannot be copied (or gathered) from the file as it is,
so both read modes take this path: ``pread`` reads the whole value with one
``preadv`` (page header and record header into a slot, the rest into a
scratch buffer); ``mmap`` decodes straight from the mapping.  All headers of
a batch are checked against the walk and the index (the decoded size, among
them) before anything is decoded, and the codecs decode into the record's
row of the batch; zlib and zstd release the GIL meanwhile, so the prefetch
thread overlaps decoding with the caller's work.  Online moves (the hybrid's
shifts) decode into a scratch tensor and copy moved from there.
"""

from __future__ import annotations

import os

import numpy as np

from .batchread import SLOT_DTYPE, SLOT_SIZE, BatchReader  # bundle: drop
from .codec import CodecError, decode_into  # bundle: drop
from .format import HEADER_SIZE, RECORD_HEADER_DTYPE  # bundle: drop
from .lmdblayout import PAGEHDRSZ  # bundle: drop
from .readplan import PackError  # bundle: drop


def fill_decoded(
    reader: BatchReader, x: np.ndarray, recs: np.ndarray, layout: str, moves=None, dest=None, then=None
) -> np.ndarray:
    """Fill ``x`` (batch, *shape) with the decoded tensors of ``recs``; ``moves``/``dest``/``then`` as in
    :meth:`BatchReader.fill_pread`."""
    reader._usable(recs)
    b = len(recs)
    slots = np.zeros(b, SLOT_DTYPE)
    bodies = _read_values(reader, slots, recs)
    reader.check(slots, recs)  # sizes, codec byte, ids: before any decoding
    head = slots["head"]
    stored = reader.size[recs].astype(np.int64) - HEADER_SIZE - head["labels_nbytes"] - head["params_nbytes"]
    shifted = reader._moves(moves, b)
    scratch = np.empty(x.shape[1:], x.dtype) if (shifted or dest is not None) else None
    nb = reader.nbytes
    for j in range(b):
        out = x[j] if scratch is None else scratch
        r = int(recs[j])
        try:
            decode_into(bodies[j][: int(stored[j])], out, int(head["method"][j]), layout, f"record {r}")
        except CodecError as e:
            raise PackError(f"{reader.path}: {e}") from None
        if scratch is not None:
            row = (x.reshape(b, -1).view(np.uint8)[j] if dest is None else dest[j]).reshape(-1)
            src, m = scratch.reshape(-1).view(np.uint8), shifted[j] if shifted else 0
            if m > 0:
                row[m:] = src[: nb - m]
            elif m < 0:
                row[: nb + m] = src[-m:]
            else:
                row[:] = src
        if then is not None:
            then(j)
    return x


def _read_values(reader: BatchReader, slots: np.ndarray, recs: np.ndarray) -> list:
    """Per record (in file order): its page and record header into ``slots``, the bytes after them returned."""
    srows = slots.view(np.uint8).reshape(len(recs), SLOT_SIZE)
    off, size, pgno = reader.off[recs], reader.size[recs], reader.pgno[recs]
    bodies: list = [None] * len(recs)
    if reader.mode == "mmap":
        reader._still_whole()
        u8 = reader._u8
    for j in np.argsort(off, kind="stable").tolist():
        head = memoryview(srows[j]) if pgno[j] else memoryview(srows[j])[PAGEHDRSZ:]
        at, rest = int(off[j]) - (PAGEHDRSZ if pgno[j] else 0), int(size[j]) - HEADER_SIZE
        if reader.mode == "mmap":
            head[:] = memoryview(u8[at : at + len(head)])
            bodies[j] = memoryview(u8[at + len(head) : at + len(head) + rest])
            continue
        body = bytearray(rest)
        try:
            got = os.preadv(reader._fd, [head, body], at)
        except OSError as e:
            raise PackError(f"{reader.path}: record {int(recs[j])}: read failed: {e.strerror or e}") from None
        if got != len(head) + rest:
            raise PackError(f"{reader.path}: record {int(recs[j])}: short read, {got} of {len(head) + rest} bytes")
        bodies[j] = memoryview(body)
    return bodies


def size_report(reader: BatchReader, records: int) -> dict:
    """The pack's record values against the same records with raw tensors, in bytes.

    ``raw_record_bytes`` is what the values would take uncompressed: each value's
    size with its stored tensor replaced by the tensor's ``nbytes`` (header,
    labels and params stay as they are).  A compressed pack's stored tensor
    sizes come from its record headers (one 64-byte read per record); a raw
    pack needs none.  The file itself also holds the B-tree, the index, the
    manifest and the rest of each value's last page.
    """
    sizes = reader.size[:records]
    tensors = records * reader.nbytes
    stored = tensors
    if reader.compressed:
        heads = np.zeros(records, RECORD_HEADER_DTYPE)
        raw = heads.view(np.uint8).reshape(records, HEADER_SIZE)
        for r in range(records):
            if reader.off[r] < 0 or os.preadv(reader._fd, [raw[r]], int(reader.off[r])) != HEADER_SIZE:
                raise PackError(f"{reader.path}: record {r}: cannot read its header")
        tensor = sizes - HEADER_SIZE - heads["labels_nbytes"].astype(np.int64) - heads["params_nbytes"]
        bad = (tensor <= 0) | (tensor > reader.nbytes)
        if bad.any():
            raise PackError(f"{reader.path}: record {int(np.argmax(bad))}: header sizes do not fit its value")
        stored = int(tensor.sum())
    values = int(sizes.sum())
    raw_values = values - stored + tensors
    return {
        "record_bytes": values,
        "raw_record_bytes": raw_values,
        "vs_raw": values / raw_values if raw_values else 1.0,
        "tensor_vs_raw": stored / tensors if tensors else 1.0,
        "file_bytes": reader.file_size,
    }
