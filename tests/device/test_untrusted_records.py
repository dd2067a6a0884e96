"""Untrusted packs, crafted records: bad headers, sizes, ids and contents, and every flipped payload bit.

Every crafted record is named by ``verify``; reads that need the damaged part raise PackError.  The packs
(``packs``) are built once in tests/device/conftest.py; crafted files are read in a child process by every
backend (tests/pack_probe.py).
"""

import shutil
import struct

import lmdb
from pack_probe import BACKENDS, assert_no_crash, craft, probe, read_kv

from edgeaug.device import format as F
from edgeaug.device.loader import Pack


def _header(value: bytes, **fields) -> bytes:
    names = ["magic", "version", "hsize", "digest", "t", "l", "p", "label", "source", "variant", "split", "reserved"]
    vals = dict(zip(names, F.RECORD_HEADER.unpack_from(value, 0)))
    vals.update(fields)
    return F.RECORD_HEADER.pack(*[vals[n] for n in names]) + value[F.RECORD_HEADER.size :]


def _extended(value: bytes) -> bytes:
    """The record as version 3 with empty instance and mix counts (what a record with neither would be)."""
    h = F.RecordHeader(value)
    value = value[: h.params_offset] + bytes(8) + value[h.params_offset :]
    return _header(value, version=F.EXTENDED_LABELS, l=h.labels_nbytes + 8)


def _at_labels_end(value: bytes, back: int, count: int) -> bytes:
    """``value`` (made version 3) with the u4 ``back`` bytes before its labels section's end set to ``count``."""
    value = _extended(value)
    at = F.RecordHeader(value).params_offset - back
    assert value[at : at + 4] == b"\0\0\0\0"
    return value[:at] + struct.pack("<I", count) + value[at + 4 :]


RECORD_CRAFTS = {
    "magic": lambda v, o: _header(v, magic=b"EVIL"),
    "version-4": lambda v, o: _header(v, version=4),
    "version-0": lambda v, o: _header(v, version=0),
    "header-32": lambda v, o: _header(v, hsize=32),
    "tensor-huge": lambda v, o: _header(v, t=2**32 - 1),
    "tensor-zero": lambda v, o: _header(v, t=0),
    "labels-huge": lambda v, o: _header(v, l=2**31),
    "params-short": lambda v, o: _header(v, p=1),
    "split-7": lambda v, o: _header(v, split=7),
    "reserved": lambda v, o: _header(v, reserved=1),
    "label-flipped": lambda v, o: _header(v, label=12345),
    "source-beyond": lambda v, o: _header(v, source=10**6),
    "variant": lambda v, o: _header(v, variant=999),
    "empty": lambda v, o: b"",
    "ten-bytes": lambda v, o: v[:10],
    "header-only": lambda v, o: v[:64],
    "truncated-tail": lambda v, o: v[:-1],
    "extra-tail": lambda v, o: v + b"\0",
    "other-record": lambda v, o: o,  # a valid record from elsewhere in the pack
    "labels-count-huge": lambda v, o: v[: 64 + 64] + struct.pack("<I", 2**31) + v[64 + 64 + 4 :],
    # the tiny records' labels end with the v2 instances and mix counts (0 and 0)
    "instances-huge": lambda v, o: _at_labels_end(v, 8, 2**31),
    "mix-huge": lambda v, o: _at_labels_end(v, 4, 2**31),
    "params-not-json": lambda v, o: v[:-3] + b"{{{",
    "params-deep": lambda v, o: None,  # built below
}


def test_crafted_record_headers(packs, tmp_path):
    src = packs["tiny"]
    _, _, recs = read_kv(src)
    r, other = F.record_key(1), F.record_key(4)
    files = {}
    for name, fn in RECORD_CRAFTS.items():
        if name == "params-deep":
            v = recs[r]
            h = F.RecordHeader(v)
            deep = b"[" * 50000 + b"]" * 50000
            value = _header(v[: h.params_offset] + deep, p=len(deep))
        else:
            value = fn(recs[r], recs[other])
        files[name] = craft(src, tmp_path / f"{name}.lmdb", records={r: value})
    sizes = {
        "magic",
        "version-4",
        "version-0",
        "header-32",
        "tensor-huge",
        "tensor-zero",
        "labels-huge",
        "params-short",
        "empty",
        "ten-bytes",
        "header-only",
        "truncated-tail",
        "extra-tail",
    }
    ids = {"split-7", "reserved", "source-beyond", "variant", "other-record"}
    content = {"labels-count-huge", "instances-huge", "mix-huge", "params-not-json", "params-deep"}
    assert sizes | ids | content | {"label-flipped"} == set(RECORD_CRAFTS)
    for backend in BACKENDS:
        res = probe(list(files.values()), backend)
        assert_no_crash(res, backend)
        for name, path in files.items():
            d = res[str(path)]
            assert d["open"] == "ok", (name, d)
            # verify always names the record (digests cover every byte after the digest)
            assert (
                isinstance(d["verify"], list) and d["verify"] and all(p.startswith("record 1:") for p in d["verify"])
            ), (name, d)
            assert d["cli"] == 1, (name, d)
            # batches and pack[i] check magic, version, sizes and the ids against the index;
            # record() also parses labels and params
            assert (d["batches"] == "PackError") == (name in sizes | ids), (name, d)
            assert [i for i, _ in d["getitem"]] == ([1] if name in sizes | ids else []), (name, d)
            assert [i for i, _ in d["record"]] == ([1] if name in sizes | ids | content else []), (name, d)


# --- the digests catch every flipped payload byte --------------------------------------


def test_digests_catch_every_flipped_byte_of_a_record(packs, tmp_path):
    src = packs["tiny"]
    _, _, recs = read_kv(src)
    key = F.record_key(2)
    value = recs[key]
    h = F.RecordHeader(value)
    classes = {
        "header": range(0, 64),
        "tensor": range(64, h.labels_offset),
        "labels": range(h.labels_offset, h.params_offset),
        "params": range(h.params_offset, len(value)),
    }
    assert all(len(r) for r in classes.values())
    path = tmp_path / "flip.lmdb"
    shutil.copy(src, path)
    caught = {c: 0 for c in classes}
    for cls, positions in classes.items():
        for pos in positions:
            for bit, backend in ((0, "lmdb"), (7, "pure")):
                flipped = bytearray(value)
                flipped[pos] ^= 1 << bit
                env = lmdb.open(str(path), subdir=False, lock=False, map_size=1 << 30)
                with env.begin(write=True) as txn:
                    txn.put(key, bytes(flipped))
                env.close()  # py-lmdb allows one environment per file per process
                with Pack(str(path), backend=backend) as p:
                    problems = p.verify()
                assert problems and all(x.startswith("record 2:") for x in problems), (cls, pos, bit)
                caught[cls] += 1
    assert caught == {c: 2 * len(r) for c, r in classes.items()}
    print(f"flipped bits caught: {caught}")
