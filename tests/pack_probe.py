"""Probe damaged or crafted packs in a child process: a clear PackError or reported problems, never a crash.

Damaged files are read in child processes (a SIGBUS or segfault would kill
the test runner): each child opens a list of files with one backend and
exercises ``Pack(...)``, ``pack[i]``, ``pack.record``, ``pack.batches``,
``pack.verify()`` and ``python -m edgeaug.loader verify``, printing one JSON
line per file.  A file whose damage passes every check must hold exactly the
original keys and values: nothing is ever silently corrupted.

Used by tests/device/test_untrusted_*.py; :func:`craft` re-signs a pack's changed values like an attacker would.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import lmdb

from edgeaug.device import format as F
from edgeaug.device.loader import Pack

REPO = Path(__file__).resolve().parents[1]
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
