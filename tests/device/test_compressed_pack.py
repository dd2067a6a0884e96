"""Compressed packs end to end: build, byte identity across workers, and every read path equal to the raw pack."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

from edgeaug.builder.pipeline import build
from edgeaug.loader import Pack, PackError

pytest.importorskip("zstandard")


@pytest.fixture(scope="module")
def packs(shapes_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("cpacks")
    kw = dict(variants=3, seed=11, val=0.25)
    build(shapes_dir, d / "raw.lmdb", "rpi4", workers=1, **kw)
    for codec, w in (("zstd", 1), ("zstd", 2), ("zlib", 2)):
        build(shapes_dir, d / f"{codec}-{w}.lmdb", "rpi4", workers=w, compress=codec, **kw)
    return d


def test_compressed_pack_is_byte_identical_across_worker_counts(packs):
    assert (packs / "zstd-1.lmdb").read_bytes() == (packs / "zstd-2.lmdb").read_bytes()


@pytest.mark.parametrize("name", ("zstd-2", "zlib-2"))
@pytest.mark.parametrize("backend", ("lmdb", "pure"))
def test_every_read_path_decodes_to_the_raw_tensors(packs, name, backend):
    raw = Pack(str(packs / "raw.lmdb"))
    p = Pack(str(packs / f"{name}.lmdb"), backend=backend)
    assert p.manifest["format_version"] == 2 and raw.manifest["format_version"] == 1
    assert p.info()["compression"]["codec"] == name.split("-")[0]
    assert (p._index["digest"] == raw._index["digest"]).all()  # digests cover the decoded record
    assert p.verify() == []
    for i in range(len(p)):
        assert np.array_equal(p[i][0], raw[i][0])
    a, b = p.record(2, epoch=1, hflip=1.0, shift=5), raw.record(2, epoch=1, hflip=1.0, shift=5)
    assert np.array_equal(a["x"], b["x"]) and a["params"] == b["params"]
    for mode in ("pread", "mmap"):
        q, r = Pack(str(packs / f"{name}.lmdb"), reader=mode), Pack(str(packs / "raw.lmdb"), reader=mode)
        for online in ({}, {"hflip": 0.5, "shift": 6}):
            for (x, y), (x2, y2) in zip(q.batches(3, epoch=2, **online), r.batches(3, epoch=2, **online)):
                assert np.array_equal(x, x2) and np.array_equal(y, y2)


def test_missing_zstd_fails_at_open_naming_the_package(packs, monkeypatch):
    real = builtins.__import__

    def no_zstd(name, *args, **kw):
        if name in ("zstandard", "compression"):
            raise ImportError(name)
        return real(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_zstd)
    with pytest.raises(PackError, match=r"zstd-1.lmdb: .*apt install python3-zstandard"):
        Pack(str(packs / "zstd-1.lmdb"))
    Pack(str(packs / "zlib-2.lmdb"))  # zlib always works


def test_corrupt_compressed_record_is_a_pack_error_naming_it(packs, tmp_path):
    import lmdb

    from edgeaug.device import format as F

    path = tmp_path / "bad.lmdb"
    path.write_bytes((packs / "zlib-2.lmdb").read_bytes())
    env = lmdb.open(str(path), subdir=False, lock=False)
    with env.begin(write=True) as txn:
        v = bytearray(txn.get(F.record_key(1)))
        v[F.HEADER_SIZE + 40] ^= 0xFF
        txn.put(F.record_key(1), bytes(v))
    env.close()
    p = Pack(str(path))
    with pytest.raises(PackError, match=r"bad.lmdb: record 1: zlib"):
        p[1]
    assert any(s.startswith("record 1:") for s in p.verify())
