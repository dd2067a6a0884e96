"""Tests for edgeaug.lmdbpure: differential against py-lmdb, then corruption."""

from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

lmdb = pytest.importorskip("lmdb")

from edgeaug.device.lmdbpure import (  # noqa: E402
    LmdbFormatError,
    PureDatabase,
    PureEnvironment,
    open_pure,
)

N_DATABASES = 60
FUZZ_ROUNDS = 150  # mutations per fuzz database and mode
STAT_KEYS = ("psize", "depth", "branch_pages", "leaf_pages", "overflow_pages", "entries")
SUB_NAMES = (b"db_alpha", b"db_beta", b"db_gamma")
MISSING = object()

Pairs = List[Tuple[bytes, bytes]]


# -- corpus generation ---------------------------------------------------------


def _value(rng: random.Random, profile: str, psize: int = 4096) -> bytes:
    """A value whose size exercises one region: inline, near the overflow cut, page-sized."""
    if profile == "tiny":
        n = rng.randint(0, 16)
    elif profile == "small":
        n = rng.choice([0, rng.randint(1, 300)])
    elif profile == "boundary":  # node max is ~2038 bytes for 4 KB pages
        n = rng.randint(1850, 2150)
    else:  # "mixed"
        n = rng.choice(
            [
                0,
                rng.randint(1, 100),
                rng.randint(1900, 2100),
                psize + rng.randint(-40, 40),
                2 * psize + rng.randint(-40, 40),
            ]
        )
    return rng.randbytes(n)


