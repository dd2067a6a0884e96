"""The device loader: import boundary, refusals, zero copy, epochs and batches."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import lmdb
import numpy as np
import pytest

from edgeaug.device import format as F
from edgeaug.device.loader import Pack, PackError

REPO = Path(__file__).resolve().parents[2]


def run_py(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)


def test_loader_imports_only_numpy_lmdb_and_stdlib():
    code = (
        "import sys; before = set(sys.modules)\n"
        "import edgeaug.loader\n"
        "std = set(sys.stdlib_module_names)\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "ok = ('numpy', 'lmdb', 'edgeaug')\n"
        "bad = sorted(m for m in new if m not in std and m not in ok and not m.startswith('_'))\n"
        "print(','.join(bad))\n"
    )
    r = run_py(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""


def test_records_are_copies_that_outlive_the_pack(small_pack):
    with Pack(str(small_pack)) as p:
        x, y = p[0]
        rec = p.record(0)
        assert x.flags.owndata and np.array_equal(x, rec["x"])
        assert x.shape == (224, 224, 3) and x.dtype == np.uint8
        assert y == p.record(0)["label"]
        assert isinstance(y, int)
        x2, _ = p[-1]
        assert x2.shape == x.shape
        with pytest.raises(IndexError):
            p[len(p)]
    # Read after close: a view into the closed map would kill the process (SIGSEGV).
    assert int(x.sum()) == int(rec["x"].sum()) and x.shape == (224, 224, 3)


def test_batches_are_contiguous_and_cover_each_source_once(small_pack):
    with Pack(str(small_pack)) as p:
        seen = []
        for X, Y in p.batches(5, epoch=0):
            assert X.flags.c_contiguous and X.dtype == np.uint8 and len(X) == len(Y) <= 5
            seen.append(X)
        X = np.concatenate(seen)
        assert len(X) == p.sources == 16
        order = p.epoch_order(0)
        assert sorted(p._index[p._start + order]["source"].tolist()) == sorted(
            set(p._index["source"][: len(p)].tolist())
        )
        assert len(list(p.batches(5, epoch=0, drop_last=True))) == 3


def test_epochs_cycle_through_every_variant(small_pack):
    with Pack(str(small_pack)) as p:
        k = 4  # original + 3 variants
        served = {}
        for e in range(k):
            for r in p.epoch_order(e, shuffle=False):
                served.setdefault(int(p._index[r]["source"]), []).append(int(p._index[r]["variant"]))
        assert all(sorted(v) == [0, 1, 2, 3] for v in served.values())
        # The choice depends only on (seed, epoch): reproducible, and differs across epochs.
        assert np.array_equal(p.epoch_order(5), p.epoch_order(5))
        assert not np.array_equal(p.epoch_order(0), p.epoch_order(1))
    with Pack(str(small_pack), seed=99) as q, Pack(str(small_pack)) as p:
        assert not np.array_equal(q.epoch_order(0), p.epoch_order(0))


def test_train_and_val_open_together(small_pack):
    with Pack(str(small_pack)) as t, Pack(str(small_pack), split="val") as v:
        assert len(t) == 64 and len(v) == 8
        assert t[0][0].shape == v[0][0].shape
    with pytest.raises(ValueError):
        Pack(str(small_pack), split="test")


def _copy(src: Path, tmp: Path, name: str) -> Path:
    dst = tmp / name
    shutil.copy(src, dst)
    return dst


def _rewrite(path: Path, key: bytes, value: bytes) -> None:
    env = lmdb.open(str(path), subdir=False, lock=False, map_size=1 << 30)
    with env.begin(write=True) as txn:
        txn.put(key, value)
    env.close()


def _manifest(path: Path) -> dict:
    env = lmdb.open(str(path), subdir=False, lock=False, readonly=True)
    with env.begin() as txn:
        m = json.loads(txn.get(F.MANIFEST_KEY))
    env.close()
    return m


def test_refuses_other_format_version(small_pack, tmp_path):
    p = _copy(small_pack, tmp_path, "v3.lmdb")
    m = _manifest(p)
    m["format_version"] = 4  # 2 is compressed, 3 has extended labels
    _rewrite(p, F.MANIFEST_KEY, F.canonical_json(m))
    with pytest.raises(PackError, match="pack format 4 is newer than this loader's 3: update edgeaug"):
        Pack(str(p))
    m["format_version"] = 0
    _rewrite(p, F.MANIFEST_KEY, F.canonical_json(m))
    with pytest.raises(PackError, match="format version 0"):
        Pack(str(p))


def test_refuses_incomplete_pack(small_pack, tmp_path):
    p = _copy(small_pack, tmp_path, "inc.lmdb")
    env = lmdb.open(str(p), subdir=False, lock=False, map_size=1 << 30)
    with env.begin(write=True) as txn:
        txn.delete(F.MANIFEST_KEY)
    env.close()
    with pytest.raises(PackError, match="incomplete"):
        Pack(str(p))


def test_refuses_altered_manifest(small_pack, tmp_path):
    p = _copy(small_pack, tmp_path, "alt.lmdb")
    m = _manifest(p)
    m["seed"] = 1234
    _rewrite(p, F.MANIFEST_KEY, F.canonical_json(m))
    with pytest.raises(PackError, match="fingerprint"):
        Pack(str(p))


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.3, 0.5, 0.9, 0.999])
def test_truncated_pack_is_an_error_not_a_crash(small_pack, tmp_path, fraction):
    p = tmp_path / "cut.lmdb"
    data = small_pack.read_bytes()
    p.write_bytes(data[: int(len(data) * fraction)])
    code = (
        "import sys\nfrom edgeaug.loader import Pack, PackError\n"
        "try:\n    p = Pack(sys.argv[1]); [p[i] for i in range(len(p))]; print('opened')\n"
        "except PackError as e:\n    print('PackError', e)\n"
    )
    r = run_py(code, str(p))
    assert r.returncode == 0, (r.returncode, r.stderr)  # never SIGBUS (-7)
    assert r.stdout.startswith("PackError"), r.stdout


def test_verify_catches_a_tampered_record(small_pack, tmp_path):
    p = _copy(small_pack, tmp_path, "tamper.lmdb")
    env = lmdb.open(str(p), subdir=False, lock=False, map_size=1 << 30)
    with env.begin() as txn:
        v = bytearray(txn.get(F.record_key(3)))
    env.close()
    v[F.HEADER_SIZE + 100] ^= 0x01
    _rewrite(p, F.record_key(3), bytes(v))
    with Pack(str(p)) as pack:
        problems = pack.verify()
    assert problems == ["record 3: digest mismatch (payload altered)"]


def test_device_cli(small_pack):
    main = "import sys; from edgeaug.loader import main; sys.exit(main(sys.argv[1:]))"
    r = run_py(main, "verify", str(small_pack))
    assert r.returncode == 0 and f"{72}/{72} records ok" in r.stdout
    r = run_py(main, "info", str(small_pack))
    assert json.loads(r.stdout)["records"] == 72
    r = run_py(main, "bench", str(small_pack), "--seconds", "0.2")
    assert r.returncode == 0 and "records/s" in r.stdout
    for reader in ("pread", "mmap"):
        r = run_py(main, "bench", str(small_pack), "--seconds", "0.2", "--reader", reader)
        assert r.returncode == 0 and f"backend, {reader} reader," in r.stdout, r.stdout + r.stderr
    r = run_py(
        "import sys; from edgeaug.loader import main; sys.exit(main(sys.argv[1:]))", "verify", "/nonexistent.lmdb"
    )
    assert r.returncode == 2 and "cannot open" in r.stderr


def test_device_warnings(small_pack, monkeypatch):
    import platform

    with Pack(str(small_pack)) as p:
        monkeypatch.setattr(platform, "machine", lambda: "x86_64")
        assert p.device_warnings() == ["pack targets aarch64 but this machine is x86_64"]
        monkeypatch.setattr(platform, "machine", lambda: "aarch64")
        assert p.device_warnings() == []


def test_batches_kept_by_the_caller_are_never_overwritten(small_pack):
    with Pack(str(small_pack)) as p:
        kept = [(X, Y) for X, Y in p.batches(3, epoch=2)]
        order = p.epoch_order(2)
        flat = np.concatenate([X for X, _ in kept])
        want = np.stack([p[int(i)][0] for i in order])
        assert np.array_equal(flat, want)
        assert len({X.ctypes.data for X, _ in kept}) == len(kept)  # all distinct buffers
        views = [X[0] for X, _ in p.batches(3, epoch=2)]  # a view keeps its batch alive
        assert np.array_equal(np.stack(views), want[::3])


def test_streaming_batches_recycle_released_buffers(small_pack):
    with Pack(str(small_pack)) as p:
        assert len(p.epoch_order(0)) % 3  # a short last batch
        addrs, sizes = set(), set()
        # On this thread (the default moves reads to a background thread when the caller is slow: timing).
        for X, _ in p.batches(3, epoch=0, prefetch=False):
            addrs.add(X.ctypes.data)
            sizes.add(len(X))
        # Released batches are reused, not reallocated: the caller's and the next; the short one is a front.
        assert len(addrs) == 2 and len(sizes) == 2
        # ...and their contents are still the right records each time, whichever thread reads them.
        for e, prefetch in ((0, False), (1, True), (2, None)):
            got = [X.copy() for X, _ in p.batches(2, epoch=e, prefetch=prefetch)]
            want = np.stack([p[int(i)][0] for i in p.epoch_order(e)])
            assert np.array_equal(np.concatenate(got), want)
