"""The edgeaug pack format, versions 1 to 3: the one place that defines the bytes.

Both the writer (``edgeaug.builder``) and the reader (``edgeaug.loader``) import
this module, so it must stay importable with only numpy and the standard
library (Python >= 3.9).

A pack is a single-file LMDB database (``subdir=False``) with one unnamed
database and three kinds of keys, all fixed width and sorting in write order:

====================  =======================================================
key                   value
====================  =======================================================
``b"r" + u64 BE``     one record (see ``RECORD_HEADER``), index 0..n-1
``b"~index"``         ``INDEX_DTYPE`` array, one row per record
``b"~manifest"``      canonical UTF-8 JSON (see ``docs/FORMAT.md``)
====================  =======================================================

The manifest is written last, so a pack without it is incomplete.

Record value layout, little-endian::

    0   4s   magic  b"EAR1"
    4   u2   format version
    6   u2   header size (64)
    8   32s  sha256 of bytes [40:] of this value (the digest)
    40  u4   tensor nbytes          (tensor starts at offset 64)
    44  u4   labels nbytes          (labels section follows the tensor)
    48  u4   params nbytes          (UTF-8 JSON, follows the labels)
    52  i4   class label (-1: none)
    56  u4   source index
    60  u2   variant index
    62  u1   split (0 train, 1 val)
    63  u1   method: 0 in version 1; in versions 2 and 3 how the tensor is stored
             (codec | filter bits << 4, see :mod:`edgeaug.device.codec`)

Version 2 (a pack built with ``--compress``) differs only there: the stored
tensor section is the codec's output, its length is the value's length minus
the other sections, and ``tensor nbytes`` stays the DECODED size (the bound
for decoding).  The digest is that of the decoded version-1 record (method
byte 0, the raw tensor), so a compressed record's digest equals the raw
one's and ``verify --source`` is unchanged.  Uncompressed packs are written
as version 1, which older loaders read.

The tensor starts 64 bytes into the value: LMDB stores large values in
overflow pages that are 16-byte aligned on 64-bit builds, so the tensor is
aligned for every dtype we use.

The labels section (boxes, keypoints, mask; version 3 adds instance masks and
a soft label) is defined in :mod:`edgeaug.device.labels`.  Version 3 may also
carry a compressed tensor (the method byte as in version 2).  A reader parses each
record by the version in its header and refuses versions newer than its own.
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any, Tuple

import numpy as np

FORMAT_VERSION = 3  # the newest this code reads and writes
READ_VERSIONS = (1, 2, 3)
EXTENDED_LABELS = 3  # the first version whose labels section holds instance masks and a soft label
RECORD_MAGIC = b"EAR1"
RECORD_PREFIX = b"r"
INDEX_KEY = b"~index"
MANIFEST_KEY = b"~manifest"
KEY_SIZE = 9

RECORD_HEADER = struct.Struct("<4sHH32sIIIiIHBB")
HEADER_SIZE = 64
DIGEST_START = 40  # the digest covers every byte from here on
assert RECORD_HEADER.size <= HEADER_SIZE

#: The same 64 bytes as ``RECORD_HEADER``, as a numpy record: batch readers check many headers in one step.
RECORD_HEADER_DTYPE = np.dtype(
    [
        ("magic", "S4"),
        ("version", "<u2"),
        ("header_size", "<u2"),
        ("digest", "u1", (32,)),
        ("tensor_nbytes", "<u4"),
        ("labels_nbytes", "<u4"),
        ("params_nbytes", "<u4"),
        ("label", "<i4"),
        ("source", "<u4"),
        ("variant", "<u2"),
        ("split", "u1"),
        ("method", "u1"),
    ]
)
assert RECORD_HEADER_DTYPE.itemsize == HEADER_SIZE

SPLITS = {"train": 0, "val": 1}

#: One row per record in ``~index``.
INDEX_DTYPE = np.dtype(
    [
        ("source", "<u4"),
        ("variant", "<u2"),
        ("split", "u1"),
        ("pad", "u1"),
        ("label", "<i4"),
        ("digest", "u1", (32,)),
    ]  # not S32: numpy strips trailing NULs
)

#: Tensor dtypes a target may use, by manifest name.
DTYPES = {"uint8": "|u1", "int8": "|i1", "float16": "<f2", "float32": "<f4"}

#: Hard limits that keep a hostile pack from making the reader allocate wildly.
MAX_MANIFEST_BYTES = 256 << 20
MAX_RECORDS = 1 << 31
MAX_TENSOR_BYTES = 1 << 30
MAX_LABEL_ROWS = 1 << 20


class FormatError(ValueError):
    """The pack's bytes do not follow this format version."""


def newer_format(version: int) -> str:
    """The message for a pack written by a newer edgeaug than this loader."""
    return f"pack format {version} is newer than this loader's {FORMAT_VERSION}: update edgeaug"


def record_key(index: int) -> bytes:
    """Fixed-width key of record ``index``; big-endian so keys sort numerically."""
    if not 0 <= index < MAX_RECORDS:
        raise FormatError(f"record index {index} out of range")
    return RECORD_PREFIX + index.to_bytes(8, "big")


def record_number(key: bytes) -> int:
    """The record index of a record key (the inverse of :func:`record_key`), or -1 for any other key."""
    if len(key) != KEY_SIZE or key[:1] != RECORD_PREFIX:
        return -1
    return int.from_bytes(key[1:], "big")


