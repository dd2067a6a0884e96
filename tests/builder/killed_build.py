"""Builds killed at exact points, for the crash-safety tests (tests/builder/test_resume_*.py).

Hooks make the process SIGKILL itself at the n-th call of a builder function or the n-th put of a write
transaction; :func:`killed_build` runs a build so hooked in a forked child (cheap: no re-import).
"""

import os
import signal
from pathlib import Path

import edgeaug.builder.chunks as chunks
import edgeaug.builder.merge as merge
import edgeaug.builder.workers as workers
import edgeaug.builder.writer as writer
from edgeaug.builder.pipeline import build

#: The resume tests' build: 12 sources of ``data`` (tests/builder/conftest.py), 28 records.
ARGS = dict(target="rpi-zero2w", variants=2, seed=7, workers=1, val=0.25)


def die() -> None:
    """SIGKILL this process (no cleanup of any kind runs)."""
    os.kill(os.getpid(), signal.SIGKILL)


def after_nth(obj, name: str, n: int, before: bool = False) -> None:
    """Make ``obj.name`` SIGKILL the process at its n-th call (before or after running it)."""
    real, calls = getattr(obj, name), [0]

    def hooked(*a, **k):
        calls[0] += 1
        if before and calls[0] == n:
            die()
        out = real(*a, **k)
        if calls[0] == n:
            die()
        return out

    setattr(obj, name, hooked)


def hook_nth_put(n: int, on_nth_put) -> None:
    """Wrap ``lmdb.open`` so that the n-th put in a write transaction calls ``on_nth_put()``.

    Used in forked children and under monkeypatch; every other call passes through.
    """
    import lmdb

    real_open, puts = lmdb.open, [0]

    class Txn:
        def __init__(self, txn):
            self.txn = txn

        def __enter__(self):
            self.txn.__enter__()
            return self

        def __exit__(self, *exc):
            return self.txn.__exit__(*exc)

        def put(self, *a, **k):
            puts[0] += 1
            if puts[0] == n:
                on_nth_put()
            return self.txn.put(*a, **k)

        def delete(self, *a, **k):
            return self.txn.delete(*a, **k)

    class Env:
        def __init__(self, env):
            self.env = env

        def begin(self, write=False, **k):
            txn = self.env.begin(write=write, **k)
            return Txn(txn) if write else txn

        def __getattr__(self, name):
            return getattr(self.env, name)

    lmdb.open = lambda *a, **k: Env(real_open(*a, **k))


def kill_inside_txn(n: int) -> None:
    """SIGKILL after the n-th put inside a write transaction (nothing of it is committed)."""
    hook_nth_put(n, die)


def killed_build(data: Path, out: Path, point: str, n: int) -> int:
    """Run the build in a forked child that SIGKILLs itself at ``point``; return its wait status."""
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        try:
            chunks.CHUNK_RECORDS = 1
            if point == "commit":
                after_nth(chunks, "write", n)
            elif point == "render":
                after_nth(workers, "render_source", n, before=True)
            elif point == "txn":
                kill_inside_txn(n)
            elif point == "seal":
                after_nth(merge, "seal", n, before=True)
            elif point == "sealed":
                after_nth(merge, "seal", n)
            elif point == "replaced":
                after_nth(writer, "_fsync_dir", n, before=True)
            build(data, out, **ARGS)
        finally:
            os._exit(3)
    return os.waitpid(pid, 0)[1]