def _spec(i: int) -> dict:
    """Deterministic feature mix for corpus database ``i`` (residues of i pick features)."""
    rng = random.Random(1000 + i)
    sizes = [0, 1, 3, rng.randint(10, 60), rng.randint(150, 600), rng.randint(1200, 3000)]
    append = i % 7 == 6  # MDB_APPEND bulk load, as the pack writer does
    return {
        "n": sizes[i % len(sizes)],
        "kmax": [1, 6, 24, 120, 400][(i // 6) % 5],
        "profile": ["tiny", "small", "boundary", "mixed"][i % 4],
        "big": i % 3 == 2,  # a few ~150 KB overflow values
        "subdbs": i % 4 in (1, 2) and not append,  # named sub-databases (max_dbs)
        "churn": i % 5 in (1, 3),  # deletes/overwrites -> free pages
        "compact": i % 6 in (4, 5),  # read the env.copy(compact=True) result
        "append": append,
        "writemap": i % 11 == 10,  # file longer than last_pgno needs
    }


def _rand_key(rng: random.Random, kmax: int, avoid=()) -> bytes:
    while True:
        key = rng.randbytes(rng.randint(1, kmax))
        if key not in avoid:
            return key


def _fill(env, handles: dict, model: dict, spec: dict, rng: random.Random) -> None:
    """Write the spec's entries over several transactions, mirroring them in ``model``."""
    if spec["append"]:
        return _append(env, model, spec, rng)
    names = list(handles)
    rounds = rng.randint(1, 4)
    per_round = -(-spec["n"] // rounds)
    for r in range(rounds):
        with env.begin(write=True) as txn:
            for _ in range(per_round):
                name = rng.choice(names)
                key, val = _rand_key(rng, spec["kmax"], SUB_NAMES), _value(rng, spec["profile"])
                txn.put(key, val, db=handles[name])
                model[name][key] = val
            if spec["big"] and r == 0:
                for _ in range(3):
                    key = _rand_key(rng, spec["kmax"], SUB_NAMES)
                    # Put then shrink in one txn: LMDB reuses the longer overflow run in place.
                    txn.put(key, rng.randbytes(rng.randint(140_000, 160_000)))
                    val = rng.randbytes(rng.randint(100_000, 139_000))
                    txn.put(key, val)
                    model[None][key] = val
            if spec["churn"]:
                _churn(txn, handles, model, rng)


def _append(env, model: dict, spec: dict, rng: random.Random) -> None:
    """Sorted bulk load with MDB_APPEND, as the pack writer does (leaves pages full)."""
    pairs = {_rand_key(rng, spec["kmax"], SUB_NAMES): _value(rng, spec["profile"]) for _ in range(spec["n"])}
    if spec["big"]:
        pairs[b"\xff" * 3] = rng.randbytes(150_000)
    with env.begin(write=True) as txn:
        for key in sorted(pairs):
            assert txn.put(key, pairs[key], append=True)
    model[None].update(pairs)


def _churn(txn, handles: dict, model: dict, rng: random.Random) -> None:
    for name, entries in model.items():
        for key in rng.sample(sorted(entries), len(entries) // 3):
            if rng.random() < 0.5:
                assert txn.delete(key, db=handles[name])
                del entries[key]
            else:
                val = _value(rng, rng.choice(["tiny", "boundary", "mixed"]))
                txn.put(key, val, db=handles[name])
                entries[key] = val


def _build(tmp: Path, i: int) -> Tuple[str, dict, dict, dict]:
    """Create corpus database ``i``; return (path, expected pairs, stats, info) read by py-lmdb."""
    spec, rng = _spec(i), random.Random(i)
    path = str(tmp / f"db{i}.lmdb")
    names = list(SUB_NAMES[: 1 + i % 3]) if spec["subdbs"] else []
    env = lmdb.open(
        path,
        subdir=False,
        map_size=256 << 20,
        max_dbs=4 if names else 0,
        sync=False,
        metasync=False,
        writemap=spec["writemap"],
    )
    handles = {None: None, **{n: env.open_db(n) for n in names}}
    model: Dict[Optional[bytes], dict] = {n: {} for n in handles}
    _fill(env, handles, model, spec, rng)
    if spec["compact"]:
        env.copy(path + ".compact", compact=True)
        path += ".compact"
    env.close()
    return (path, *_reference(path, names, model))


def _reference(path: str, names: list, model: dict) -> Tuple[dict, dict, dict]:
    env = lmdb.open(path, subdir=False, readonly=True, lock=False, max_dbs=4)
    expected, stats = {}, {None: env.stat()}
    with env.begin() as txn:
        expected[None] = list(txn.cursor().iternext())
        for name in names:
            handle = env.open_db(name, txn=txn, create=False)
            expected[name] = list(txn.cursor(db=handle).iternext())
            stats[name] = txn.stat(handle)
            assert dict(expected[name]) == model[name]
    info = env.info()
    env.close()
    main = {k: v for k, v in expected[None] if k not in names}
    assert main == model[None]  # py-lmdb agrees with what we wrote
    return expected, stats, info


# -- differential tests ----------------------------------------------------------


def _starts(rng: random.Random, keys: List[bytes]) -> List[bytes]:
    starts = [b"\x00", b"\xff" * 8, rng.randbytes(1), rng.randbytes(5)]
    for key in rng.sample(keys, min(4, len(keys))):
        starts += [key, key + b"\x00", key[:-1] or b"\x00"]
    return starts


def _check_db(env: PureEnvironment, db, pairs: Pairs, rng: random.Random) -> None:
    assert list(env.items(db=db)) == pairs
    assert list(env.keys(db=db)) == [k for k, _ in pairs]
    for key, val in pairs:
        got = env.get(key, db=db)
        assert type(got) is bytes and got == val
    keys = [k for k, _ in pairs]
    present = set(keys)
    for _ in range(20):
        absent = rng.randbytes(rng.randint(1, 40))
        if absent not in present:
            assert env.get(absent, db=db) is None
            assert env.get(absent, MISSING, db=db) is MISSING
    for start in _starts(rng, keys):
        want = [p for p in pairs if p[0] >= start]
        assert list(env.items(db=db, start=start)) == want
        assert list(env.keys(db=db, start=start)) == [k for k, _ in want]


@pytest.mark.parametrize("i", range(N_DATABASES))
def test_matches_py_lmdb(tmp_path: Path, i: int) -> None:
    path, expected, stats, info = _build(tmp_path, i)
    rng = random.Random(i)
    with open_pure(path, max_cached_pages=[256, 0, 3][i % 3]) as env:
        assert env.stat() == {k: stats[None][k] for k in STAT_KEYS}
        assert env.info()["last_pgno"] == info["last_pgno"]
        assert env.info()["last_txnid"] == info["last_txnid"]
        for name, pairs in expected.items():
            if name is None:
                _check_db(env, None, pairs, rng)
                continue
            handle = env.open_db(name)
            assert isinstance(handle, PureDatabase) and env.open_db(name) is handle
            assert env.stat(handle) == {k: stats[name][k] for k in STAT_KEYS}
            _check_db(env, handle, pairs, rng)
            assert list(env.items(db=name)) == pairs  # a bare name works too
        with pytest.raises(KeyError):
            env.open_db(b"no such db")


def test_corpus_covers_features(tmp_path_factory) -> None:
    """The generated corpus really has deep trees, overflow pages, free pages and sub-DBs."""
    specs = [_spec(i) for i in range(N_DATABASES)]
    assert sum(s["n"] >= 1200 for s in specs) >= 8
    assert any(s["compact"] and s["subdbs"] for s in specs)
    assert any(s["churn"] and s["big"] for s in specs)
    assert any(s["append"] for s in specs) and any(s["writemap"] for s in specs)
    tmp = tmp_path_factory.mktemp("cover")
    depths, overflow, grown, freed = [], 0, 0, 0
    for i in (21, 23, 29):
        path, expected, stats, info = _build(tmp, i)
        depths.append(stats[None]["depth"])
        overflow += stats[None]["overflow_pages"]
        grown += os.path.getsize(path) > (info["last_pgno"] + 1) * 4096
        freed += _free_db_entries(path, info["last_txnid"])
    assert max(depths) >= 3 and overflow > 0 and grown >= 1 and freed > 0


def _free_db_entries(path: str, txnid: int) -> int:
    """md_entries of the free-page DB in the newest meta (txn N writes meta page N % 2)."""
    with open(path, "rb") as f:
        f.seek((txnid % 2) * 4096 + 16 + 24 + 32)
        return struct.unpack("<Q", f.read(8))[0]


# -- shared fixtures for corruption tests --------------------------------------------


def _fuzz_db(tmp: Path, name: str, subdbs: bool, compact: bool) -> Tuple[str, list, list]:
    rng = random.Random(name)
    path = str(tmp / name)
    env = lmdb.open(path, subdir=False, map_size=64 << 20, max_dbs=4, sync=False)
    handles = {None: None, **({n: env.open_db(n) for n in SUB_NAMES[:2]} if subdbs else {})}
    for rnd in range(3):
        with env.begin(write=True) as txn:
            for _j in range(250):
                db = handles[rng.choice(list(handles))]
                txn.put(_rand_key(rng, 200, SUB_NAMES), _value(rng, "mixed"), db=db)
            if rnd == 1:
                txn.put(b"big", rng.randbytes(60_000))
                for key, _ in list(txn.cursor().iternext())[::4]:
                    if key not in SUB_NAMES:
                        txn.delete(key)
    if compact:
        env.copy(path + ".c", compact=True)
        path += ".c"
    with env.begin() as txn:
        probes = [k for k, _ in txn.cursor().iternext()][::25]
    env.close()
    assert os.path.getsize(path) % 4096 == 0
    names = list(handles)[1:]
    return path, names, probes + [b"\x00", b"zz"], _tree_pages(path, names)


def _tree_pages(path: str, names: list) -> List[int]:
    """Page numbers of every branch/leaf page reachable from the main and named DBs."""
    with open_pure(path) as env:
        todo = [env._meta.main.root] + [env.open_db(n)._record.root for n in names]
        seen: List[int] = []
        while todo:
            page = env._page(todo.pop())
            seen.append(page.pgno)
            if not page.is_leaf:
                todo.extend(page.nodes)
    return seen


@pytest.fixture(scope="module")
def fuzz_dbs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    return [
        _fuzz_db(tmp, "plain.lmdb", False, False),
        _fuzz_db(tmp, "subdbs.lmdb", True, False),
        _fuzz_db(tmp, "compact.lmdb", True, True),
    ]


def _exercise(path: str, names: list, probes: list) -> str:
    """Use every read path; return "ok" or "error" for the two accepted error types."""
    try:
        with PureEnvironment(path, max_cached_pages=8) as env:
            env.stat()
            env.info()
            for name in [None] + names:
                try:
                    db = None if name is None else env.open_db(name)
                except KeyError:  # the corruption hit the name itself: legitimately absent
                    continue
                for key, val in env.items(db=db):
                    assert type(key) is bytes and type(val) is bytes
                for key in probes:
                    env.get(key, db=db)
                for _ in env.keys(db=db, start=probes[len(probes) // 2]):
                    pass
        return "ok"
    except (LmdbFormatError, NotImplementedError):
        return "error"


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


# -- truncation and corruption ----------------------------------------------------


def test_truncated_files_raise(fuzz_dbs, tmp_path: Path) -> None:
    rng = random.Random(7)
    for src, _names, _probes, _tree in fuzz_dbs:
        data = Path(src).read_bytes()
        size, ps = len(data), 4096
        cuts = {
            0,
            1,
            15,
            16,
            100,
            151,
            152,
            153,
            ps - 1,
            ps,
            ps + 1,
            ps + 152,
            2 * ps - 1,
            2 * ps,
            2 * ps + 1,
            size // 2,
            size - ps,
            size - ps + 1,
            size - 1,
        }
        cuts.update(rng.randrange(size) for _ in range(15))
        for cut in sorted(c for c in cuts if 0 <= c < size):
            path = _write(tmp_path / "cut.lmdb", data[:cut])
            with pytest.raises(LmdbFormatError):
                PureEnvironment(path)


def _mutate(data: bytearray, rng: random.Random, mode: str, tree: List[int], ps: int = 4096) -> None:
    for _ in range(rng.randint(1, 6)):
        if mode == "meta":
            pos = rng.randrange(2) * ps + rng.randrange(16 + 136)
        elif mode == "header":  # header of a live branch/leaf page
            pos = rng.choice(tree) * ps + rng.randrange(16)
        elif mode == "nodes":  # pointer array or nodes of a live page
            pos = rng.choice(tree) * ps + rng.choice([rng.randrange(16, 80), rng.randrange(80, ps)])
        else:
            pos = rng.randrange(len(data))
        data[pos] ^= rng.randint(1, 255)


@pytest.mark.parametrize("mode", ["anywhere", "meta", "header", "nodes"])
def test_random_corruption_never_crashes(fuzz_dbs, tmp_path: Path, mode: str) -> None:
    outcomes = {"ok": 0, "error": 0}
    for k, (src, names, probes, tree) in enumerate(fuzz_dbs):
        original = Path(src).read_bytes()
        for seed in range(FUZZ_ROUNDS):
            rng = random.Random(f"{mode}-{k}-{seed}")
            data = bytearray(original)
            _mutate(data, rng, mode, tree)
            outcomes[_exercise(_write(tmp_path / "bad.lmdb", bytes(data)), names, probes)] += 1
    assert outcomes["ok"] + outcomes["error"] == 3 * FUZZ_ROUNDS
    if mode in ("meta", "header", "nodes"):
        assert outcomes["error"] >= FUZZ_ROUNDS // 2  # the checks really fire


def test_hypothesis_byte_flips(fuzz_dbs, tmp_path_factory) -> None:
    hyp = pytest.importorskip("hypothesis")
    st = hyp.strategies
    src, names, probes, _tree = fuzz_dbs[1]
    original = Path(src).read_bytes()
    out = tmp_path_factory.mktemp("hyp") / "h.lmdb"
    flips = st.lists(st.tuples(st.integers(0, len(original) - 1), st.integers(1, 255)), min_size=1, max_size=8)

    @hyp.settings(max_examples=300, deadline=None, derandomize=True, database=None)
    @hyp.given(flips)
    def run(changes):
        data = bytearray(original)
        for pos, xor in changes:
            data[pos] ^= xor
        assert _exercise(_write(out, bytes(data)), names, probes) in ("ok", "error")

    run()


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


def test_shared_between_threads(fuzz_dbs) -> None:
    src, names, _probes, _tree = fuzz_dbs[2]
    with open_pure(src, max_cached_pages=4) as env:  # tiny cache: constant eviction
        want = [list(env.items(db=n)) for n in [None] + names]
        results: list = []
        workers = [
            threading.Thread(target=lambda: results.append([list(env.items(db=n)) for n in [None] + names]))
            for _ in range(4)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    assert results == [want] * 4


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
