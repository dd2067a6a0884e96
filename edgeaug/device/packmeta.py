"""What a pack says about itself, read through a backend and checked: manifest, index, record digests.

The pack is untrusted: the manifest is JSON of bounded size, validated field
by field, and bound to the index by its fingerprint; every record's header and
digest are checked against the index by :func:`check_records` (``verify``).
"""

from __future__ import annotations

import json
import platform
import struct
from typing import Any, Dict, Iterable, List, Tuple

import numpy as np

from .codec import CodecError, check_available  # bundle: drop
from .format import (  # bundle: drop
    FORMAT_VERSION,
    INDEX_DTYPE,
    INDEX_KEY,
    MANIFEST_KEY,
    MAX_MANIFEST_BYTES,
    MAX_RECORDS,
    MAX_TENSOR_BYTES,
    SPLITS,
    FormatError,
    RecordHeader,
    fingerprint,
    newer_format,
    record_digest,
    record_key,
    tensor_dtype,
    tensor_shape,
)
from .labels import section_counts  # bundle: drop
from .manifest import validate_manifest  # bundle: drop
from .readplan import PackError  # bundle: drop


class PackMeta:
    """The manifest and the index of the pack at ``path``, read with backend ``db`` and checked.

    ``shape``, ``dtype`` and ``nbytes`` describe one record's tensor;
    ``splits`` maps each split to its ``(first record, count)``.
    """

    def __init__(self, db, path: str) -> None:
        self.path = path
        self.manifest = self._read_manifest(db)
        self._read_layout()
        self.index = self._read_index(db)

    def _read_manifest(self, db) -> Dict[str, Any]:
        raw = db.get(MANIFEST_KEY)
        if raw is None:
            raise PackError(f"{self.path}: incomplete pack: no manifest (the build did not finish)")
        if len(raw) > MAX_MANIFEST_BYTES:
            raise PackError(f"{self.path}: manifest of {len(raw)} bytes is implausibly large")
        try:
            m = json.loads(bytes(raw).decode("utf-8"))
        except (ValueError, RecursionError) as e:
            raise PackError(f"{self.path}: manifest is not valid JSON: {e}") from None
        if not isinstance(m, dict):
            raise PackError(f"{self.path}: manifest is not a JSON object")
        version = m.get("format_version")
        if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
            raise PackError(f"{self.path}: {newer_format(version)}")
        if version not in range(1, FORMAT_VERSION + 1) or isinstance(version, bool):
            raise PackError(
                f"{self.path}: pack format version {version!r}; this loader reads versions 1..{FORMAT_VERSION}"
            )
        try:
            validate_manifest(m)  # types and ranges: a crafted manifest can carry a valid fingerprint
            self.codec = str((m.get("compression") or {}).get("codec", "none"))
            check_available(self.codec)  # a zstd pack on a device without zstd: say what to install, now
        except CodecError as e:
            raise PackError(f"{self.path}: {e}") from None
        except FormatError as e:
            raise PackError(f"{self.path}: {e}") from None
        return m

    def _read_layout(self) -> None:
        """Tensor shape and type, record count, splits and classes, each checked against its bounds."""
        m = self.manifest
        try:
            t = m["target"]
            self.shape = tensor_shape(t)
            self.dtype = tensor_dtype(t["dtype"])
            self.records = int(m["records"])
            splits = {s: (int(m["splits"][s]["start"]), int(m["splits"][s]["count"])) for s in SPLITS}
            self.classes = [str(c) for c in m["classes"]]
            self.input_name = str(t.get("input_name", "input"))
        except (KeyError, TypeError, ValueError, FormatError) as e:
            raise PackError(f"{self.path}: manifest field missing or malformed: {e!r}") from None
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        if min(self.shape) < 1 or self.nbytes > MAX_TENSOR_BYTES or not 0 <= self.records < MAX_RECORDS:
            raise PackError(f"{self.path}: manifest: tensor {self.shape} or records {self.records} out of range")
        for s, (start, count) in splits.items():
            if start < 0 or count < 0 or start + count > self.records:
                raise PackError(f"{self.path}: manifest: split {s} [{start}, +{count}) outside {self.records} records")
        self.splits = splits

    def _read_index(self, db) -> np.ndarray:
        raw = db.get(INDEX_KEY)
        if raw is None or len(raw) != self.records * INDEX_DTYPE.itemsize:
            raise PackError(f"{self.path}: index missing or of the wrong size for {self.records} records")
        index = np.frombuffer(bytes(raw), INDEX_DTYPE)
        body = {k: v for k, v in self.manifest.items() if k != "fingerprint"}
        if fingerprint(body, index.tobytes()) != self.manifest.get("fingerprint"):
            raise PackError(f"{self.path}: fingerprint mismatch: manifest or index was altered")
        if len(index) and (
            int(index["source"].max()) >= len(self.manifest["sources"]) or int(index["split"].max()) >= len(SPLITS)
        ):
            raise PackError(f"{self.path}: index names a source or split the manifest does not have")
        return index


