"""Compressed packs end to end: build, byte identity across workers, and every read path equal to the raw pack."""

from __future__ import annotations

import re

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


def test_missing_zstd_fails_at_open_naming_the_package(packs, no_zstd):
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
    # verify names the record once, says the payload was altered, and what the codec found
    (problem,) = p.verify()
    assert re.fullmatch(r"record 1: payload altered: zlib: .+", problem) and str(path) not in problem


@pytest.mark.parametrize("name", ("zstd-2", "zlib-2"))
def test_info_sizes_the_records_against_the_raw_pack(packs, name):
    with Pack(str(packs / "raw.lmdb")) as raw, Pack(str(packs / f"{name}.lmdb"), backend="pure") as p:
        r, c = raw.info()["size"], p.info()["size"]
        assert r["vs_raw"] == r["tensor_vs_raw"] == 1.0 and r["raw_record_bytes"] == r["record_bytes"]
        # the estimate of the uncompressed values is exactly what the raw build of the same inputs stores
        assert c["raw_record_bytes"] == r["record_bytes"]
        assert c["record_bytes"] < r["record_bytes"] and c["vs_raw"] == c["record_bytes"] / r["record_bytes"]
        assert 0 < c["tensor_vs_raw"] < c["vs_raw"] < 1 and c["file_bytes"] == (packs / f"{name}.lmdb").stat().st_size
        assert p.info()["compression"] == {"codec": name.split("-")[0], "level": 1 if name.startswith("zstd") else 6}


def test_inspect_and_loader_info_show_codec_level_and_size(packs, capsys):
    import json

    from typer.testing import CliRunner

    from edgeaug.cli import app
    from edgeaug.device.loader import main

    res = CliRunner().invoke(app, ["inspect", str(packs / "zstd-1.lmdb")])
    assert res.exit_code == 0, res.output
    assert re.search(r"storage  zstd level 1, file [\d.]+ MB; records 0\.\d{3}x their raw size", res.output)
    assert "storage  raw tensors, file" in CliRunner().invoke(app, ["inspect", str(packs / "raw.lmdb")]).output
    res = CliRunner().invoke(app, ["inspect", "--json", str(packs / "zlib-2.lmdb")])
    info = json.loads(res.output)
    assert info["compression"] == {"codec": "zlib", "level": 6} and 0 < info["size"]["vs_raw"] < 1
    assert main(["info", str(packs / "zlib-2.lmdb")]) == 0
    assert json.loads(capsys.readouterr().out)["size"] == info["size"]


def test_the_copying_read_paths_refuse_compressed_records(packs):
    # they would copy compressed bytes (and the records after them) as if they were the tensor
    recs = np.array([0, 1])
    for mode in ("pread", "mmap"):
        with Pack(str(packs / "zlib-2.lmdb"), reader=mode) as p:
            x, r = np.empty((2,) + p.shape, p.dtype), p._reader
            calls = [(r.fill_pread, (x, recs))]
            if mode == "mmap":
                calls += [(r.gather, (recs,)), (r.fill_mapped, (x, recs))]
            for fn, args in calls:
                with pytest.raises(PackError, match="compressed records are decoded, not copied"):
                    fn(*args)
