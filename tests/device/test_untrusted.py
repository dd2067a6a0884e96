"""Untrusted packs: truncated, bit-flipped, crafted.  A clear PackError or reported problems, never a crash.

Damaged files are read in child processes (a SIGBUS or segfault would kill
the test runner): each child opens a list of files with one backend and
exercises ``Pack(...)``, ``pack[i]``, ``pack.record``, ``pack.batches``,
``pack.verify()`` and ``python -m edgeaug.loader verify``, printing one JSON
line per file.  A file whose damage passes every check must hold exactly the
original keys and values: nothing is ever silently corrupted.
"""

import ast
import hashlib
import json
import multiprocessing as mp
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import lmdb
import numpy as np
import pytest
from craft_manifest import drop_field as _drop
from craft_manifest import set_field as _set
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeaug.builder.pipeline import build
from edgeaug.device import format as F
from edgeaug.device import labels as L
from edgeaug.device.codec import CODECS
from edgeaug.device.loader import Pack, PackError
from edgeaug.device.manifest import validate_manifest

REPO = Path(__file__).resolve().parents[2]
# backend[+batch reader]: without one, the reader "auto" picks (mmap here: the packs are small)
BACKENDS = ("lmdb", "pure", "lmdb+pread", "pure+pread")

CHILD = r"""
import contextlib, hashlib, io, json, signal, sys
from edgeaug.device import format as F
from edgeaug.device import labels as L
from edgeaug.device.loader import Pack, PackError, main

class Hang(Exception):
    pass

def _alarm(*a):
    raise Hang()

signal.signal(signal.SIGALRM, _alarm)
backend, _, reader = sys.argv[1].partition("+")
reader = reader or "auto"

def kind(e):
    return "PackError" if isinstance(e, PackError) else "EXC:" + type(e).__name__ + ":" + str(e)[:200]

def probe(path):
    out = {"name": path, "open": "ok", "getitem": [], "record": [], "batches": "ok", "verify": None,
           "content": None}
    try:
        p = Pack(path, backend=backend, reader=reader)
    except Exception as e:
        out["open"] = kind(e)
        return out
    with p:
        with contextlib.suppress(Exception):
            Pack(path, "val", backend=backend, reader=reader).close()
        for i in range(len(p)):
            try:
                p[i]
            except Exception as e:
                out["getitem"].append([i, kind(e)])
            try:
                p.record(i)
            except Exception as e:
                out["record"].append([i, kind(e)])
        try:
            for _ in p.batches(4, all_variants=True):
                pass
        except Exception as e:
            out["batches"] = kind(e)
        try:
            out["verify"] = p.verify()
            p.info(); p.device_warnings()
        except Exception as e:
            out["verify"] = kind(e)
        if out["verify"] == []:  # passed every check: hash what the reader sees
            h = hashlib.sha256()
            for key in [F.record_key(r) for r in range(p.records)] + [F.INDEX_KEY, F.MANIFEST_KEY]:
                h.update(key + bytes(p._db.get(key)))
            out["content"] = h.hexdigest()
    return out

for path in sys.stdin.read().split():
    signal.alarm(20)
    try:
        out = probe(path)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            out["cli"] = main(["verify", path, "--backend", backend])
    except Hang:
        out = {"name": path, "open": "HANG"}
    except BaseException as e:
        out = {"name": path, "open": "EXC:" + type(e).__name__ + ":" + str(e)[:200]}
    signal.alarm(0)
    print(json.dumps(out), flush=True)
"""


