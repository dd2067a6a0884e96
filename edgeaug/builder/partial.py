"""The partial build folder ``OUT.partial/`` next to the output, and its locks.

It holds the chunk files (:mod:`.chunks`) rendered so far, a ``plan.json``
naming the plan they belong to, and a ``lock`` file: a build that merges and
seals takes it exclusively, shards (``--shard I/N``) take it shared, so any
number of shards run at once but never alongside a sealing build.  A build
killed at any point keeps every finished chunk; the same command resumes there.

Locks are POSIX ``flock`` locks: a system without :mod:`fcntl` is refused,
because two unlocked builds of one output would delete each other's files.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from edgeaug.device.format import canonical_json

PLAN_VERSION = 2


class WriteError(RuntimeError):
    """The pack or the partial build could not be written (disk or map full, out-of-order key, locked)."""


def kept(what: str, path: Path) -> str:
    """``what`` and where the rendered sources are kept (``path``: the pack or its ``.tmp``)."""
    name = path.name[: -len(".tmp")] if path.name.endswith(".tmp") else path.name
    return f"{what}; the rendered sources are kept in {name}.partial: free space and rerun the same command to resume"


def _fcntl() -> Any:
    """The fcntl module, or a WriteError: without file locks, two builds of one output would corrupt each other."""
    try:
        import fcntl
    except ImportError:
        raise WriteError(
            "building needs file locks (Python's fcntl module, on Linux or macOS), and this system has none: "
            "without them two builds of one output would delete each other's files; build on Linux or macOS "
            "(on Windows, in WSL)"
        ) from None
    return fcntl


class Partial:
    """The partial build folder next to the output: its lock, its plan, its chunk files.

    ``shared=True`` (a shard) takes the lock shared; otherwise exclusively,
    and a second build of the same output is refused.
    """

    def __init__(self, out: Path, shared: bool = False) -> None:
        fcntl = _fcntl()  # refuse before anything is created
        self.out = out
        self.dir = out.with_name(out.name + ".partial")
        self.note = ""
        if self.dir.is_file() or self.dir.with_name(self.dir.name + ".json").exists():
            self._drop_old_format()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WriteError(f"{self.dir}: cannot create the partial build folder: {e.strerror or e}") from None
        self._lock_fd: Optional[int] = _lock(fcntl, self.dir / "lock", out, shared)

    def _drop_old_format(self) -> None:
        """An interrupted build of an older edgeaug (one LMDB file): it cannot be resumed."""
        side = self.dir.with_name(self.dir.name + ".json")
        for p in (self.dir, side, self.dir.with_name(self.dir.name + "-lock")):
            if p.is_file():
                p.unlink()
        self.note = "started over: the interrupted build was made by an older edgeaug"

    def plan(self) -> Optional[str]:
        """The plan fingerprint the folder's chunks belong to, or None."""
        try:
            side = json.loads((self.dir / "plan.json").read_bytes())
        except (OSError, ValueError):
            return None
        return side.get("plan") if isinstance(side, dict) and side.get("version") == PLAN_VERSION else None

    def start(self, plan: str) -> None:
        """Make the folder this plan's: drop every chunk of another plan.

        Shards that start together (all holding the lock shared) take turns
        here, so the first one writes the plan and the others find it: without
        that, one shard's reset deleted another's half-written ``plan.json``.
        """
        with _serialized(self.dir / "start.lock"):
            if self.plan() == plan:
                return
            self.clear()
            tmp = self.dir / f"plan.json.tmp-{os.getpid()}"
            try:
                tmp.write_bytes(canonical_json({"version": PLAN_VERSION, "plan": plan}))
                os.replace(tmp, self.dir / "plan.json")
            except OSError as e:
                raise WriteError(f"{self.dir / 'plan.json'}: cannot write: {e.strerror or e}") from None

    def chunk_files(self) -> int:
        """How many finished chunk files the folder holds."""
        return sum(1 for _ in self.dir.glob("chunk-*.bin"))

    def clear(self) -> None:
        """Delete every chunk (and half-written chunk) file."""
        for p in self.dir.iterdir():
            if p.name.startswith("chunk-") or p.name.startswith("plan.json"):
                p.unlink()

    def drop_stale_temporaries(self) -> None:
        """Half-written chunks of killed renderers (only when no shard can be writing: exclusive lock)."""
        for p in self.dir.glob("chunk-*.bin.tmp-*"):
            p.unlink()

    def remove(self) -> None:
        """The build is published: delete the folder (while still holding its lock)."""
        shutil.rmtree(self.dir, ignore_errors=True)
        self.release()

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None


@contextmanager
def _serialized(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (waiting for it) for the duration of the block."""
    fcntl = _fcntl()
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise WriteError(f"{path}: cannot create: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _lock(fcntl: Any, path: Path, out: Path, shared: bool) -> int:
    """Open and lock ``path``: exclusively for a build, shared for a shard."""
    for _ in range(3):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise WriteError(f"{path}: cannot create: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise WriteError(
                f"{out}: another build is writing it (it holds {path.parent.name}/{path.name}); "
                + ("shards can run together, but not alongside the build that seals" if shared else "wait for it")
            ) from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the previous holder removed it while we waited: lock the new one
    raise WriteError(f"{path}: cannot lock")
