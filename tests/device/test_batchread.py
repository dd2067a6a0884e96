"""Batches read at file offsets (batchread): same bytes as record by record, every damage a PackError.

Covers both batch readers (pread, mmap) with both backends, values in overflow
pages and values inline in leaf pages, short reads, offsets outside the file,
page and record headers that disagree with the pack, and the prefetch thread.
Damage that could make a reader touch unmapped memory runs in a child process,
so a signal would fail the test instead of killing pytest.
"""

import os
import shutil
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from edgeaug.builder.pipeline import build
from edgeaug.device import batchread, prefetch, readplan
from edgeaug.device import format as F
from edgeaug.device.lmdbpure import PureEnvironment
from edgeaug.device.loader import Pack, PackError

REPO = Path(__file__).resolve().parents[2]
COMBOS = [(b, r) for b in ("lmdb", "pure") for r in ("pread", "mmap")]


@pytest.fixture(scope="module")
def tiny_pack(shapes_dir, tmp_path_factory, tiny_target) -> Path:
    """A pack of ~0.5 KB records: values stored inside their leaf pages, not in overflow pages."""
    d = tmp_path_factory.mktemp("tinypack")
    out = d / "tiny.lmdb"
    build(shapes_dir, out, tiny_target, variants=2, seed=5, workers=1, val=0.25)
    return out


def _records(p: Pack, order) -> np.ndarray:
    return np.stack([p[int(i)][0] for i in order])


@pytest.mark.parametrize("backend,reader", COMBOS)
@pytest.mark.parametrize("which", ["small_pack", "tiny_pack"])
def test_batches_hold_the_same_bytes_as_single_records(request, which, backend, reader):
    path = str(request.getfixturevalue(which))
    for split in ("train", "val"):
        with Pack(path, split, backend=backend, reader=reader) as p:
            assert p.reader == reader
            for epoch, prefetch in ((0, None), (1, True), (2, False)):
                got = list(p.batches(5, epoch=epoch, prefetch=prefetch))
                order = p.epoch_order(epoch)
                assert np.array_equal(np.concatenate([x for x, _ in got]), _records(p, order))
                assert np.array_equal(np.concatenate([y for _, y in got]), p.labels[order])
                assert all(x.flags.c_contiguous and x.dtype == p.dtype for x, _ in got)


def test_inline_values_really_are_inline(tiny_pack, small_pack):
    for path, inline in ((tiny_pack, True), (small_pack, False)):
        with PureEnvironment(str(path)) as env:
            table = readplan.RecordTable(env)
        assert len(table.keys) and bool((table.pgnos == 0).all()) == inline and bool((table.pgnos != 0).all()) != inline


def test_reader_choice():
    assert readplan.choose_reader(1, "pread") == "pread" and readplan.choose_reader(1 << 50, "mmap") == "mmap"
    if struct.calcsize("P") == 8 and hasattr(os, "preadv"):
        assert readplan.choose_reader(1 << 50) == "pread"  # larger than any memory: one read per record
    with pytest.raises(ValueError, match="reader must be one of"):
        readplan.choose_reader(1, "fast")
    with pytest.raises(ValueError, match="reader must be one of"):
        Pack("nonexistent.lmdb", reader="fast")


@pytest.mark.skipif(not hasattr(os, "preadv"), reason="needs os.preadv")
def test_a_32_bit_process_maps_only_small_packs(monkeypatch):
    class Struct32:
        @staticmethod
        def calcsize(fmt: str) -> int:
            return 4 if fmt == "P" else struct.calcsize(fmt)

    monkeypatch.setattr(readplan, "struct", Struct32)
    monkeypatch.setattr(readplan, "_memory_budget", lambda: 64 << 30)
    assert readplan.choose_reader(100 << 20) == "mmap"
    assert readplan.choose_reader(readplan.MAX_MAP_32BIT) == "mmap"
    assert readplan.choose_reader(readplan.MAX_MAP_32BIT + 1) == "pread"
    monkeypatch.setattr(readplan, "_memory_budget", lambda: 64 << 20)  # fits the address space, not memory
    assert readplan.choose_reader(100 << 20) == "pread"