def probe(paths, backend):
    """Run the child over ``paths``; return {path: result}. Fails if the child dies."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO)
    r = subprocess.run(
        [sys.executable, "-c", CHILD, backend],
        input="\n".join(map(str, paths)),
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    results = {}
    for line in r.stdout.splitlines():
        d = json.loads(line)
        results[d["name"]] = d
    done = len(results)
    assert r.returncode == 0, (
        f"child died with {r.returncode} on {paths[done] if done < len(paths) else '?'}",
        r.stderr[-2000:],
    )
    assert done == len(paths)
    return results


def content_sha(path: Path) -> str:
    """What the loader reads from an intact pack (same order as the child)."""
    h = hashlib.sha256()
    with Pack(str(path)) as p:
        for key in [F.record_key(r) for r in range(p.records)] + [F.INDEX_KEY, F.MANIFEST_KEY]:
            h.update(key + bytes(p._db.get(key)))
    return h.hexdigest()


def assert_no_crash(res, backend):
    for name, d in res.items():
        bad = [d["open"]] + [e for _, e in d.get("getitem", [])] + [e for _, e in d.get("record", [])]
        bad += [d.get("batches", "ok")] + ([d["verify"]] if isinstance(d.get("verify"), str) else [])
        bad = [b for b in bad if b not in ("ok", "PackError")]
        assert not bad, (backend, name, bad)
        assert d.get("cli", 2) in (0, 1, 2), (backend, name, d.get("cli"))


# --- packs to damage -----------------------------------------------------------------


@pytest.fixture(scope="module")
def packs(tmp_path_factory, shapes_dir, tiny_target):
    """A pack of 9 KB records (overflow pages) and one of ~0.5 KB records (inline in leaves)."""
    d = tmp_path_factory.mktemp("untrusted")
    big = d / "z2.lmdb"
    build(shapes_dir, big, "rpi-zero2w", variants=1, seed=3, workers=1, val=0.25)
    rows = []
    for i, f in enumerate(sorted(shapes_dir.rglob("*.png"))[:6]):
        rows.append(
            {
                "path": str(f.relative_to(shapes_dir)),
                "label": f.parent.name,
                "boxes": [[0, 10, 10, 60 + i, 50]],
                "keypoints": [[20, 30, 1], [40, 40, 1]],
            }
        )
    (shapes_dir / "tiny.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tiny = d / "tiny.lmdb"
    build(shapes_dir / "tiny.jsonl", tiny, tiny_target, variants=2, seed=3, workers=1, val=0.3)
    (shapes_dir / "tiny.jsonl").unlink()
    out = {"big": big, "tiny": tiny}
    # Compressed twins of "big" (the same records): the sweeps below damage their compressed tensors too.
    for codec in ("zlib", "zstd") if _has_zstd() else ("zlib",):
        out[codec] = d / f"z2-{codec}.lmdb"
        build(shapes_dir, out[codec], "rpi-zero2w", variants=1, seed=3, workers=1, val=0.25, compress=codec)
    return out


def _has_zstd() -> bool:
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return False
    return True


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


# --- crafted manifests and records --------------------------------------------------


def read_kv(path: Path):
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
    with env.begin() as txn:
        m, idx = json.loads(txn.get(F.MANIFEST_KEY)), txn.get(F.INDEX_KEY)
        recs = {k: v for k, v in txn.cursor() if k.startswith(b"r")}
    env.close()
    return m, idx, recs


def craft(src: Path, dst: Path, manifest=None, records=None, refingerprint=True, index=None) -> Path:
    """Copy ``src`` to ``dst`` with some values replaced, re-signed like an attacker would."""
    shutil.copy(src, dst)
    m, idx, _ = read_kv(src)
    env = lmdb.open(str(dst), subdir=False, lock=False, map_size=1 << 30)
    with env.begin(write=True) as txn:
        if index is not None:
            idx = index(idx)
            txn.put(F.INDEX_KEY, idx)
        if manifest is not None:
            new = manifest(json.loads(json.dumps(m)))
            if isinstance(new, dict) and refingerprint:
                body = {k: v for k, v in new.items() if k != "fingerprint"}
                try:
                    new["fingerprint"] = F.fingerprint(body, idx)
                except ValueError:  # NaN/inf have no canonical JSON; the reader rejects them anyway
                    new["fingerprint"] = "0" * 64
            raw = new if isinstance(new, bytes) else json.dumps(new).encode()
            txn.put(F.MANIFEST_KEY, raw)
        elif index is not None:
            m["fingerprint"] = F.fingerprint({k: v for k, v in m.items() if k != "fingerprint"}, idx)
            txn.put(F.MANIFEST_KEY, json.dumps(m).encode())
        for key, value in (records or {}).items():
            txn.put(key, value)
    env.close()
    return dst


MANIFEST_CRAFTS = {
    "not-an-object": lambda m: [1, 2, 3],
    "a-string": lambda m: "manifest",
    "null": lambda m: None,
    "not-json": lambda m: b"{this is not json",
    "not-utf8": lambda m: b'{"a": "\xff\xfe"}',
    "deep-nesting": lambda m: b'{"x": ' + b"[" * 100000 + b"]" * 100000 + b"}",
    "deep-in-target": lambda m: b'{"format_version": 1, "target": ' + b"[" * 50000 + b"]" * 50000 + b"}",
    "huge-int": lambda m: b'{"format_version": 1, "records": ' + b"9" * 5000 + b"}",
    "nan-records": lambda m: _set(["records"], float("nan"))(m),
    "version-4": _set(["format_version"], 4),
    "version-0": _set(["format_version"], 0),
    "version-string": _set(["format_version"], "1"),
    "version-true": _set(["format_version"], True),
    "records-negative": _set(["records"], -5),
    "records-huge": _set(["records"], 2**40),
    "records-float-inf": _set(["records"], 1e999),
    "records-string": _set(["records"], "28"),
    "records-more-than-index": lambda m: _set(["records"], m["records"] + 1)(m),
    "no-target": _drop(["target"]),
    "target-list": _set(["target"], [224, 224, 3]),
    "height-zero": _set(["target", "height"], 0),
    "height-negative": _set(["target", "height"], -96),
    "height-huge": _set(["target", "height"], 10**12),
    "height-float": _set(["target", "height"], 96.5),
    "channels-9": _set(["target", "channels"], 9),
    "dtype-object": _set(["target", "dtype"], "object"),
    "dtype-float64": _set(["target", "dtype"], "float64"),
    "layout-odd": _set(["target", "layout"], "CHWN"),
    "device-list": _set(["target", "device"], ["x"]),
    "shape-mismatch": _set(["target", "height"], 95),
    "splits-missing": _drop(["splits"]),
    "split-negative-count": _set(["splits", "val", "count"], -1),
    "split-beyond": _set(["splits", "val", "start"], 10**6),
    "split-string": _set(["splits", "train"], "all"),
    "classes-dict": _set(["classes"], {"a": 1}),
    "classes-ints": _set(["classes"], [1, 2]),
    "seed-negative": _set(["seed"], -1),
    "seed-float": _set(["seed"], 1.5),
    "seed-list": _set(["seed"], [1]),
    "sources-not-list": _set(["sources"], {"0": "x"}),
    "sources-empty": _set(["sources"], []),
    "source-escapes": lambda m: _set(["sources", 0, "path"], "../../etc/passwd")(m),
    "source-absolute": lambda m: _set(["sources", 0, "path"], "/etc/passwd")(m),
    "source-nul": lambda m: _set(["sources", 0, "path"], "a\u0000b.png")(m),
    "source-label-str": lambda m: _set(["sources", 0, "label"], "cat")(m),
    "recipe-list": _set(["recipe"], []),
    "recipe-ops-str": _set(["recipe", "ops"], "hflip"),
    "skipped-str": _set(["skipped"], "none"),
    "fingerprint-int": _set(["fingerprint"], 5),
    # fields the online flip/shift reads (the border's fill value, keypoint pairs)
    "scale-missing": _drop(["target", "scale"]),
    "scale-zero": _set(["target", "scale"], 0),
    "scale-string": _set(["target", "scale"], "1/255"),
    "zero-point-out-of-range": _set(["target", "zero_point"], 300),
    "std-zero": lambda m: _set(["target", "std"], [0.0] * m["target"]["channels"])(m),
    "mean-too-few": _set(["target", "mean"], []),
    "mean-wrong-length": lambda m: _set(["target", "mean"], [0.0] * (m["target"]["channels"] + 1))(m),
    "fill-300": _set(["recipe", "fill"], 300),
    "min-visibility-2": _set(["recipe", "min_visibility"], 2),
    "flip-idx-out-of-range": _set(["keypoint_flip_idx"], [0, 5]),
    "flip-idx-strings": _set(["keypoint_flip_idx"], ["left", "right"]),
    "wrong-fingerprint": None,  # below: not re-signed
}


@pytest.mark.parametrize("which", ["big", "tiny"])
def test_crafted_manifests(packs, tmp_path, which):
    files = {}
    for name, fn in MANIFEST_CRAFTS.items():
        dst = tmp_path / f"{name}.lmdb"
        if fn is None:
            files[name] = craft(packs[which], dst, _set(["seed"], 99), refingerprint=False)
        else:
            files[name] = craft(packs[which], dst, fn, refingerprint=name != "fingerprint-int")
    for backend in BACKENDS:
        res = probe(list(files.values()), backend)
        assert_no_crash(res, backend)
        for name, path in files.items():
            d = res[str(path)]
            if name == "shape-mismatch":  # a consistent lie: it opens, but no record reads as that shape
                n = len(d["getitem"])
                assert d["open"] == "ok" and n > 0 and n == len(d["record"]) and d["batches"] == "PackError"
                assert len(d["verify"]) > n and d["cli"] == 1, d
            else:
                assert d["open"] == "PackError" and d["cli"] == 2, (backend, name, d)


def test_crafted_index(packs, tmp_path):
    def source_beyond(idx):
        a = np.frombuffer(idx, F.INDEX_DTYPE).copy()
        a["source"][0] = 10**6
        return a.tobytes()

    def split_7(idx):
        a = np.frombuffer(idx, F.INDEX_DTYPE).copy()
        a["split"][0] = 7
        return a.tobytes()

    def out_of_order(idx):
        a = np.frombuffer(idx, F.INDEX_DTYPE).copy()
        a["source"][0], a["source"][-1] = a["source"][-1], a["source"][0]
        return a.tobytes()

    files = {
        n: craft(packs["tiny"], tmp_path / f"{n}.lmdb", index=f)
        for n, f in [
            ("source-beyond", source_beyond),
            ("split-7", split_7),
            ("unordered", out_of_order),
            ("short", lambda idx: idx[:-44]),
            ("odd-size", lambda idx: idx + b"x"),
        ]
    }
    for backend in BACKENDS:
        res = probe(list(files.values()), backend)
        assert_no_crash(res, backend)
        assert all(d["open"] == "PackError" for d in res.values()), res


def _header(value: bytes, **fields) -> bytes:
    names = ["magic", "version", "hsize", "digest", "t", "l", "p", "label", "source", "variant", "split", "reserved"]
    vals = dict(zip(names, F.RECORD_HEADER.unpack_from(value, 0)))
    vals.update(fields)
    return F.RECORD_HEADER.pack(*[vals[n] for n in names]) + value[F.RECORD_HEADER.size :]


def _extended(value: bytes) -> bytes:
    """The record as version 3 with empty instance and mix counts (what a record with neither would be)."""
    h = F.RecordHeader(value)
    value = value[: h.params_offset] + bytes(8) + value[h.params_offset :]
    return _header(value, version=F.EXTENDED_LABELS, l=h.labels_nbytes + 8)


def _at_labels_end(value: bytes, back: int, count: int) -> bytes:
    """``value`` (made version 3) with the u4 ``back`` bytes before its labels section's end set to ``count``."""
    value = _extended(value)
    at = F.RecordHeader(value).params_offset - back
    assert value[at : at + 4] == b"\0\0\0\0"
    return value[:at] + struct.pack("<I", count) + value[at + 4 :]


