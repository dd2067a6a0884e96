"""The LMDB 0.9 data-file layout the pure reader parses: constants, meta pages, branch and leaf pages.

Layout (``mdb.c`` of LMDB 0.9, LP64, ``MDB_DEVEL`` off): a 16-byte page header
(``mp_pgno`` u64, ``mp_pad``, ``mp_flags``, ``mp_lower``, ``mp_upper`` u16, the
last two overlaid by ``mp_pages`` u32 on overflow pages), then ``mp_ptrs[]``:
u16 node offsets from the page start.  Node: ``mn_lo``, ``mn_hi``, ``mn_flags``,
``mn_ksize`` (u16), key, data.  Meta pages 0 and 1 hold magic, version, address,
mapsize, the free and main ``MDB_db`` records (page size in the free DB's
``md_pad``), last page number and txnid.  Every number is bounds-checked;
malformed input raises :class:`LmdbFormatError`.
"""

from __future__ import annotations

import struct
from typing import List, NamedTuple, Optional, Tuple

MDB_MAGIC = 0xBEEFC0DE
MDB_DATA_VERSION = 1
PAGEHDRSZ = 16
NODESIZE = 8
P_INVALID = 0xFFFFFFFFFFFFFFFF  # md_root of an empty tree
MAX_DEPTH = 64  # LMDB's own cursor stack holds 32 levels

P_BRANCH, P_LEAF, P_OVERFLOW, P_META, P_LEAF2, P_SUBP = 0x01, 0x02, 0x04, 0x08, 0x20, 0x40
P_TYPES = P_BRANCH | P_LEAF | P_OVERFLOW | P_META | P_LEAF2 | P_SUBP  # ignores P_DIRTY etc.
F_BIGDATA, F_SUBDATA, F_DUPDATA = 0x01, 0x02, 0x04
UNSUPPORTED_FLAGS = {
    0x02: "MDB_REVERSEKEY",
    0x04: "MDB_DUPSORT",
    0x08: "MDB_INTEGERKEY",
    0x10: "MDB_DUPFIXED",
    0x20: "MDB_INTEGERDUP",
    0x40: "MDB_REVERSEDUP",
}
PSIZE_GUESSES = (4096, 8192, 16384, 32768, 65536, 512, 1024, 2048)

PAGE_HEADER = struct.Struct("<QHHHH")
DB_RECORD = struct.Struct("<IHHQQQQQ")  # MDB_db, 48 bytes
_META = struct.Struct("<IIQQ48s48sQQ")  # MDB_meta, 136 bytes
_NODE = struct.Struct("<HHHH")
_U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
META_END = PAGEHDRSZ + _META.size


class LmdbFormatError(ValueError):
    """The file is not a readable 64-bit LMDB 0.9 data file (corrupt or truncated)."""


class DbRecord(NamedTuple):
    pad: int
    flags: int
    depth: int
    branch_pages: int
    leaf_pages: int
    overflow_pages: int
    entries: int
    root: int


class Meta(NamedTuple):
    psize: int
    map_size: int
    main: DbRecord
    last_pgno: int
    txnid: int


class Page:
    """A parsed, validated branch or leaf page.

    ``nodes`` holds child page numbers on branch pages and
    ``(node_flags, data_size, data_offset)`` tuples on leaf pages.
    """

    __slots__ = ("pgno", "is_leaf", "raw", "keys", "nodes")

    def __init__(self, pgno: int, is_leaf: bool, raw: bytes, keys: List[bytes], nodes: list):
        self.pgno, self.is_leaf, self.raw, self.keys, self.nodes = pgno, is_leaf, raw, keys, nodes


def _magic_hint(raw: bytes) -> str:
    # Name the common wrong-platform layouts instead of a bare "bad magic".
    if raw[12:16] == _U32.pack(MDB_MAGIC):
        return "bad magic (looks like a file written by 32-bit LMDB, unsupported)"
    if raw[16:20] == struct.pack(">I", MDB_MAGIC):
        return "bad magic (looks like a big-endian LMDB file, unsupported)"
    return "bad magic (not an LMDB data file)"


def parse_meta(raw: bytes) -> Tuple[Optional[Meta], str]:
    """Decode one meta page; return ``(meta, "")`` or ``(None, reason)``."""
    if len(raw) < META_END:
        return None, "too short"
    flags = PAGE_HEADER.unpack_from(raw)[2]
    magic, version, _addr, map_size, free, main, last_pgno, txnid = _META.unpack_from(raw, PAGEHDRSZ)
    if magic != MDB_MAGIC:
        return None, _magic_hint(raw)
    if not flags & P_META:
        return None, f"page flags 0x{flags:x} lack P_META"
    if version != MDB_DATA_VERSION:
        return None, f"unsupported data version {version}"
    psize = DB_RECORD.unpack(free)[0]  # mm_psize lives in md_pad of the free DB
    if not 512 <= psize <= 65536 or psize & (psize - 1):
        return None, f"invalid page size {psize}"
    return Meta(psize, map_size, DbRecord(*DB_RECORD.unpack(main)), last_pgno, txnid), ""


