"""Untrusted packs and their readers: several processes at once, read-only media, no pickle/eval/exec.

The packs (``packs``) are built once in tests/device/conftest.py.
"""

import ast
import hashlib
import multiprocessing as mp
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from pack_probe import REPO

from edgeaug.device.loader import Pack

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