RECORD_CRAFTS = {
    "magic": lambda v, o: _header(v, magic=b"EVIL"),
    "version-4": lambda v, o: _header(v, version=4),
    "version-0": lambda v, o: _header(v, version=0),
    "header-32": lambda v, o: _header(v, hsize=32),
    "tensor-huge": lambda v, o: _header(v, t=2**32 - 1),
    "tensor-zero": lambda v, o: _header(v, t=0),
    "labels-huge": lambda v, o: _header(v, l=2**31),
    "params-short": lambda v, o: _header(v, p=1),
    "split-7": lambda v, o: _header(v, split=7),
    "reserved": lambda v, o: _header(v, reserved=1),
    "label-flipped": lambda v, o: _header(v, label=12345),
    "source-beyond": lambda v, o: _header(v, source=10**6),
    "variant": lambda v, o: _header(v, variant=999),
    "empty": lambda v, o: b"",
    "ten-bytes": lambda v, o: v[:10],
    "header-only": lambda v, o: v[:64],
    "truncated-tail": lambda v, o: v[:-1],
    "extra-tail": lambda v, o: v + b"\0",
    "other-record": lambda v, o: o,  # a valid record from elsewhere in the pack
    "labels-count-huge": lambda v, o: v[: 64 + 64] + struct.pack("<I", 2**31) + v[64 + 64 + 4 :],
    # the tiny records' labels end with the v2 instances and mix counts (0 and 0)
    "instances-huge": lambda v, o: _at_labels_end(v, 8, 2**31),
    "mix-huge": lambda v, o: _at_labels_end(v, 4, 2**31),
    "params-not-json": lambda v, o: v[:-3] + b"{{{",
    "params-deep": lambda v, o: None,  # built below
}


