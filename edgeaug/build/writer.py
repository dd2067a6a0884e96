"""The ordered pack writer and the manifest it seals the pack with.

Records go into ``OUT.partial`` (a scratch LMDB) with ``append=True``, one
transaction per batch of whole sources.  ``finish`` adds the index and the
manifest, copies the database compacted to ``OUT.tmp``, fsyncs it and renames
it to ``OUT``: a pack appears only when complete, and the same puts give the
same bytes.

Crash safety and resume.  Each transaction also stores, under ``!t`` + task
number (keys that sort before the records), what the build needs to write the
manifest for those sources later; ``OUT.partial.json`` holds the plan
fingerprint and is the build's lock.  A build killed at any point resumes from
the last committed batch when the same command runs again.  The environment is
reopened for every transaction: LMDB leaves uninitialised padding in reused
page buffers, so only a fresh environment per transaction makes a resumed
build byte-identical to an uninterrupted one.  A failure (disk or map full)
raises :class:`WriteError` and keeps the partial for the rerun.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from edgeaug import __version__
from edgeaug.device.format import (
    FORMAT_VERSION,
    INDEX_DTYPE,
    INDEX_KEY,
    MANIFEST_KEY,
    SPLITS,
    FormatError,
    RecordHeader,
    canonical_json,
    fingerprint,
    record_key,
    tensor_dtype,
    validate_manifest,
)

BATCH_BYTES = 64 << 20
PAGE_SLACK = 4096
MAX_MAP_SIZE: Optional[int] = None  # cap on map growth (None: until the disk is full)
TASK_PREFIX = b"!t"  # resume metadata; sorts before the b"r" records, removed when sealing
SIDECAR_VERSION = 1


class WriteError(RuntimeError):
    """The pack could not be written (disk or map full, out-of-order key, locked)."""


class PackWriter:
    """Writes whole sources' records in order, resumably, and finishes the pack atomically.

    ``plan`` fingerprints everything the bytes depend on; a partial build is
    resumed only when it matches.  ``resume``: None resumes a matching partial
    and otherwise starts over, True insists on resuming, False starts over.
    After construction ``resumed`` holds the metadata of the sources already
    written (in plan order) and ``sealed`` the manifest of a partial that was
    killed while being copied out (call :meth:`publish`).
    """

    def __init__(
        self,
        out: Path,
        target: Any,
        expected_records: int,
        plan: str = "",
        resume: Optional[bool] = None,
        max_map_size: Optional[int] = None,
    ) -> None:
        self.out = out
        self.partial = out.with_name(out.name + ".partial")
        self.sidecar = out.with_name(out.name + ".partial.json")
        self.tmp = out.with_name(out.name + ".tmp")
        out.parent.mkdir(parents=True, exist_ok=True)
        per = int(np.prod(target.shape)) * tensor_dtype(target.dtype).itemsize
        per += target.width * target.height + PAGE_SLACK * 2  # mask, header, params, pages
        self.base_map_size = max(64 << 20, int(expected_records * per * 1.25) + (64 << 20))
        self.max_map_size = max_map_size if max_map_size is not None else MAX_MAP_SIZE
        self.map_size = min(self.base_map_size, self.max_map_size or self.base_map_size)
        self.count = 0  # records committed
        self.tasks = 0  # sources committed
        self.index: List[tuple] = []
        self.batch: List[bytes] = []
        self.metas: List[bytes] = []
        self.batch_bytes = 0
        self.resumed: List[Dict[str, Any]] = []
        self.sealed: Optional[Dict[str, Any]] = None
        self.note = ""  # why an existing partial was not resumed
        self._lock_fd = _lock(self.sidecar, out)
        try:
            self._start(plan, resume)
        except BaseException:
            if not self.partial.exists():
                _unlink(self.sidecar)  # names no partial build: do not leave it behind
            self._release()
            raise

    # --- starting and resuming ------------------------------------------------

    def _start(self, plan: str, resume: Optional[bool]) -> None:
        why = "resuming was not requested" if resume is False else self._load(plan)
        if why is None:
            return
        if resume:
            raise WriteError(f"cannot resume {self.out}: {why}")
        if why not in ("resuming was not requested", "no partial build"):
            self.note = f"started over: {why}"
        _unlink(self.partial)  # before the sidecar names the new plan
        _unlink(self.tmp)
        header = canonical_json({"edgeaug_partial": SIDECAR_VERSION, "plan": plan})
        try:
            os.ftruncate(self._lock_fd, 0)
            os.pwrite(self._lock_fd, header, 0)
            os.fsync(self._lock_fd)
        except OSError as e:
            raise WriteError(f"{self.sidecar}: cannot write: {e.strerror or e}") from None

    def restart(self, plan: str, note: str) -> None:
        """Discard the partial build (e.g. a source changed since) and start over."""
        self._reset()
        self._start(plan, False)
        self.note = note

    def _load(self, plan: str) -> Optional[str]:
        """Reopen a matching partial build; None on success, else the reason it cannot be used."""
        try:
            side = json.loads(os.pread(self._lock_fd, 1 << 16, 0) or b"null")
        except (OSError, ValueError):
            side = None
        if not isinstance(side, dict) or not self.partial.exists():
            return "no partial build"
        if side.get("edgeaug_partial") != SIDECAR_VERSION or side.get("plan") != plan:
            return "the partial build was made from other sources, recipe, target, seed, val or versions"
        import lmdb

        try:
            self._read_partial()
        except (lmdb.Error, FormatError, ValueError, KeyError, TypeError, OSError, NotImplementedError) as e:
            self._reset()
            return f"the partial build is damaged ({e})"
        return None

    def _reset(self) -> None:
        self.count = self.tasks = 0
        self.index, self.resumed, self.sealed = [], [], None

    def _read_partial(self) -> None:
        import lmdb

        from edgeaug.device.lmdbpure import PureEnvironment

        with PureEnvironment(str(self.partial)) as pure:  # bounds-checked walk: no SIGBUS on damage
            pure.check()
        size = self.partial.stat().st_size
        env = lmdb.open(str(self.partial), subdir=False, readonly=True, lock=False, readahead=False)
        try:
            if (env.info()["last_pgno"] + 1) * env.stat()["psize"] > size:
                raise ValueError("truncated")
            with env.begin(buffers=True) as txn:
                cur = txn.cursor()
                for key, value in cur.iternext():
                    key = bytes(key)
                    if key.startswith(TASK_PREFIX):
                        if key != _task_key(self.tasks):
                            raise ValueError(f"task key {key!r} out of sequence")
                        meta = json.loads(bytes(value))
                        if not isinstance(meta, dict):
                            raise ValueError("task metadata is not an object")
                        self.resumed.append(meta)
                        self.tasks += 1
                    elif key == record_key(self.count):
                        self._index_row(RecordHeader(value))
                        self.count += 1
                    elif key == MANIFEST_KEY and not self.resumed:
                        self.sealed = json.loads(bytes(value))
                    elif key != INDEX_KEY:
                        raise ValueError(f"unexpected key {key!r}")
        finally:
            env.close()
        if self.sealed is None and self.count != sum(int(m["count"]) for m in self.resumed):
            raise ValueError(f"{self.count} records but the sources account for a different number")

    # --- writing --------------------------------------------------------------

    def add(self, records: List[bytes], meta: Optional[Dict[str, Any]] = None) -> None:
        """Queue all records of one source (already encoded, plan order) and its resume metadata.

        Commits happen only between sources, so a source is either fully in
        the partial build or not at all.
        """
        for value in records:
            self._index_row(RecordHeader(value))
            self.batch.append(value)
            self.batch_bytes += len(value)
        self.metas.append(canonical_json(meta or {}))
        if self.batch_bytes >= BATCH_BYTES:
            self.flush()

    def _index_row(self, h: RecordHeader) -> None:
        self.index.append((h.source, h.variant, h.split, 0, h.label, np.frombuffer(h.digest, np.uint8)))

    def flush(self) -> None:
        """Commit the queued sources in one transaction."""
        if not self.metas:
            return
        items = [(_task_key(self.tasks + j), m, False) for j, m in enumerate(self.metas)]
        items += [(record_key(self.count + i), v, True) for i, v in enumerate(self.batch)]
        self._commit(items)
        self.count += len(self.batch)
        self.tasks += len(self.metas)
        self.batch, self.metas, self.batch_bytes = [], [], 0

    def _commit(self, items: List[tuple], deletes: List[bytes] = ()) -> None:
        """One transaction in a freshly opened environment; grow the map when full."""
        import lmdb

        while True:
            try:
                env = lmdb.open(
                    str(self.partial),
                    subdir=False,
                    map_size=self.map_size,
                    lock=False,
                    readahead=False,
                    max_spare_txns=0,
                )
                try:
                    with env.begin(write=True) as txn:
                        for k in deletes:
                            txn.delete(k)
                        for k, v, append in items:
                            # append=True silently drops an out-of-order key: check it.
                            if not txn.put(k, v, append=append):
                                raise WriteError(f"LMDB refused key {k!r} (out of order)")
                finally:
                    env.close()
                return
            except lmdb.MapFullError:
                if self.max_map_size and self.map_size >= self.max_map_size:
                    raise WriteError(self._kept(f"map full at {self.map_size} bytes (the maximum map size)")) from None
                self.map_size = min(self.map_size * 2, self.max_map_size or self.map_size * 2)
            except lmdb.Error as e:  # disk full (ENOSPC, EFBIG), I/O errors
                raise WriteError(self._kept(f"cannot write {self.partial}: {e}")) from None

    def _kept(self, what: str) -> str:
        return (
            f"{what}; the {self.count} records of {self.tasks} sources already written are kept "
            f"in {self.partial.name}: free space and rerun the same command to resume"
        )

    # --- finishing ------------------------------------------------------------

    def finish(self, manifest: Dict[str, Any]) -> str:
        """Write index and manifest, compact, fsync, rename. Returns the fingerprint."""
        self.flush()
        index = np.array(self.index, dtype=INDEX_DTYPE).reshape(-1).tobytes()
        manifest = dict(manifest, records=self.count)
        fp = fingerprint(manifest, index)
        manifest["fingerprint"] = fp
        validate_manifest(manifest)  # the reader will insist on it
        self.seal(index, manifest)
        self.publish()
        return fp

    def seal(self, index: bytes, manifest: Dict[str, Any]) -> None:
        """Drop the resume metadata and add index and manifest, in one transaction."""
        self._commit(
            [(INDEX_KEY, index, True), (MANIFEST_KEY, canonical_json(manifest), True)],
            [_task_key(t) for t in range(self.tasks)],
        )
        self.sealed = manifest

    def publish(self) -> None:
        """Copy the sealed partial compacted to ``OUT.tmp``, fsync, rename to ``OUT``, clean up."""
        import lmdb

        _unlink(self.tmp)
        try:
            # A fixed map size: the copy records it in its meta pages.
            env = lmdb.open(str(self.partial), subdir=False, map_size=self.base_map_size, lock=False, readahead=False)
            try:
                env.copy(str(self.tmp), compact=True)
            finally:
                env.close()
            with open(self.tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(self.tmp, self.out)
        except (lmdb.Error, OSError) as e:
            _unlink(self.tmp)
            raise WriteError(
                f"cannot write {self.tmp}: {e}; the finished build is kept in "
                f"{self.partial.name}: free space and rerun the same command"
            ) from None
        _fsync_dir(self.out.parent)
        _unlink(self.partial)
        _unlink(self.sidecar)
        self._release()

    def abort(self, keep: bool = True) -> None:
        """Stop: nothing appears at the output path; the partial stays for a rerun unless ``keep`` is False."""
        _unlink(self.tmp)
        if not keep:
            _unlink(self.partial)
        if not self.partial.exists():
            _unlink(self.sidecar)  # nothing committed yet: nothing to resume
        self._release()

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None


def _task_key(t: int) -> bytes:
    return TASK_PREFIX + t.to_bytes(8, "big")


def _lock(path: Path, out: Path) -> int:
    """Open and exclusively lock the sidecar: one build per output at a time."""
    for _ in range(3):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise WriteError(f"{out}: another build is writing it (it holds {path.name})") from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the previous holder removed it while we waited: lock the new one
    raise WriteError(f"{path}: cannot lock")


def manifest_for(sset, tasks, results, recipe, target, seed: int, val: float) -> Dict[str, Any]:
    """The manifest: everything needed to understand and reproduce the pack."""
    import cv2

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
            "opencv": cv2.__version__,
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
