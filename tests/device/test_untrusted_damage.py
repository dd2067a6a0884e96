"""Untrusted packs, damaged: truncated or bit-flipped at random.  A clear PackError, never a crash.

The packs (``packs``) are built once in tests/device/conftest.py; each damaged file is read in a child
process by every backend (tests/pack_probe.py).  A file whose damage passes every check must hold exactly
the original keys and values: nothing is ever silently corrupted.
"""

import random
import struct

from pack_probe import BACKENDS, assert_no_crash, content_sha, probe

from edgeaug.device import format as F
from edgeaug.device.codec import CODECS
from edgeaug.device.loader import Pack


def test_compressed_twins_hold_compressed_records_of_the_same_content(packs):
    for codec in set(packs) - {"big", "tiny"}:
        with Pack(str(packs[codec])) as p, Pack(str(packs["big"])) as raw:
            assert p.info()["compression"]["codec"] == codec
            methods = {F.RecordHeader(p._db.get(F.record_key(r))).method & 0x0F for r in range(p.records)}
            assert methods == {CODECS[codec]}  # every tensor is stored compressed
            assert (p._index["digest"] == raw._index["digest"]).all()


# --- truncation and bit flips --------------------------------------------------------------


def test_truncated_at_many_offsets(packs, tmp_path):
    files = []
    for name, src in packs.items():
        data = src.read_bytes()
        rng = random.Random(7)
        cuts = set(range(0, len(data), 4096)) | {1, 15, 100, 4095, 4097, 8191, len(data) - 1}
        cuts |= {rng.randrange(len(data)) for _ in range(20)}
        for c in sorted(cuts):
            p = tmp_path / f"{name}-cut{c}.lmdb"
            p.write_bytes(data[:c])
            files.append(p)
    for backend in BACKENDS:
        res = probe(files, backend)
        assert_no_crash(res, backend)
        assert all(d["open"] == "PackError" for d in res.values())  # every cut is detected at open
    print(f"{len(files)} truncations x {len(BACKENDS)} backends")


def _structure_pages(data: bytes):
    """Meta, branch and leaf pages (the LMDB structure a native reader trusts)."""
    return [i for i in range(len(data) // 4096) if struct.unpack_from("<H", data, i * 4096 + 10)[0] & 0x0B]


def test_random_bit_flips(packs, tmp_path):
    files, original = [], {}
    for name, src in packs.items():
        data, rng = src.read_bytes(), random.Random(name)  # str seeds are stable across runs
        pages = _structure_pages(data)
        original[name] = content_sha(src)
        for t in range(120):
            b = bytearray(data)
            if t % 3 == 0:  # anywhere
                pos = rng.randrange(len(b))
                b[pos] ^= 1 << rng.randrange(8)
            elif t % 3 == 1:  # in the B-tree structure
                pos = rng.choice(pages) * 4096 + rng.randrange(4096 if rng.random() < 0.7 else 64)
                b[pos] ^= 1 << rng.randrange(8)
            else:  # a run of random bytes
                pos, n = rng.randrange(len(b)), rng.randint(2, 64)
                b[pos : pos + n] = bytes(rng.randrange(256) for _ in range(n))[: len(b) - pos]
            p = tmp_path / f"{name}-flip{t}.lmdb"
            p.write_bytes(bytes(b))
            files.append((p, name))
    tally = {}
    for backend in BACKENDS:
        res = probe([p for p, _ in files], backend)
        assert_no_crash(res, backend)
        for p, name in files:
            d = res[str(p)]
            if d["open"] == "ok" and d["verify"] == [] and not d["getitem"] and not d["record"]:
                # passed every check: then it reads exactly the original content
                assert d["content"] == original[name], (backend, p.name)
                outcome = "clean"
            elif d["open"] != "ok":
                outcome = "refused at open"
            else:
                outcome = "reported"
            tally[outcome] = tally.get(outcome, 0) + 1
    print(f"{len(files)} flipped files x {len(BACKENDS)} backends: {tally}")