def test_crafted_record_headers(packs, tmp_path):
    src = packs["tiny"]
    _, _, recs = read_kv(src)
    r, other = F.record_key(1), F.record_key(4)
    files = {}
    for name, fn in RECORD_CRAFTS.items():
        if name == "params-deep":
            v = recs[r]
            h = F.RecordHeader(v)
            deep = b"[" * 50000 + b"]" * 50000
            value = _header(v[: h.params_offset] + deep, p=len(deep))
        else:
            value = fn(recs[r], recs[other])
        files[name] = craft(src, tmp_path / f"{name}.lmdb", records={r: value})
    sizes = {
        "magic",
        "version-4",
        "version-0",
        "header-32",
        "tensor-huge",
        "tensor-zero",
        "labels-huge",
        "params-short",
        "empty",
        "ten-bytes",
        "header-only",
        "truncated-tail",
        "extra-tail",
    }
    ids = {"split-7", "reserved", "source-beyond", "variant", "other-record"}
    content = {"labels-count-huge", "instances-huge", "mix-huge", "params-not-json", "params-deep"}
    assert sizes | ids | content | {"label-flipped"} == set(RECORD_CRAFTS)
    for backend in BACKENDS:
        res = probe(list(files.values()), backend)
        assert_no_crash(res, backend)
        for name, path in files.items():
            d = res[str(path)]
            assert d["open"] == "ok", (name, d)
            # verify always names the record (digests cover every byte after the digest)
            assert (
                isinstance(d["verify"], list) and d["verify"] and all(p.startswith("record 1:") for p in d["verify"])
            ), (name, d)
            assert d["cli"] == 1, (name, d)
            # batches and pack[i] check magic, version, sizes and the ids against the index;
            # record() also parses labels and params
            assert (d["batches"] == "PackError") == (name in sizes | ids), (name, d)
            assert [i for i, _ in d["getitem"]] == ([1] if name in sizes | ids else []), (name, d)
            assert [i for i, _ in d["record"]] == ([1] if name in sizes | ids | content else []), (name, d)


