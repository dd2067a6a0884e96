"""Shared open files: a Pack serves the file it opened, whole, and lets it go when it is dropped.

Packs of one file share its backend (py-lmdb allows one environment per file
per process).  The share is keyed by the file's identity, not its path: a pack
rebuilt at the same path is a new file and must be read as one, everywhere.
"""

from __future__ import annotations

import gc
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeaug.builder.pipeline import build
from edgeaug.device.loader import Pack


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def snapshot(path: Path, backend: str = "auto", reader: str = "auto") -> dict:
    """Everything a Pack serves, as digests: manifest, index, records, batches, verify."""
    p = Pack(str(path), "train", backend=backend, reader=reader)  # never closed: as in the README's examples
    return {
        "fingerprint": p.manifest["fingerprint"],
        "seed": p.manifest["seed"],
        "index": hashlib.sha256(p._index.tobytes()).hexdigest(),
        "item0": hashlib.sha256(p[0][0].tobytes()).hexdigest(),
        "record": hashlib.sha256(p.record(len(p) - 1)["x"].tobytes()).hexdigest(),
        "batches": [hashlib.sha256(x.tobytes()).hexdigest() for x, _ in p.batches(8, epoch=1)],
        "problems": p.verify(),
        "records": p.records,
    }


@pytest.fixture(scope="module")
def two_packs(shapes_dir, tiny_target, tmp_path_factory):
    """Two different packs of the same sources: rpi4 tensors, and tiny ones (a different record layout)."""
    d = tmp_path_factory.mktemp("two")
    build(shapes_dir, d / "a.lmdb", "rpi4", variants=1, seed=5, workers=1, val=0.25)
    build(shapes_dir, d / "b.lmdb", tiny_target, variants=2, seed=6, workers=1, val=0.25)
    return d / "a.lmdb", d / "b.lmdb"


def place(src: Path, dst: Path) -> None:
    """Put a copy of ``src`` at ``dst`` as the builder does: write aside, then rename over."""
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


@pytest.mark.parametrize("backend,reader", [("auto", "mmap"), ("pure", "pread"), ("lmdb", "auto")])
def test_pack_rebuilt_at_the_same_path_is_read_as_the_new_file(two_packs, tmp_path, backend, reader):
    a, b = two_packs
    want_a, want_b = snapshot(a, backend, reader), snapshot(b, backend, reader)
    assert want_a["problems"] == want_b["problems"] == [] and want_a["fingerprint"] != want_b["fingerprint"]
    path = tmp_path / "pack.lmdb"
    place(a, path)
    assert snapshot(path, backend, reader) == want_a
    place(b, path)  # the first Pack was dropped without close()
    assert snapshot(path, backend, reader) == want_b
    place(a, path)
    assert snapshot(path, backend, reader) == want_a


def test_pack_rebuilt_by_the_builder_while_an_old_pack_is_still_open(shapes_dir, tmp_path):
    path = tmp_path / "pack.lmdb"
    build(shapes_dir, path, "rpi4", variants=1, seed=5, workers=1, val=0.25)
    old = Pack(str(path))
    old_x = old[0][0]
    build(shapes_dir, path, "rpi4", variants=2, seed=7, workers=1, val=0.25)
    new = Pack(str(path))
    assert new.manifest["seed"] == 7 and new.records != old.records
    assert new.verify() == []
    with Pack(str(path)) as again:  # a third Pack of the new file shares the second's backend
        assert again._db is new._db
        assert np.array_equal(again[0][0], new[0][0])
    x_new, _ = next(new.batches(len(new), shuffle=False, all_variants=True))
    assert np.array_equal(x_new[0], new[0][0])
    # The old Pack still serves the file it opened, whole.
    assert old.manifest["seed"] == 5 and np.array_equal(old[0][0], old_x) and old.verify() == []
    x_old, _ = next(old.batches(len(old), shuffle=False, all_variants=True))
    assert np.array_equal(x_old[0], old_x)


@pytest.mark.parametrize("reader", ["mmap", "pread"])
def test_pack_replaced_under_an_open_pack_keeps_serving_the_opened_file(two_packs, tmp_path, reader):
    a, b = two_packs
    want_a = snapshot(a, reader=reader)
    path = tmp_path / "pack.lmdb"
    place(a, path)
    with Pack(str(path), reader=reader) as p:
        place(b, path)  # renamed over while p is open
        assert p.manifest["fingerprint"] == want_a["fingerprint"]
        assert hashlib.sha256(p[0][0].tobytes()).hexdigest() == want_a["item0"]
        assert hashlib.sha256(p.record(len(p) - 1)["x"].tobytes()).hexdigest() == want_a["record"]
        assert [hashlib.sha256(x.tobytes()).hexdigest() for x, _ in p.batches(8, epoch=1)] == want_a["batches"]
        assert p.verify() == []
        with Pack(str(path), reader=reader) as q:  # the path now names the other file
            assert q.manifest["fingerprint"] == snapshot(b)["fingerprint"] != p.manifest["fingerprint"]


@pytest.mark.parametrize("backend", ["auto", "pure"])
def test_packs_dropped_without_close_release_their_files(small_pack, backend):
    gc.collect()
    before = open_fds()
    for i in range(1000):
        p = Pack(str(small_pack), "val" if i % 2 else "train", backend=backend, reader=("mmap", "pread")[i % 2])
        if i % 3 == 0:
            next(p.batches(4))  # a mapping or a read happened
        p = None
    gc.collect()
    assert open_fds() == before


def test_close_releases_at_once_and_shared_packs_keep_the_file_open(small_pack):
    gc.collect()
    before = open_fds()
    p, q = Pack(str(small_pack)), Pack(str(small_pack), "val")
    assert p._db is q._db  # one backend per file
    p.close()
    p.close()  # twice is fine
    assert q.verify() == [] and len(list(q.batches(4))) > 0
    with pytest.raises(Exception, match="closed"):
        next(p.batches(4))
    q.close()
    assert open_fds() == before