def check_records(db, index: np.ndarray, nbytes: int, records: Iterable[int], decode=None) -> List[str]:
    """Each of ``records`` (pack record numbers) against its digests and the index; the problems found.

    ``decode(value, r)``: the decoded tensor of a compressed record (its digest covers the decoded tensor).
    """
    problems = []
    for r in records:
        try:
            value = db.get(record_key(r))
        except PackError as e:
            problems.append(f"record {r}: unreadable: {e}")
            continue
        if value is None:
            problems.append(f"record {r}: missing")
            continue
        problem = _record_problem(value, index[r], nbytes, decode, r)
        if problem:
            problems.append(f"record {r}: {problem}")
    return problems


def labels_summary(db, records: Iterable[int]) -> Dict[str, int]:
    """How many of ``records`` hold instance masks (and how many masks in all), and how many are mixed.

    Reads each record's header and label counts only (``inspect``); a record
    that does not parse counts as ``unreadable`` (``verify`` says why).
    """
    out = {"records": 0, "with_instances": 0, "instances": 0, "mixed": 0, "unreadable": 0}
    for r in records:
        out["records"] += 1
        try:
            value = db.get(record_key(r))
            h = RecordHeader(value)
            _, inst, mix = section_counts(memoryview(value)[h.labels_offset : h.params_offset], h.version)
        except (PackError, FormatError, TypeError):
            out["unreadable"] += 1
            continue
        out["with_instances"] += inst >= 0
        out["instances"] += max(inst, 0)
        out["mixed"] += mix > 0
    return out


def _record_problem(value, row, nbytes: int, decode=None, r: int = 0) -> str:
    try:
        h = RecordHeader(value)
    except FormatError as e:
        return str(e)
    try:
        tensor = decode(value, r) if h.method and decode is not None else None
    except (FormatError, PackError) as e:  # the decoder's error says "PATH: record R: codec: ..."
        return f"payload altered: {str(e).split(f'record {r}: ', 1)[-1]}"
    if h.method and tensor is None:
        return "compressed record: no decoder given"
    if record_digest(value, tensor) != h.digest or h.digest != row["digest"].tobytes():
        return "digest mismatch (payload altered)"
    if h.tensor_nbytes != nbytes:
        return f"tensor of {h.tensor_nbytes} bytes, the target's is {nbytes}"
    if (h.source, h.variant, h.split, h.label) != (row["source"], row["variant"], row["split"], row["label"]):
        return "header disagrees with the index"
    return ""


def device_warnings(manifest: Dict[str, Any]) -> List[str]:
    """Differences between the target's device and this process.

    Word size comes from the pointer size: a 32-bit Pi OS on a 64-bit
    kernel reports ``aarch64`` as its machine.
    """
    dev = manifest["target"].get("device", {})
    arch, bits = platform.machine().lower(), struct.calcsize("P") * 8
    out = []
    want = str(dev.get("arch", "any")).lower()
    if want != "any" and _arch_family(want) != _arch_family(arch):
        out.append(f"pack targets {want} but this machine is {arch}")
    if dev.get("word_size") not in (None, bits):
        out.append(f"pack targets a {dev.get('word_size')}-bit OS but this process is {bits}-bit")
    return out


def _arch_family(arch: str) -> str:
    return (
        "arm" if arch.startswith(("arm", "aarch")) else "x86" if arch in ("x86_64", "amd64", "i386", "i686") else arch
    )


def split_rows(index: np.ndarray, split: str, bounds: Tuple[int, int], path: str) -> np.ndarray:
    """The index rows of ``split`` (``bounds``: first record, count), checked to be in source order."""
    start, count = bounds
    rows = index[start : start + count]
    if count and (np.any(np.diff(rows["source"].astype(np.int64)) < 0) or np.any(rows["split"] != SPLITS[split])):
        raise PackError(f"{path}: index of split {split} is not in source order")
    return rows