# --- the digests catch every flipped payload byte --------------------------------------


def test_digests_catch_every_flipped_byte_of_a_record(packs, tmp_path):
    src = packs["tiny"]
    _, _, recs = read_kv(src)
    key = F.record_key(2)
    value = recs[key]
    h = F.RecordHeader(value)
    classes = {
        "header": range(0, 64),
        "tensor": range(64, h.labels_offset),
        "labels": range(h.labels_offset, h.params_offset),
        "params": range(h.params_offset, len(value)),
    }
    assert all(len(r) for r in classes.values())
    path = tmp_path / "flip.lmdb"
    shutil.copy(src, path)
    caught = {c: 0 for c in classes}
    for cls, positions in classes.items():
        for pos in positions:
            for bit, backend in ((0, "lmdb"), (7, "pure")):
                flipped = bytearray(value)
                flipped[pos] ^= 1 << bit
                env = lmdb.open(str(path), subdir=False, lock=False, map_size=1 << 30)
                with env.begin(write=True) as txn:
                    txn.put(key, bytes(flipped))
                env.close()  # py-lmdb allows one environment per file per process
                with Pack(str(path), backend=backend) as p:
                    problems = p.verify()
                assert problems and all(x.startswith("record 2:") for x in problems), (cls, pos, bit)
                caught[cls] += 1
    assert caught == {c: 2 * len(r) for c, r in classes.items()}
    print(f"flipped bits caught: {caught}")


