"""The ordered pack writer: chunks merged in plan order into ``OUT.tmp``, then published atomically.

:class:`PackWriter` merges the chunks, in plan order, straight into
``OUT.tmp``: each record is put once with ``append=True`` and one
transaction commits each chunk (chunks are part of the plan).  The records
themselves are copied by :mod:`.merge`, inline or in one writer process.
The writer flushes ``OUT.tmp`` to disk behind the merge and lets the kernel
drop the flushed pages from the page cache; ``finish`` adds the index and the
manifest, fsyncs once more and renames ``OUT.tmp`` to ``OUT``: a pack appears
only when complete.  Scratch space is the chunk files in ``OUT.partial/``
(:mod:`.partial`): at most the pack's size.  A failure (disk or map full)
raises :class:`~edgeaug.builder.partial.WriteError` and keeps the chunks.
"""

from __future__ import annotations

import os
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from edgeaug.builder import merge
from edgeaug.builder.partial import WriteError, kept
from edgeaug.device.format import INDEX_DTYPE, SPLITS, canonical_json, fingerprint, tensor_dtype
from edgeaug.device.manifest import validate_manifest

PAGE_SLACK = 4096
MAX_MAP_SIZE: Optional[int] = None  # cap on map growth (None: until the disk is full)


class PackWriter:
    """Merges chunks in plan order into ``OUT.tmp`` and finishes the pack atomically (main-process side).

    The records themselves are copied by :func:`~edgeaug.builder.merge.merge_chunk`,
    inline or on ``executor`` (one writer process, so merges run in order while
    the main process only keeps the books).  ``add(...)`` queues one chunk;
    ``finish(manifest)`` seals and publishes; ``abort()`` removes ``OUT.tmp``.
    The caller holds the output's lock (:class:`~edgeaug.builder.partial.Partial`):
    ``OUT.tmp`` is this build's alone.
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
        merge.close(str(self.tmp))
        _unlink(self.tmp)

    def add(self, chunk: Path, plan: str, k: int, indices: List[int], keep: List[bool], records: int) -> None:
        """Queue chunk ``k``'s records of the sources marked in ``keep`` (``records`` of them)."""
        args = (str(self.tmp), str(chunk), plan, k, indices, keep, self.count, self.limits)
        self.count += records
        if self.executor is None:
            self.rows.append(merge.merge_chunk(*args))
            return
        self.rows.append(self.executor.submit(merge.merge_chunk, *args))
        for r in self.rows:  # a failure (disk full) surfaces now, not at the end
            if hasattr(r, "done") and r.done() and r.exception() is not None:
                _result(r)

    def finish(self, manifest: Dict[str, Any]) -> Dict[str, Any]:
        """Write index and manifest, fsync, rename. Returns the manifest with its fingerprint."""
        index = b"".join(_result(r) if hasattr(r, "result") else r for r in self.rows)
        manifest = dict(manifest, records=self.count, counts=record_counts(index, manifest["classes"]))
        manifest["fingerprint"] = fingerprint(manifest, index)
        validate_manifest(manifest)  # the reader will insist on it
        args = (str(self.tmp), index, canonical_json(manifest), self.limits)
        if self.executor is None:
            merge.seal(*args)
        else:
            _result(self.executor.submit(merge.seal, *args))
        merge.release(str(self.tmp))
        try:
            os.replace(self.tmp, self.out)
        except OSError as e:
            raise WriteError(kept(f"cannot write {self.out}: {e.strerror or e}", self.out)) from None
        _fsync_dir(self.out.parent)
        return manifest

    def abort(self) -> None:
        """Stop: nothing appears at the output path.

        Queued merges are cancelled and a running one is waited for (the
        writer must not be writing when ``OUT.tmp`` goes).  A KeyboardInterrupt
        during that wait still removes ``OUT.tmp``, then propagates.
        """
        try:
            for r in self.rows:
                if hasattr(r, "cancel"):
                    r.cancel()
                    try:
                        r.exception()  # waits; a failed merge's error is the caller's to report, not this one's
                    except CancelledError:
                        pass
        finally:
            merge.release(str(self.tmp))
            _unlink(self.tmp)


def record_counts(index: bytes, classes: List[str]) -> Dict[str, Dict[str, int]]:
    """Records per split and class, by each record's own label (a detection record's is its kept boxes' class)."""
    rows = np.frombuffer(index, INDEX_DTYPE)
    out: Dict[str, Dict[str, int]] = {}
    for split, code in SPLITS.items():
        labels, n = np.unique(rows["label"][rows["split"] == code], return_counts=True)
        out[split] = {(classes[c] if c >= 0 else "(none)"): int(k) for c, k in zip(labels.tolist(), n.tolist())}
    return out


def _result(fut: Any) -> Any:
    from concurrent.futures.process import BrokenProcessPool

    try:
        return fut.result()
    except BrokenProcessPool:
        raise WriteError(
            "the writer process died (out of memory?); the rendered sources are kept: rerun to resume"
        ) from None


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
