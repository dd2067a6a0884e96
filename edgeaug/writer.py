"""The ordered pack writer and the manifest it seals the pack with.

Records go into ``OUT.partial`` (a scratch LMDB) with ``append=True`` in
batches.  ``finish`` adds the index and the manifest, copies the database
compacted to ``OUT.tmp``, fsyncs it and renames it to ``OUT``: a pack appears
only when complete, and the same puts give the same bytes.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from . import __version__
from .format import (FORMAT_VERSION, INDEX_DTYPE, INDEX_KEY, MANIFEST_KEY, SPLITS, RecordHeader,
                     canonical_json, fingerprint, record_key, tensor_dtype)

BATCH_BYTES = 64 << 20
PAGE_SLACK = 4096


class WriteError(RuntimeError):
    """The pack could not be written (disk or map full, out-of-order key)."""


class PackWriter:
    """Writes records in order and finishes the pack atomically."""

    def __init__(self, out: Path, target: Any, expected_records: int) -> None:
        import lmdb
        self.out = out
        self.partial = out.with_name(out.name + ".partial")
        self.tmp = out.with_name(out.name + ".tmp")
        out.parent.mkdir(parents=True, exist_ok=True)
        for p in (self.partial, self.tmp):
            _unlink(p)
        per = int(np.prod(target.shape)) * tensor_dtype(target.dtype).itemsize
        per += target.width * target.height + PAGE_SLACK * 2  # mask, header, params, pages
        self.map_size = max(64 << 20, int(expected_records * per * 1.25) + (64 << 20))
        self.env = lmdb.open(str(self.partial), subdir=False, map_size=self.map_size,
                             lock=False, sync=False, metasync=False, readahead=False)
        self.count = 0
        self.index: List[tuple] = []
        self.batch: List[bytes] = []
        self.batch_bytes = 0

    def add(self, records: List[bytes]) -> None:
        """Queue records (already encoded) in plan order."""
        for value in records:
            h = RecordHeader(value)
            self.index.append((h.source, h.variant, h.split, 0, h.label, np.frombuffer(h.digest, np.uint8)))
            self.batch.append(value)
            self.batch_bytes += len(value)
        if self.batch_bytes >= BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        items = [(record_key(self.count + i), v) for i, v in enumerate(self.batch)]
        self._put(items)
        self.count += len(items)
        self.batch, self.batch_bytes = [], 0

    def _put(self, items: List[tuple]) -> None:
        import lmdb
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    for k, v in items:
                        # append=True silently drops an out-of-order key: check it.
                        if not txn.put(k, v, append=True):
                            raise WriteError(f"LMDB refused key {k!r} (out of order)")
                return
            except lmdb.MapFullError:
                self.map_size *= 2
                self.env.set_mapsize(self.map_size)

    def finish(self, manifest: Dict[str, Any]) -> str:
        """Write index and manifest, compact, fsync, rename. Returns the fingerprint."""
        self.flush()
        index = np.array(self.index, dtype=INDEX_DTYPE).tobytes()
        manifest = dict(manifest, records=self.count)
        fp = fingerprint(manifest, index)
        manifest["fingerprint"] = fp
        self._put([(INDEX_KEY, index), (MANIFEST_KEY, canonical_json(manifest))])
        self.env.copy(str(self.tmp), compact=True)
        self.env.close()
        with open(self.tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp, self.out)
        _fsync_dir(self.out.parent)
        _unlink(self.partial)
        return fp

    def abort(self) -> None:
        """Drop scratch files; nothing appears at the output path."""
        try:
            self.env.close()
        finally:
            for p in (self.partial, self.tmp):
                _unlink(p)


def manifest_for(sset, tasks, results, recipe, target, seed: int, val: float) -> Dict[str, Any]:
    """The manifest: everything needed to understand and reproduce the pack."""
    import cv2
    split_of = {t.index: t.split for t in tasks}
    sources, skipped = [], []
    counts: Dict[str, Dict[str, int]] = {s: {} for s in SPLITS}
    splits: Dict[str, Dict[str, int]] = {s: {"start": 0, "count": 0} for s in SPLITS}
    for i, s in enumerate(sset.sources):
        res = results.get(i)
        entry = {"path": s.rel, "label": s.label, "split": split_of[i],
                 "sha256": res.sha256 if res else "", "records": len(res.records) if res else 0}
        if res is None or res.error:
            entry["skipped"] = res.error if res else "not processed"
            skipped.append({"path": s.rel, "reason": entry["skipped"]})
        else:
            name = sset.classes[s.label] if s.label >= 0 else "(none)"  # -1: no class label
            counts[split_of[i]][name] = counts[split_of[i]].get(name, 0) + entry["records"]
        sources.append(entry)
    for t in tasks:
        splits[t.split]["count"] += len(results[t.index].records) if t.index in results else 0
    splits["val"]["start"] = splits["train"]["count"]
    return {
        "format_version": FORMAT_VERSION, "generator": "edgeaug",
        "versions": {"edgeaug": __version__, "numpy": np.__version__, "opencv": cv2.__version__,
                     "python": platform.python_version(), "machine": platform.machine()},
        "target": target.to_dict(), "recipe": recipe.to_dict(), "seed": seed, "val_fraction": val,
        "source_kind": sset.kind, "classes": list(sset.classes), "sources": sources,
        "skipped": skipped, "splits": splits, "counts": counts,
        "tensor": {"shape": list(target.shape), "dtype": target.dtype},
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