# --- property tests: the parsers never fail with anything but FormatError ----------------


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=200))
def test_record_header_parser_on_arbitrary_bytes(data):
    try:
        h = F.RecordHeader(data)
    except F.FormatError:
        return
    assert F.HEADER_SIZE + h.tensor_nbytes + h.labels_nbytes + h.params_nbytes == len(data)
    assert h.split in (0, 1) and h.params_offset <= len(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 16), st.integers(1, 16))
def test_labels_parser_on_arbitrary_bytes(data, h, w):
    try:
        out = L.unpack_labels(data, (h, w))
    except F.FormatError:
        return
    n = 20 + out["boxes"].nbytes + out["keypoints"].nbytes + (0 if out["mask"] is None else out["mask"].size)
    assert n + 8 * len(out["mix"]) <= len(data)  # the instances' run bytes are the rest
    assert (out["instances"] is None) == (n + 8 * len(out["mix"]) == len(data))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-1e6, 1e6, width=32),
            st.floats(-1e6, 1e6, width=32),
            st.floats(-1e6, 1e6, width=32),
            st.floats(-1e6, 1e6, width=32),
            st.floats(-1e6, 1e6, width=32),
        ),
        max_size=20,
    ),
    st.lists(
        st.tuples(st.floats(-1e3, 1e3, width=32), st.floats(-1e3, 1e3, width=32), st.sampled_from([0.0, 1.0])),
        max_size=20,
    ),
    st.booleans(),
)
def test_labels_roundtrip(boxes, kps, with_mask):
    b = np.array(boxes, np.float32).reshape(-1, 5)
    k = np.array(kps, np.float32).reshape(-1, 3)
    m = np.arange(12, dtype=np.uint8).reshape(3, 4) if with_mask else None
    out = L.unpack_labels(L.pack_labels(b, k, m), (3, 4))
    assert np.array_equal(out["boxes"], b) and np.array_equal(out["keypoints"], k)
    assert (out["mask"] is None) == (m is None)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_manifest_validation_on_arbitrary_json(value):
    try:
        validate_manifest(value)
    except F.FormatError:
        return
    raise AssertionError("random JSON passed as a manifest")


@pytest.fixture(scope="module")
def valid_manifest(packs):
    return read_kv(packs["tiny"])[0]


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:3]):
            yield from _paths(v, prefix + (i,))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_manifest_validation_on_mutated_manifests(valid_manifest, data):
    """Replace any one field of a real manifest with any JSON value: a FormatError or a usable manifest."""
    m = json.loads(json.dumps(valid_manifest))
    validate_manifest(m)
    path = data.draw(st.sampled_from([p for p in _paths(m) if p]))
    d = m
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = data.draw(JSON)
    try:
        validate_manifest(m)
    except F.FormatError as e:
        assert str(e).startswith("manifest: ")
        return
    # accepted: then the fields a reader uses have the right types
    t = m["target"]
    assert F.tensor_shape(t) and F.tensor_dtype(t["dtype"]) and isinstance(m["records"], int)
    assert all(isinstance(s["path"], str) and ".." not in s["path"].split("/") for s in m["sources"])


