"""edgeaug.device.lmdbpure against py-lmdb: a corpus of generated databases read both ways must agree."""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
from lmdb_corpus import SUB_NAMES
from lmdb_corpus import random_key as _rand_key
from lmdb_corpus import random_value as _value

lmdb = pytest.importorskip("lmdb")

from edgeaug.device.lmdbpure import (  # noqa: E402
    PureDatabase,
    PureEnvironment,
    open_pure,
)

N_DATABASES = 60
STAT_KEYS = ("psize", "depth", "branch_pages", "leaf_pages", "overflow_pages", "entries")
MISSING = object()

Pairs = List[Tuple[bytes, bytes]]


# -- corpus generation ---------------------------------------------------------


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