def tensor_dtype(name: str) -> np.dtype:
    """The explicit little-endian numpy dtype for a manifest dtype name."""
    try:
        return np.dtype(DTYPES[name])
    except KeyError:
        raise FormatError(f"unsupported tensor dtype {name!r}") from None


def canonical_json(obj: Any) -> bytes:
    """The one JSON encoding used for hashing and storing: sorted, compact, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def encode_record(
    tensor: np.ndarray,
    label: int,
    source: int,
    variant: int,
    split: int,
    labels: bytes,
    params: Any,
    stored: Tuple[int, bytes] | None = None,
    extended: bool = False,
) -> bytes:
    """Build one record value; the digest is filled in over bytes [40:] of the raw (method 0) record.

    ``stored``: ``(method, data)`` from :func:`edgeaug.device.codec.encode`
    makes a record holding ``data``; None (or method 0) one holding the tensor,
    hashed and copied straight from its buffer.  The version is the lowest
    that expresses the record, so older loaders read what they can: 3 when
    ``labels`` is an extended section (instances or a soft label,
    :func:`edgeaug.device.labels.is_extended`), else 2 when compressed, else 1.
    """
    tview = memoryview(np.ascontiguousarray(tensor).reshape(-1).view(np.uint8))
    pbytes = canonical_json(params)
    body = struct.pack("<IIIiIHBB", tview.nbytes, len(labels), len(pbytes), label, source, variant, split, 0)
    body += b"\0" * (HEADER_SIZE - DIGEST_START - len(body))
    h = hashlib.sha256(body)
    for part in (tview, labels, pbytes):
        h.update(part)
    version, data = 1, tview
    if stored is not None and stored[0]:
        version, data = 2, stored[1]
        body = body[:-1] + bytes((stored[0],))
    if extended:
        version = EXTENDED_LABELS
    head = struct.pack("<4sHH32s", RECORD_MAGIC, version, HEADER_SIZE, h.digest())
    return b"".join((head, body, data, labels, pbytes))


class RecordHeader:
    """A parsed, bounds-checked record header; offsets index into the value."""

    __slots__ = (
        "version",
        "digest",
        "tensor_nbytes",
        "labels_nbytes",
        "params_nbytes",
        "label",
        "source",
        "variant",
        "split",
        "method",
        "stored_nbytes",
    )

    def __init__(self, value) -> None:
        if len(value) < HEADER_SIZE:
            raise FormatError(f"record of {len(value)} bytes is shorter than its header")
        (
            magic,
            self.version,
            hsize,
            self.digest,
            self.tensor_nbytes,
            self.labels_nbytes,
            self.params_nbytes,
            self.label,
            self.source,
            self.variant,
            self.split,
            self.method,
        ) = RECORD_HEADER.unpack_from(value, 0)
        if magic != RECORD_MAGIC:
            raise FormatError("record magic mismatch")
        if self.version > FORMAT_VERSION:
            raise FormatError(newer_format(self.version))
        if self.version not in READ_VERSIONS or hsize != HEADER_SIZE:
            raise FormatError(
                f"record format version {self.version} (header {hsize}); this reader understands {READ_VERSIONS}"
            )
        if self.split not in (0, 1) or (self.method != 0 and self.version == 1):
            raise FormatError(f"record split {self.split} / method byte {self.method} out of range")
        self.stored_nbytes = len(value) - HEADER_SIZE - self.labels_nbytes - self.params_nbytes
        raw = self.method == 0
        if self.stored_nbytes != self.tensor_nbytes if raw else not 0 < self.stored_nbytes < self.tensor_nbytes:
            total = HEADER_SIZE + self.tensor_nbytes + self.labels_nbytes + self.params_nbytes
            what = (
                f"sum to {total}"
                if raw
                else f"leave {self.stored_nbytes} for a compressed tensor of {self.tensor_nbytes}"
            )
            raise FormatError(f"record sections {what} bytes, value has {len(value)}")

    @property
    def labels_offset(self) -> int:
        return HEADER_SIZE + self.stored_nbytes

    @property
    def params_offset(self) -> int:
        return self.labels_offset + self.labels_nbytes


def record_digest(value, tensor: np.ndarray | None = None) -> bytes:
    """Recompute the digest of a record value: sha256 of bytes [40:] of its raw (version 1) form.

    A compressed record needs its decoded ``tensor``; the method byte counts as 0.
    """
    v = memoryview(value)
    if tensor is None:
        return hashlib.sha256(v[DIGEST_START:]).digest()
    h = RecordHeader(value)
    d = hashlib.sha256(v[DIGEST_START : HEADER_SIZE - 1])
    d.update(b"\0")
    d.update(memoryview(np.ascontiguousarray(tensor).reshape(-1).view(np.uint8)))
    d.update(v[h.labels_offset :])
    return d.digest()


def fingerprint(manifest_without_fp: dict, index_bytes: bytes) -> str:
    """Whole-pack fingerprint: sha256 of the canonical manifest and the index."""
    h = hashlib.sha256()
    h.update(canonical_json(manifest_without_fp))
    h.update(index_bytes)
    return h.hexdigest()


def tensor_shape(target: dict) -> Tuple[int, ...]:
    """Per-record tensor shape of a manifest ``target`` entry (no batch axis)."""
    h, w, c = int(target["height"]), int(target["width"]), int(target["channels"])
    return (c, h, w) if target["layout"] == "NCHW" else (h, w, c)