def test_a_failed_mapping_falls_back_to_pread_unless_mmap_was_asked_for(small_pack, monkeypatch):
    def no_room(self):
        raise OSError(12, "Cannot allocate memory")

    import edgeaug.device.pack as pack_module

    monkeypatch.setattr(pack_module, "choose_reader", lambda size, wanted: "mmap" if wanted == "auto" else wanted)
    monkeypatch.setattr(batchread.BatchReader, "_map", no_room)
    with Pack(str(small_pack)) as p:
        assert p.reader == "pread"
        x, _ = next(p.batches(4, epoch=1))
        assert x.tobytes() == _records(p, p.epoch_order(1)[:4]).tobytes()
    with pytest.raises(PackError, match="cannot open for batch reads: Cannot allocate memory"):
        Pack(str(small_pack), reader="mmap")


# --- damage ------------------------------------------------------------------------------

CHILD = r"""
import json, os, sys
from edgeaug.device.loader import Pack, PackError
path, backend, reader, action = sys.argv[1:5]
out = {}
try:
    p = Pack(path, backend=backend, reader=reader)
except PackError as e:
    print(json.dumps({"open": str(e)})); sys.exit(0)
if action == "truncate":  # the file shrinks after the pack was opened
    os.truncate(path, os.path.getsize(path) // 2)
try:
    for e in range(2):
        for _ in p.batches(4, epoch=e, all_variants=True):
            pass
    out["batches"] = "ok"
except PackError as e:
    out["batches"] = "PackError: " + str(e)
except Exception as e:
    out["batches"] = "EXC " + type(e).__name__ + ": " + str(e)
print(json.dumps(out))
"""


def run_child(path: Path, backend: str, reader: str, action: str = "") -> dict:
    import json

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO)
    r = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), backend, reader, action or "-"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0, (backend, reader, action, r.returncode, r.stderr[-2000:])  # never a signal
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend,reader", COMBOS)
def test_file_truncated_after_open_is_an_error_not_a_signal(small_pack, tmp_path, backend, reader):
    path = tmp_path / "cut.lmdb"
    shutil.copy(small_pack, path)
    res = run_child(path, backend, reader, "truncate")
    # pread: a short read; mmap: the size check before each batch (a read past the end would be SIGBUS)
    assert res["batches"].startswith("PackError"), res
    assert ("short read" in res["batches"]) if reader == "pread" else ("shrank" in res["batches"]), res


def _value_location(path: Path, r: int):
    """(leaf page number, data offset in that page, overflow page number or 0) of record ``r``'s value."""
    with PureEnvironment(str(path)) as env:
        page, idx = env._lookup(env._meta.main, F.record_key(r))
        nflags, _dsize, doff = page.nodes[idx]
        ov = struct.unpack_from("<Q", page.raw, doff)[0] if nflags & 1 else 0
        return page.pgno, doff, ov, env.stat()["psize"], env.info()["last_pgno"]


def _patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _bad_magic_copy(src: Path, path: Path, r: int) -> Path:
    """A copy of the pack ``src`` at ``path`` whose record ``r`` has a damaged magic."""
    shutil.copy(src, path)
    _leaf, _doff, ov, psize, _last = _value_location(path, r)
    _patch(path, ov * psize + 16, b"XXXX")
    return path


@pytest.mark.parametrize("backend,reader", COMBOS)
def test_overflow_pointer_outside_the_file_fails_at_open(small_pack, tmp_path, backend, reader):
    path = tmp_path / "far.lmdb"
    shutil.copy(small_pack, path)
    leaf, doff, ov, psize, last = _value_location(path, 2)
    assert ov, "rpi4 records live in overflow pages"
    _patch(path, leaf * psize + doff, struct.pack("<Q", last + 5))
    res = run_child(path, backend, reader)
    assert "open" in res and "runs past page" in res["open"], res


@pytest.mark.parametrize("backend,reader", COMBOS)
@pytest.mark.parametrize(
    "field,offset,data,message",
    [
        ("overflow pgno", 0, struct.pack("<Q", 3), "overflow page number"),
        ("overflow flags", 10, struct.pack("<H", 0x02), "overflow page type"),
        ("overflow pages", 12, struct.pack("<I", 1), "overflow page count"),
        ("magic", 16, b"XXXX", "magic"),
        ("tensor size", 16 + 40, struct.pack("<I", 12), "tensor size"),
        ("source", 16 + 56, struct.pack("<I", 77), "source"),
    ],
)
def test_header_mismatch_is_a_pack_error(small_pack, tmp_path, backend, reader, field, offset, data, message):
    path = tmp_path / "hdr.lmdb"
    shutil.copy(small_pack, path)
    _leaf, _doff, ov, psize, _last = _value_location(path, 1)
    _patch(path, ov * psize + offset, data)
    res = run_child(path, backend, reader)
    assert res.get("batches", "").startswith("PackError") and "record 1:" in res["batches"], (field, res)
    assert message in res["batches"], (field, res)