def as_key(key) -> bytes:
    if isinstance(key, bytes):
        return key
    if isinstance(key, (bytearray, memoryview)):
        return bytes(key)
    raise TypeError(f"keys must be bytes, not {type(key).__name__}")


def parse_page(pgno: int, raw: bytes, psize: int, last_pgno: int) -> Page:
    """Parse and validate branch or leaf page ``pgno`` (``raw``: its ``psize`` bytes)."""
    mp_pgno, _pad, flags, lower, upper = PAGE_HEADER.unpack_from(raw)
    if mp_pgno != pgno:
        raise LmdbFormatError(f"page {pgno}: header claims page number {mp_pgno}")
    kind = flags & P_TYPES
    if kind not in (P_BRANCH, P_LEAF):
        raise LmdbFormatError(f"page {pgno}: expected a branch or leaf page, flags 0x{flags:x}")
    if not PAGEHDRSZ <= lower <= upper <= psize or (lower - PAGEHDRSZ) & 1:
        raise LmdbFormatError(f"page {pgno}: bad free-space bounds lower={lower} upper={upper}")
    count, is_leaf = (lower - PAGEHDRSZ) >> 1, kind == P_LEAF
    if count == 0 and not is_leaf:
        raise LmdbFormatError(f"page {pgno}: branch page without children")
    keys: List[bytes] = []
    nodes: list = []
    for off in struct.unpack_from(f"<{count}H", raw, PAGEHDRSZ):
        key, node = _parse_node(pgno, raw, off, (upper, psize, last_pgno), is_leaf)
        keys.append(key)
        nodes.append(node)
    return Page(pgno, is_leaf, raw, keys, nodes)


def _parse_node(pgno: int, raw: bytes, off: int, bounds: Tuple[int, int, int], is_leaf: bool):
    upper, psize, last_pgno = bounds
    if off < upper or off & 1 or off + NODESIZE > psize:
        raise LmdbFormatError(f"page {pgno}: node offset {off} outside node area {upper}..{psize}")
    lo, hi, nflags, ksize = _NODE.unpack_from(raw, off)
    kend = off + NODESIZE + ksize
    if kend > psize:
        raise LmdbFormatError(f"page {pgno}: {ksize}-byte key at offset {off} overruns the page")
    key = raw[off + NODESIZE : kend]
    if not is_leaf:  # on 64-bit the child pgno spills into mn_flags
        child = lo | hi << 16 | nflags << 32
        if not 2 <= child <= last_pgno:
            raise LmdbFormatError(f"page {pgno}: child page {child} outside 2..{last_pgno}")
        return key, child
    dsize = lo | hi << 16
    if nflags & F_DUPDATA:
        raise NotImplementedError(f"page {pgno}: duplicate-key (MDB_DUPSORT) data is not supported")
    if kend + (8 if nflags & F_BIGDATA else dsize) > psize:
        raise LmdbFormatError(f"page {pgno}: {dsize}-byte value at offset {off} overruns the page")
    return key, (nflags, dsize, kend)


def check_record(rec: DbRecord, what: str, last_pgno: int) -> None:
    """A tree's ``MDB_db`` record: depth within bounds, root a data page (or the empty tree's marker)."""
    if rec.depth > MAX_DEPTH:
        raise LmdbFormatError(f"{what}: tree depth {rec.depth} exceeds {MAX_DEPTH}")
    if rec.root == P_INVALID:
        if rec.depth:
            raise LmdbFormatError(f"{what}: empty tree with depth {rec.depth}")
    elif not 2 <= rec.root <= last_pgno or rec.depth == 0:
        raise LmdbFormatError(
            f"{what}: root page {rec.root} (depth {rec.depth}) is invalid for data pages 2..{last_pgno}"
        )


def check_supported(rec: DbRecord, what: str) -> None:
    """Refuse trees the pure reader does not read (dupsort, integer or reverse keys)."""
    bad = [name for bit, name in UNSUPPORTED_FLAGS.items() if rec.flags & bit]
    if bad:
        raise NotImplementedError(
            f"{what} uses {', '.join(bad)}; only plain byte-ordered, "
            "non-dupsort databases are supported by the pure reader"
        )
