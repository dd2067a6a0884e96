"""The partial build folder, the ordered pack writer, and the manifest the pack is sealed with.

``OUT.partial/`` holds the chunk files (:mod:`.chunks`) rendered so far, a
``plan.json`` naming the plan they belong to, and a ``lock`` file: a build
that merges and seals takes it exclusively, shards (``--shard I/N``) take it
shared, so any number of shards run at once but never alongside a sealing
build.  A build killed at any point keeps every finished chunk; the same
command resumes there.

:class:`PackWriter` merges the chunks, in plan order, straight into
``OUT.tmp``: each record is put once with ``append=True`` and one
transaction commits each chunk (chunks are part of the plan).  ``OUT.tmp`` is
always written from its start by one environment in one process (never
resumed), so its bytes depend only on the plan and the records, whatever was
interrupted before.  The writer flushes ``OUT.tmp`` to disk behind the merge
(a background fdatasync after each chunk) and lets the kernel drop the flushed
pages from the page cache; ``finish`` adds the index and the
manifest, fsyncs once more and renames ``OUT.tmp`` to ``OUT``: a pack appears only
when complete.  Scratch space is the chunk files: at most the pack's size.
A failure (disk or map full) raises :class:`WriteError` and keeps the chunks.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import numpy as np

from edgeaug import __version__
from edgeaug.builder.chunks import Chunk, ChunkError
from edgeaug.device.format import (
    FORMAT_VERSION,
    INDEX_DTYPE,
    INDEX_KEY,
    MANIFEST_KEY,
    SPLITS,
    RecordHeader,
    canonical_json,
    fingerprint,
    record_key,
    tensor_dtype,
    validate_manifest,
)

PAGE_SLACK = 4096
MAX_MAP_SIZE: Optional[int] = None  # cap on map growth (None: until the disk is full)
PLAN_VERSION = 2


class WriteError(RuntimeError):
    """The pack could not be written (disk or map full, out-of-order key, locked)."""


class Partial:
    """The partial build folder next to the output: its lock, its plan, its chunk files.

    ``shared=True`` (a shard) takes the lock shared; otherwise exclusively,
    and a second build of the same output is refused.
    """

    def __init__(self, out: Path, shared: bool = False) -> None:
        self.out = out
        self.dir = out.with_name(out.name + ".partial")
        self.note = ""
        if self.dir.is_file() or self.dir.with_name(self.dir.name + ".json").exists():
            self._drop_old_format()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WriteError(f"{self.dir}: cannot create the partial build folder: {e.strerror or e}") from None
        self._lock_fd = _lock(self.dir / "lock", out, shared)

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


class PackWriter:
    """Merges chunks in plan order into ``OUT.tmp`` and finishes the pack atomically (main-process side).

    The records themselves are copied by :func:`merge_chunk`, inline or on
    ``executor`` (one writer process, so merges run in order while the main
    process only keeps the books).  ``add(...)`` queues one chunk;
    ``finish(manifest)`` seals and publishes; ``abort()`` removes ``OUT.tmp``.
    """

    def __init__(
        self, out: Path, target: Any, expected_records: int, max_map_size: Optional[int] = None, executor: Any = None
    ) -> None:
        self.out = out
        self.tmp = out.with_name(out.name + ".tmp")
        per = int(np.prod(target.shape)) * tensor_dtype(target.dtype).itemsize
        per += target.width * target.height + PAGE_SLACK * 2  # mask, header, params, pages
        base = max(64 << 20, int(expected_records * per * 1.25) + (64 << 20))
        cap = max_map_size if max_map_size is not None else MAX_MAP_SIZE
        self.limits = (min(base, cap or base), cap)  # (starting map size, maximum)
        self.executor = executor
        self.count = 0  # records queued
        self.rows: List[Any] = []  # index rows per chunk (bytes, or futures of them), in plan order
        close(str(self.tmp))
        _unlink(self.tmp)

    def add(self, chunk: Path, plan: str, k: int, indices: List[int], keep: List[bool], records: int) -> None:
        """Queue chunk ``k``'s records of the sources marked in ``keep`` (``records`` of them)."""
        args = (str(self.tmp), str(chunk), plan, k, indices, keep, self.count, self.limits)
        self.count += records
        if self.executor is None:
            self.rows.append(merge_chunk(*args))
            return
        self.rows.append(self.executor.submit(merge_chunk, *args))
        for r in self.rows:  # a failure (disk full) surfaces now, not at the end
            if hasattr(r, "done") and r.done() and r.exception() is not None:
                _result(r)

    def finish(self, manifest: Dict[str, Any]) -> Dict[str, Any]:
        """Write index and manifest, fsync, rename. Returns the manifest with its fingerprint."""
        index = b"".join(_result(r) if hasattr(r, "result") else r for r in self.rows)
        manifest = dict(manifest, records=self.count)
        manifest["fingerprint"] = fingerprint(manifest, index)
        validate_manifest(manifest)  # the reader will insist on it
        args = (str(self.tmp), index, canonical_json(manifest), self.limits)
        if self.executor is None:
            seal(*args)
        else:
            _result(self.executor.submit(seal, *args))
        try:
            os.replace(self.tmp, self.out)
        except OSError as e:
            raise WriteError(_kept(f"cannot write {self.out}: {e.strerror or e}", self.out)) from None
        _fsync_dir(self.out.parent)
        return manifest

    def abort(self) -> None:
        """Stop: nothing appears at the output path."""
        for r in self.rows:
            if hasattr(r, "cancel"):
                r.cancel()
                try:
                    r.exception()  # wait: the writer must not be writing when OUT.tmp goes
                except BaseException:
                    pass
        close(str(self.tmp))
        _unlink(self.tmp)