def test_offsets_outside_the_file_and_missing_records_are_errors(small_pack):
    with Pack(str(small_pack), backend="pure", reader="pread") as p, PureEnvironment(str(small_pack)) as env:
        table = readplan.RecordTable(env)
        size = os.path.getsize(small_pack)
        expect = (p._index["source"], p._index["variant"], p._index["split"])
        for reader in ("pread", "mmap"):
            t = readplan.RecordTable(env)
            t.offsets[3] = size - 100  # the value would run past the end of the file
            t.keys, t.offsets, t.sizes, t.pgnos = (a[t.keys != 5] for a in (t.keys, t.offsets, t.sizes, t.pgnos))
            br = batchread.BatchReader(p._db, t, p.records, p.nbytes, expect, reader)
            try:
                x = np.empty((1,) + p.shape, p.dtype)
                fill = br.fill_pread if reader == "pread" else br.fill_mapped
                for r, what in ((3, "cannot hold"), (5, "missing")):
                    with pytest.raises(PackError, match=f"record {r}.*{what}|record {r} is {what}"):
                        fill(x, np.array([r]))
                fill(x, np.array([4]))  # the others still read
                assert np.array_equal(x[0], p.record_at(4)["x"])
            finally:
                br.close()
        assert len(table.keys) == p.records


# --- prefetch ----------------------------------------------------------------------------


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "edgeaug-prefetch"]


def test_prefetch_reads_the_next_batch_while_the_caller_holds_this_one():
    holding = threading.Event()
    seen = []

    def fill(job):
        if job == 1:  # can only finish if it runs while the caller still holds batch 0
            assert holding.wait(30), "batch 1 was not read while batch 0 was in use"
        seen.append(job)
        return job

    it = prefetch.prefetched(iter(range(3)), fill)
    assert next(it) == 0
    holding.set()
    assert list(it) == [1, 2] and seen == [0, 1, 2]
    assert _prefetch_threads() == []


def test_prefetch_raises_at_the_failing_batch_and_stops_its_thread():
    def fill(job):
        if job == 2:
            raise PackError("record 9: damaged")
        return job

    it = prefetch.prefetched(iter(range(5)), fill)
    assert [next(it), next(it)] == [0, 1]
    with pytest.raises(PackError, match="record 9"):
        next(it)
    assert _prefetch_threads() == []
    it = prefetch.prefetched(iter(range(100)), lambda j: j)
    next(it)
    it.close()  # the caller stops early: the thread ends too
    assert _prefetch_threads() == []


def test_prefetched_batches_are_never_overwritten_while_held(small_pack):
    with Pack(str(small_pack), reader="pread") as p:
        kept = [x for x, _ in p.batches(3, epoch=1, prefetch=True)]
        assert len({x.ctypes.data for x in kept}) == len(kept)
        assert np.array_equal(np.concatenate(kept), _records(p, p.epoch_order(1)))


# --- reads moved for the online shift (edgeaug.device.online) ------------------------------


@pytest.mark.parametrize("move", [0, 4000, -4000])
def test_moved_reads_keep_every_check(small_pack, tmp_path, move):
    """A read at a byte offset still reads and checks the whole header, and a short read is still an error."""
    path = _bad_magic_copy(small_pack, tmp_path / "moved.lmdb", 1)
    with Pack(str(path), backend="pure", reader="pread") as p:
        br, x = p._reader, np.empty((1,) + p.shape, p.dtype)
        br.fill_pread(x, np.array([0]), np.array([move]))
        nb, plain = p.nbytes, p.record_at(0)["x"].reshape(-1).view(np.uint8)
        row = x.reshape(-1).view(np.uint8)
        assert row[max(move, 0) : nb + min(move, 0)].tobytes() == plain[max(-move, 0) : nb - max(move, 0)].tobytes()
        with pytest.raises(PackError, match="record 1: magic"):
            br.fill_pread(x, np.array([1]), np.array([move]))
        os.truncate(path, int(br._toff[0]) + nb - 100)  # after open, the tensor's last 100 bytes go
        with pytest.raises(PackError, match="record 0: short read"):
            br.fill_pread(x, np.array([0]), np.array([move]))


