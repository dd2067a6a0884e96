"""edgeaug.device.lmdbpure on damaged files: truncated or randomly corrupted, an LmdbFormatError, never a crash.

Three fuzz databases (plain, with sub-databases, compacted) are built once for the module; the reader is
also shared between threads over one of them.
"""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path
from typing import List, Tuple

import pytest
from lmdb_corpus import SUB_NAMES
from lmdb_corpus import random_key as _rand_key
from lmdb_corpus import random_value as _value
from lmdb_corpus import write_file as _write

lmdb = pytest.importorskip("lmdb")

from edgeaug.device.lmdbpure import (  # noqa: E402
    LmdbFormatError,
    PureEnvironment,
    open_pure,
)

FUZZ_ROUNDS = 150  # mutations per fuzz database and mode


# -- the fuzz databases ----------------------------------------------------------------


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


# -- one reader, several threads ------------------------------------------------------


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
