"""edgeaug.device.lmdbpure on hand-made damage and misuse: cycles, bad metas, wrong layouts; stdlib imports only."""

from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List, Tuple

import pytest
from lmdb_corpus import write_file as _write

lmdb = pytest.importorskip("lmdb")

from edgeaug.device.lmdbpure import (  # noqa: E402
    LmdbFormatError,
    PureEnvironment,
    open_pure,
)

# -- hand-made structural damage ---------------------------------------------------


def _node_offsets(raw: bytes) -> List[int]:
    lower = struct.unpack_from("<H", raw, 12)[0]
    return list(struct.unpack_from(f"<{(lower - 16) // 2}H", raw, 16))


def _set_child(data: bytearray, pgno: int, idx: int, child: int, ps: int = 4096) -> None:
    off = pgno * ps + _node_offsets(bytes(data[pgno * ps : (pgno + 1) * ps]))[idx]
    struct.pack_into("<HHH", data, off, child & 0xFFFF, (child >> 16) & 0xFFFF, child >> 32)


def _deep_db(tmp: Path) -> Tuple[str, int, list]:
    rng = random.Random(3)
    path = str(tmp / "deep.lmdb")
    env = lmdb.open(path, subdir=False, map_size=64 << 20)
    with env.begin(write=True) as txn:
        for _ in range(1500):
            txn.put(rng.randbytes(rng.randint(100, 300)), rng.randbytes(20))
    depth = env.stat()["depth"]
    env.close()
    with open_pure(path) as env:
        root = env._meta.main.root
        children = env._page(root).nodes
    assert depth >= 3 and len(children) >= 2
    return path, root, children


def _damage_raises(tmp: Path, data: bytearray) -> None:
    path = _write(tmp / "damaged.lmdb", bytes(data))
    with pytest.raises(LmdbFormatError):
        with open_pure(path) as env:
            list(env.items())


def test_cycle_and_shared_child_raise(tmp_path: Path) -> None:
    path, root, children = _deep_db(tmp_path)
    original = Path(path).read_bytes()
    cyclic = bytearray(original)
    _set_child(cyclic, children[1], 0, root)  # grandchild pointer back to the root
    _damage_raises(tmp_path, cyclic)
    shared = bytearray(original)
    _set_child(shared, root, 1, children[0])  # two parents share one subtree
    _damage_raises(tmp_path, shared)
    self_loop = bytearray(original)
    _set_child(self_loop, root, 0, root)
    _damage_raises(tmp_path, self_loop)


def _meta_patch(data: bytearray, page: int, offset: int, fmt: str, value: int) -> None:
    struct.pack_into(fmt, data, page * 4096 + 16 + offset, value)


def test_meta_damage(tmp_path: Path) -> None:
    path, _root, _children = _deep_db(tmp_path)
    original = Path(path).read_bytes()
    with open_pure(path) as env:
        newest = env.info()["last_txnid"] % 2  # txn N writes meta page N % 2
    depth_off = 8 + 8 + 8 + 48 + 6  # magic, version, address, mapsize, free DB, md_pad+md_flags
    root_off, last_off = depth_off + 34, depth_off + 42
    for offset, fmt, value in [
        (depth_off, "<H", 200),
        (root_off, "<Q", 1),
        (root_off, "<Q", 10**9),
        (last_off, "<Q", 10**12),
    ]:
        data = bytearray(original)
        _meta_patch(data, newest, offset, fmt, value)  # depth, root, last_pgno
        _damage_raises(tmp_path, data)
    both = bytearray(original)
    _meta_patch(both, 0, 0, "<I", 0)
    _meta_patch(both, 1, 0, "<I", 0)
    with pytest.raises(LmdbFormatError, match="no valid meta"):
        PureEnvironment(_write(tmp_path / "nometa.lmdb", bytes(both)))


def test_older_meta_used_when_newest_is_damaged(tmp_path: Path) -> None:
    path = str(tmp_path / "two.lmdb")
    env = lmdb.open(path, subdir=False, map_size=16 << 20)
    first = {b"a%03d" % i: b"v" * i for i in range(300)}
    with env.begin(write=True) as txn:  # txn 1 -> meta page 1
        for k, v in first.items():
            txn.put(k, v)
    with env.begin(write=True) as txn:  # txn 2 -> meta page 0
        txn.put(b"later", b"x")
    env.close()
    data = bytearray(Path(path).read_bytes())
    data[16:20] = b"\0\0\0\0"  # meta 0 magic: psize must now be guessed for meta 1
    with open_pure(_write(tmp_path / "old.lmdb", bytes(data))) as env:
        assert env.info()["last_txnid"] == 1
        assert list(env.items()) == sorted(first.items())


def test_wrong_layouts_and_misuse(tmp_path: Path) -> None:
    page = bytearray(8192)
    struct.pack_into("<IHHHHII", page, 0, 0, 0, 0x08, 0, 0, 0xBEEFC0DE, 1)  # 32-bit header
    with pytest.raises(LmdbFormatError, match="32-bit"):
        PureEnvironment(_write(tmp_path / "x32.lmdb", bytes(page)))
    with pytest.raises(LmdbFormatError, match="directory"):
        PureEnvironment(str(tmp_path))
    path = str(tmp_path / "ok.lmdb")
    env = lmdb.open(path, subdir=False, max_dbs=3)
    dup = env.open_db(b"dups", dupsort=True)
    ints = env.open_db(b"ints", integerkey=True)
    with env.begin(write=True) as txn:
        txn.put(b"k", b"1", db=dup)
        txn.put(b"k", b"2", db=dup)
        txn.put(struct.pack("=I", 7), b"seven", db=ints)
    env.close()
    pure = open_pure(path)
    for name in (b"dups", b"ints"):
        with pytest.raises(NotImplementedError):
            pure.open_db(name)
    with pytest.raises(TypeError):
        pure.get("text")
    pure.close()
    pure.close()
    with pytest.raises(ValueError):
        pure.get(b"k")


def test_empty_and_single_page_files(tmp_path: Path) -> None:
    path = str(tmp_path / "empty.lmdb")
    lmdb.open(path, subdir=False).close()
    with open_pure(path) as env:
        assert list(env.items()) == [] and env.get(b"a") is None
        assert env.stat()["entries"] == 0 and env.info()["last_pgno"] == 1


# -- import hygiene ----------------------------------------------------------------


def test_import_uses_only_stdlib() -> None:
    code = textwrap.dedent("""
        import sys, sysconfig
        before = set(sys.modules)
        import edgeaug.device.lmdbpure
        stdlib = sysconfig.get_paths()["stdlib"]
        names = getattr(sys, "stdlib_module_names", ())
        for name in sorted(set(sys.modules) - before):
            top = name.split(".")[0]
            path = getattr(sys.modules[name], "__file__", None) or ""
            if top == "edgeaug" or top in names or top in sys.builtin_module_names:
                continue
            if not path or (path.startswith(stdlib) and "site-packages" not in path):
                continue
            print(name)
    """)
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert out.stdout.split() == []