def _result(fut: Any) -> Any:
    from concurrent.futures.process import BrokenProcessPool

    try:
        return fut.result()
    except BrokenProcessPool:
        raise WriteError(
            "the writer process died (out of memory?); the rendered sources are kept: rerun to resume"
        ) from None


# --- the writer's side: stateless calls, one environment per transaction ----------------------

# Per process: the open environment of each OUT.tmp.  OUT.tmp is always written from its start by
# one environment in one process, so the page buffers LMDB reuses (without clearing them) hold the
# same bytes in every build of the same plan: the file's bytes depend only on the records.
_ENVS: Dict[str, Any] = {}


def merge_chunk(
    tmp: str, chunk: str, plan: str, k: int, indices: List[int], keep: List[bool], first: int, limits: tuple
) -> bytes:
    """Put chunk ``k``'s records of the kept sources into ``tmp`` with keys from ``first``; their index rows.

    One transaction; called in plan order, from one process (see ``_ENVS``).
    """

    tasks = [_Index(i) for i in indices]
    try:
        ch = Chunk(Path(chunk), plan, k, tasks, _BUF.get("buf", bytearray()))
    except (ChunkError, OSError, ValueError) as e:
        raise WriteError(f"{chunk}: unusable ({e}); rerun the same command") from None
    _BUF["buf"] = ch.buffer
    if len(ch.records) != len(keep):
        raise WriteError(f"{chunk}: holds {len(ch.records)} sources, the plan {len(keep)}")
    items, rows = [], []
    for values, kept in zip(ch.records, keep):
        for value in values if kept else ():
            h = RecordHeader(value)
            rows.append((h.source, h.variant, h.split, 0, h.label, np.frombuffer(h.digest, np.uint8)))
            items.append((record_key(first + len(items)), value))
    _commit(tmp, items, limits)
    _flush_behind(tmp)
    return np.array(rows, dtype=INDEX_DTYPE).reshape(-1).tobytes()