# --- several readers, read-only media ------------------------------------------------


def _digest_all(path: str) -> list:
    with Pack(path) as p:
        return [hashlib.sha256(bytes(p.record_at(r)["x"].tobytes())).hexdigest() for r in range(p.records)] + [
            str(p.verify())
        ]


def test_several_processes_read_one_pack_at_once(packs):
    path = str(packs["big"])
    want = _digest_all(path)
    with mp.get_context("spawn").Pool(4) as pool:
        got = pool.map(_digest_all, [path] * 8)
    assert all(g == want for g in got) and want[-1] == "[]"


def test_read_only_pack_opens_without_a_lock_file(packs):
    """chmod 0444 pack in a 0555 folder, read by a user who may not write there (root: 'nobody')."""
    from edgeaug.device import lmdbpure  # noqa: F401  (imported before dropping privileges)

    base = Path(tempfile.mkdtemp(prefix="edgeaug-ro-"))
    ro = base / "ro"
    try:
        ro.mkdir()
        shutil.copy(packs["big"], ro / "p.lmdb")
        os.chmod(ro / "p.lmdb", 0o444)
        os.chmod(ro, 0o555)
        os.chmod(base, 0o755)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                if os.geteuid() == 0:
                    os.setgid(65534)
                    os.setuid(65534)
                try:
                    (ro / "lock-test").write_text("x")
                    code = 3  # could write: the test proves nothing
                except PermissionError:
                    for be in ("lmdb", "pure"):
                        with Pack(str(ro / "p.lmdb"), backend=be) as p:
                            assert p.verify() == [] and sum(len(x) for x, _ in p.batches(8, all_variants=True)) == len(
                                p
                            )
                    code = 0
            except BaseException as e:  # report it: the parent asserts on the exit code
                os.write(2, f"read-only child: {e!r}\n".encode())
            finally:
                os._exit(code)
        status = os.waitpid(pid, 0)[1]
        if os.WEXITSTATUS(status) == 3:
            pytest.skip("no user without write permission available")
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        assert os.listdir(ro) == ["p.lmdb"]  # no lock file was needed or made
    finally:
        os.chmod(ro, 0o755)
        shutil.rmtree(base, ignore_errors=True)


# --- security -------------------------------------------------------------------------

FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "execfile"}
FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve", "yaml", "jsonpickle"}


def test_no_pickle_eval_or_exec_in_the_package():
    hits = []
    for path in sorted((REPO / "edgeaug").glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
                if name in FORBIDDEN_CALLS:
                    hits.append(f"{path.name}:{node.lineno}: {name}()")
                if name == "load" and any(k.arg == "allow_pickle" for k in node.keywords):
                    hits.append(f"{path.name}:{node.lineno}: np.load(allow_pickle=...)")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                hits += [f"{path.name}:{node.lineno}: import {m}" for m in mods if m.split(".")[0] in FORBIDDEN_MODULES]
    assert hits == []


def test_manifest_paths_cannot_leave_the_source_root(packs, tmp_path, shapes_dir):
    """A crafted (re-signed) pack naming ../ or absolute source paths is refused by the loader and verify."""
    from typer.testing import CliRunner

    from edgeaug.cli import app

    secret = shapes_dir.parent / "secret.png"
    shutil.copy(next(shapes_dir.rglob("*.png")), secret)
    for bad in ("../secret.png", str(secret), "circle/../../secret.png"):
        p = craft(packs["big"], tmp_path / "escape.lmdb", _set(["sources", 0, "path"], bad))
        with pytest.raises(PackError, match="not a relative path inside the source root"):
            Pack(str(p))
        r = CliRunner().invoke(app, ["verify", str(p), "--source", str(shapes_dir)])
        assert r.exit_code == 2 and "not a relative path inside the source root" in r.output
    secret.unlink()