# --- mapped reads without the strided view (what a 32-bit process gets) ------------------------


@pytest.fixture
def no_strided_view(monkeypatch):
    """Mapped rows as a 32-bit process gets them: numpy cannot make the strided view, so one slice per row."""
    init = batchread._Rows.__init__

    def no_view(self, u8, width):
        init(self, u8, width)
        self.view = None

    monkeypatch.setattr(batchread._Rows, "__init__", no_view)


@pytest.mark.parametrize("small", [True, False])
def test_mapped_reads_without_the_strided_view_equal_pread(small_pack, monkeypatch, no_strided_view, small):
    """A 32-bit process cannot make the strided row view; row-by-row slices must give the same batches."""
    monkeypatch.setattr(batchread, "_SMALL_RECORD", 1 << 40 if small else 0)  # the gather or the copy path
    with Pack(str(small_pack), reader="mmap") as m, Pack(str(small_pack), reader="pread") as p:
        assert m._reader._rows.view is None and m._reader.small == small
        for kw in ({}, {"hflip": 0.5, "shift": 3}):
            got = [x.copy() for x, _ in m.batches(3, epoch=1, **kw)]
            want = [x.copy() for x, _ in p.batches(3, epoch=1, **kw)]
            assert np.concatenate(got).tobytes() == np.concatenate(want).tobytes(), kw
    with pytest.raises(IndexError, match="outside the mapped file"):
        batchread._Rows(np.zeros(100, np.uint8), 10).take(np.array([91]))


def test_mapped_reads_without_the_strided_view_still_check_every_header(small_pack, tmp_path, no_strided_view):
    path = _bad_magic_copy(small_pack, tmp_path / "bad-magic.lmdb", 1)
    with Pack(str(path), backend="pure", reader="mmap") as p:
        with pytest.raises(PackError, match="record 1: magic"):
            for _ in p.batches(4, all_variants=True):
                pass


@pytest.mark.parametrize("small", [True, False])
def test_mapped_epochs_check_their_headers_before_the_first_batch(small_pack, tmp_path, monkeypatch, small):
    """Mapped batches skip the per-batch header check because each epoch checks all of its records first.

    With one variant per epoch, a damaged record is refused by the epoch
    that serves it, before any of that epoch's batches; the others run.
    """
    monkeypatch.setattr(batchread, "_SMALL_RECORD", 1 << 40 if small else 0)  # the gather or the copy path
    path = _bad_magic_copy(small_pack, tmp_path / "bad-variant.lmdb", 2)
    with Pack(str(path), reader="mmap") as p:
        assert p._reader.small == small
        served = [2 - p._start in p.epoch_order(e) for e in range(4)]
        assert any(served) and not all(served), served  # some epochs serve record 2, some do not
        for e, serves in enumerate(served):
            batches = p.batches(2, epoch=e)
            if serves:
                with pytest.raises(PackError, match="record 2: magic"):
                    next(batches)
            else:
                assert sum(len(x) for x, _ in batches) == len(p.epoch_order(e))


class _Clock:
    """A clock the test moves: no real time is measured."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize("caller_time", [0.0, 1.0])
def test_mapped_batches_prefetch_once_the_caller_works_between_them(caller_time):
    clock = _Clock()

    def fill(job):
        clock.t += 1.0  # each read takes one unit
        return job

    out, threaded = [], []
    for item in prefetch.prefetched_when_useful(range(10), fill, clock=clock):
        out.append(item)
        threaded.append(any(t.name == "edgeaug-prefetch" for t in threading.enumerate()))
        clock.t += caller_time  # the caller's own work on this batch
    assert out == list(range(10))  # the same batches, in order, either way
    assert not any(threaded[:3])  # the first batches are read on the caller's thread
    if caller_time:
        assert threaded[3]  # then, since the caller works as long as a read, in the background
    else:
        assert not any(threaded)  # a caller that only reads never pays for a thread
    assert _prefetch_threads() == []


def test_a_caller_that_stops_early_leaves_no_prefetch_thread_behind():
    clock = _Clock()

    def fill(job):
        clock.t += 1.0
        return job

    it = prefetch.prefetched_when_useful(range(100), fill, clock=clock)
    for item in it:
        clock.t += 1.0  # a slow caller: reading moves to a background thread after 3 batches
        if item == 5:
            break
    it.close()
    assert _prefetch_threads() == []