def seal(tmp: str, index: bytes, manifest: bytes, limits: tuple) -> None:
    """Add the index and the manifest, then fsync: the pack is complete under its temporary name."""
    _commit(tmp, [(INDEX_KEY, index), (MANIFEST_KEY, manifest)], limits)
    close(tmp)
    try:
        _flushed(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
            _drop_cached(f.fileno())
    except OSError as e:
        raise WriteError(_kept(f"cannot write {tmp}: {e.strerror or e}", Path(tmp))) from None


# Per process: a thread writing OUT.tmp's committed pages to disk while later chunks are merged, so the
# fsync that seals finds little left to do (a multi-GB pack's fsync at the end can take many seconds).
_FLUSH: Dict[str, threading.Thread] = {}
_FLUSH_ERROR: Dict[str, OSError] = {}


def _flush_behind(tmp: str) -> None:
    """Start an fdatasync of ``tmp`` in the background, unless one is running."""
    t = _FLUSH.get(tmp)
    if t is not None and t.is_alive():
        return
    t = _FLUSH[tmp] = threading.Thread(target=_fdatasync, args=(tmp,), name="edgeaug-flush", daemon=True)
    t.start()


def _fdatasync(tmp: str) -> None:
    try:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            getattr(os, "fdatasync", os.fsync)(fd)
            _drop_cached(fd)
        finally:
            os.close(fd)
    except OSError as e:
        # Kept for seal: a write error is reported once per open file, so the sealing fsync might not see it.
        _FLUSH_ERROR.setdefault(tmp, e)


def _drop_cached(fd: int) -> None:
    """Let the kernel drop the file's pages that are already on disk from the page cache.

    A pack is written once and read later, often on another machine: keeping
    a multi-GB pack cached would evict the workstation's useful pages, and
    the build's next writes reuse the freed pages instead of claiming more
    memory (measured: a 1-worker build's CPU fell 11-15% on this VM).  Advice
    only: pages still dirty stay, and where the call does not exist it is skipped.
    """
    advise = getattr(os, "posix_fadvise", None)
    try:
        if advise is not None:
            advise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass  # advice a file system does not take is no error of the build


def _flushed(tmp: str) -> None:
    """Wait for the background flush of ``tmp``; raise the error it met, if any."""
    t = _FLUSH.pop(tmp, None)
    if t is not None:
        t.join()
    err = _FLUSH_ERROR.pop(tmp, None)
    if err is not None:
        raise err


def _commit(tmp: str, items: List[tuple], limits: tuple) -> None:
    """One transaction in this process's environment of ``tmp``; grow the map and replay when it is full."""
    import lmdb

    env = _ENVS.get(tmp)
    try:
        if env is None:
            _FLUSH_ERROR.pop(tmp, None)  # a new OUT.tmp: an error of an earlier one in this process is not its
            size = limits[0]
            # No sync per commit (flushes run behind, one fsync seals); a crash before the seal rebuilds OUT.tmp.
            env = _ENVS[tmp] = lmdb.open(
                tmp, subdir=False, map_size=size, lock=False, sync=False, metasync=False, readahead=False
            )
        while True:
            try:
                with env.begin(write=True) as txn:
                    for k, v in items:
                        # append=True silently drops an out-of-order key: check it.
                        if not txn.put(k, v, append=True):
                            raise WriteError(f"LMDB refused key {k!r} (out of order)")
                return
            except lmdb.MapFullError:
                size, cap = env.info()["map_size"], limits[1]
                if cap and size >= cap:
                    raise WriteError(_kept(f"map full at {size} bytes (the maximum map size)", Path(tmp))) from None
                env.set_mapsize(min(size * 2, cap or size * 2))
    except lmdb.Error as e:  # disk full (ENOSPC, EFBIG), I/O errors
        close(tmp)
        raise WriteError(_kept(f"cannot write {tmp}: {e}", Path(tmp))) from None
    except BaseException:
        close(tmp)
        raise


def close(tmp: str) -> None:
    """Close this process's environment of ``tmp``, if open (after its background flush)."""
    env = _ENVS.pop(tmp, None)
    if env is not None:
        env.close()
    t = _FLUSH.get(tmp)
    if t is not None:
        t.join()


_BUF: Dict[str, bytearray] = {}  # per process: the chunk read buffer, reused (no fresh pages per chunk)


class _Index:
    """Just a task's source index, for validating a chunk in the writer."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


def _kept(what: str, path: Path) -> str:
    name = path.name
    for suffix in (".tmp",):
        name = name[: -len(suffix)] if name.endswith(suffix) else name
    return f"{what}; the rendered sources are kept in {name}.partial: free space and rerun the same command to resume"


@contextmanager
def _serialized(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (waiting for it) for the duration of the block; POSIX only."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise WriteError(f"{path}: cannot create: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _lock(path: Path, out: Path, shared: bool) -> int:
    """Open and lock ``path``: exclusively for a build, shared for a shard."""
    for _ in range(3):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise WriteError(f"{path}: cannot create: {e.strerror or e}") from None
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return fd
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


def manifest_for(sset, tasks, results, recipe, target, seed: int, val: float) -> Dict[str, Any]:
    """The manifest: everything needed to understand and reproduce the pack."""
    from edgeaug.builder.plan import opencv_version

    split_of = {t.index: t.split for t in tasks}
    sources, skipped = [], []
    counts: Dict[str, Dict[str, int]] = {s: {} for s in SPLITS}
    splits: Dict[str, Dict[str, int]] = {s: {"start": 0, "count": 0} for s in SPLITS}
    for i, s in enumerate(sset.sources):
        res = results.get(i)
        entry = {
            "path": s.rel,
            "label": s.label,
            "split": split_of[i],
            "sha256": res.sha256 if res else "",
            "records": res.count if res else 0,
        }
        if res is not None and res.mask_sha256:
            entry["mask_sha256"] = res.mask_sha256
        if res is None or res.error:
            entry["skipped"] = res.error if res else "not processed"
            skipped.append({"path": s.rel, "reason": entry["skipped"]})
            if res is not None and res.duplicate_of:
                entry["duplicate_of"] = res.duplicate_of
        else:
            name = sset.classes[s.label] if s.label >= 0 else "(none)"  # -1: no class label
            counts[split_of[i]][name] = counts[split_of[i]].get(name, 0) + entry["records"]
        sources.append(entry)
    for t in tasks:
        splits[t.split]["count"] += results[t.index].count if t.index in results else 0
    splits["val"]["start"] = splits["train"]["count"]
    return {
        "format_version": FORMAT_VERSION,
        "generator": "edgeaug",
        "versions": {
            "edgeaug": __version__,
            "numpy": np.__version__,
            "opencv": opencv_version(),
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
        "target": target.to_dict(),
        "recipe": recipe.to_dict(),
        "seed": seed,
        "val_fraction": val,
        "source_kind": sset.kind,
        "classes": list(sset.classes),
        "sources": sources,
        "skipped": skipped,
        "splits": splits,
        "counts": counts,
        "tensor": {"shape": list(target.shape), "dtype": target.dtype},
        # Optional: per-instance keypoint i is keypoint_flip_idx[i] after a mirror (for online flips on the device).
        **({"keypoint_flip_idx": list(sset.keypoint_flip)} if getattr(sset, "keypoint_flip", None) else {}),
    }


def _unlink(p: Path) -> None:
    for q in (p, p.with_name(p.name + "-lock")):
        try:
            q.unlink()
        except FileNotFoundError:
            pass


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
