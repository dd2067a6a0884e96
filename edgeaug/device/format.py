"""The edgeaug pack format, version 1: the one place that defines the bytes.

Both the writer (``edgeaug.builder``) and the reader (``edgeaug.loader``) import
this module, so it must stay importable with only numpy and the standard
library (Python >= 3.9).

A pack is a single-file LMDB database (``subdir=False``) with one unnamed
database and three kinds of keys, all fixed width and sorting in write order:

====================  =======================================================
key                   value
====================  =======================================================
``b"r" + u64 BE``     one record (see ``RECORD_HEADER``), index 0..n-1
``b"~index"``         ``INDEX_DTYPE`` array, one row per record
``b"~manifest"``      canonical UTF-8 JSON (see ``docs/FORMAT.md``)
====================  =======================================================

The manifest is written last, so a pack without it is incomplete.

Record value layout, little-endian::

    0   4s   magic  b"EAR1"
    4   u2   format version
    6   u2   header size (64)
    8   32s  sha256 of bytes [40:] of this value (the digest)
    40  u4   tensor nbytes          (tensor starts at offset 64)
    44  u4   labels nbytes          (labels section follows the tensor)
    48  u4   params nbytes          (UTF-8 JSON, follows the labels)
    52  i4   class label (-1: none)
    56  u4   source index
    60  u2   variant index
    62  u1   split (0 train, 1 val)
    63  u1   reserved, 0

The tensor starts 64 bytes into the value: LMDB stores large values in
overflow pages that are 16-byte aligned on 64-bit builds, so the tensor is
aligned for every dtype we use.

The labels section holds three arrays back to back, each prefixed by a
``u4`` row count: boxes ``(n, 5) float32`` as ``[class, x0, y0, x1, y1]`` in
output pixels, keypoints ``(n, 3) float32`` as ``[x, y, visible]``, and a mask
``(h, w) uint8`` whose prefix is the byte count (0 or h*w of the tensor).
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any, Dict, Tuple

import numpy as np

FORMAT_VERSION = 1
RECORD_MAGIC = b"EAR1"
RECORD_PREFIX = b"r"
INDEX_KEY = b"~index"
MANIFEST_KEY = b"~manifest"
KEY_SIZE = 9

RECORD_HEADER = struct.Struct("<4sHH32sIIIiIHBB")
HEADER_SIZE = 64
DIGEST_START = 40  # the digest covers every byte from here on
assert RECORD_HEADER.size <= HEADER_SIZE

#: The same 64 bytes as ``RECORD_HEADER``, as a numpy record: batch readers check many headers in one step.
RECORD_HEADER_DTYPE = np.dtype(
    [
        ("magic", "S4"),
        ("version", "<u2"),
        ("header_size", "<u2"),
        ("digest", "u1", (32,)),
        ("tensor_nbytes", "<u4"),
        ("labels_nbytes", "<u4"),
        ("params_nbytes", "<u4"),
        ("label", "<i4"),
        ("source", "<u4"),
        ("variant", "<u2"),
        ("split", "u1"),
        ("reserved", "u1"),
    ]
)
assert RECORD_HEADER_DTYPE.itemsize == HEADER_SIZE

SPLITS = {"train": 0, "val": 1}

#: One row per record in ``~index``.
INDEX_DTYPE = np.dtype(
    [
        ("source", "<u4"),
        ("variant", "<u2"),
        ("split", "u1"),
        ("pad", "u1"),
        ("label", "<i4"),
        ("digest", "u1", (32,)),
    ]  # not S32: numpy strips trailing NULs
)

#: Tensor dtypes a target may use, by manifest name.
DTYPES = {"uint8": "|u1", "int8": "|i1", "float16": "<f2", "float32": "<f4"}

#: Hard limits that keep a hostile pack from making the reader allocate wildly.
MAX_MANIFEST_BYTES = 256 << 20
MAX_RECORDS = 1 << 31
MAX_TENSOR_BYTES = 1 << 30
MAX_LABEL_ROWS = 1 << 20


class FormatError(ValueError):
    """The pack's bytes do not follow this format version."""


def record_key(index: int) -> bytes:
    """Fixed-width key of record ``index``; big-endian so keys sort numerically."""
    if not 0 <= index < MAX_RECORDS:
        raise FormatError(f"record index {index} out of range")
    return RECORD_PREFIX + index.to_bytes(8, "big")


def record_number(key: bytes) -> int:
    """The record index of a record key (the inverse of :func:`record_key`), or -1 for any other key."""
    if len(key) != KEY_SIZE or key[:1] != RECORD_PREFIX:
        return -1
    return int.from_bytes(key[1:], "big")


def tensor_dtype(name: str) -> np.dtype:
    """The explicit little-endian numpy dtype for a manifest dtype name."""
    try:
        return np.dtype(DTYPES[name])
    except KeyError:
        raise FormatError(f"unsupported tensor dtype {name!r}") from None


def canonical_json(obj: Any) -> bytes:
    """The one JSON encoding used for hashing and storing: sorted, compact, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def pack_labels(
    boxes: np.ndarray | None, keypoints: np.ndarray | None, mask: np.ndarray | None, instances=None, mix=None
) -> bytes:
    """Serialize the per-record labels section."""
    # TODO(wireG2b): labels section version 2 stores instances and mix; ignored here until it lands.
    parts = []
    for arr, cols in ((boxes, 5), (keypoints, 3)):
        a = np.zeros((0, cols), "<f4") if arr is None else np.ascontiguousarray(arr, "<f4")
        if a.ndim != 2 or a.shape[1] != cols:
            raise FormatError(f"label array must be (n, {cols}), got {a.shape}")
        parts += [struct.pack("<I", a.shape[0]), a.tobytes()]
    m = b"" if mask is None else np.ascontiguousarray(mask, "u1").tobytes()
    parts += [struct.pack("<I", len(m)), m]
    return b"".join(parts)


def unpack_labels(buf, mask_shape: Tuple[int, int]) -> Dict[str, np.ndarray]:
    """Parse a labels section, bounds-checking every count against ``buf``."""
    out: Dict[str, np.ndarray] = {}
    pos, end = 0, len(buf)
    for name, cols in (("boxes", 5), ("keypoints", 3)):
        n = _read_u4(buf, pos, end, name)
        pos += 4
        nbytes = n * cols * 4
        if n > MAX_LABEL_ROWS or pos + nbytes > end:
            raise FormatError(f"labels: {name} count {n} overruns the record")
        out[name] = np.frombuffer(buf, "<f4", n * cols, pos).reshape(n, cols)
        pos += nbytes
    n = _read_u4(buf, pos, end, "mask")
    pos += 4
    h, w = mask_shape
    if n not in (0, h * w) or pos + n != end:
        raise FormatError(f"labels: mask of {n} bytes does not fit {h}x{w}")
    out["mask"] = np.frombuffer(buf, "u1", n, pos).reshape(h, w) if n else None
    return out


def _read_u4(buf, pos: int, end: int, what: str) -> int:
    if pos + 4 > end:
        raise FormatError(f"labels: {what} count truncated")
    return struct.unpack_from("<I", buf, pos)[0]


def encode_record(
    tensor: np.ndarray, label: int, source: int, variant: int, split: int, labels: bytes, params: Any
) -> bytes:
    """Build one record value; the digest is filled in over bytes [40:].

    The tensor is hashed and copied straight from its buffer: one copy of it in all.
    """
    tview = memoryview(np.ascontiguousarray(tensor).reshape(-1).view(np.uint8))
    pbytes = canonical_json(params)
    body = struct.pack("<IIIiIHBB", tview.nbytes, len(labels), len(pbytes), label, source, variant, split, 0)
    body += b"\0" * (HEADER_SIZE - DIGEST_START - len(body))
    h = hashlib.sha256(body)
    for part in (tview, labels, pbytes):
        h.update(part)
    head = struct.pack("<4sHH32s", RECORD_MAGIC, FORMAT_VERSION, HEADER_SIZE, h.digest())
    return b"".join((head, body, tview, labels, pbytes))


class RecordHeader:
    """A parsed, bounds-checked record header; offsets index into the value."""

    __slots__ = ("digest", "tensor_nbytes", "labels_nbytes", "params_nbytes", "label", "source", "variant", "split")

    def __init__(self, value) -> None:
        if len(value) < HEADER_SIZE:
            raise FormatError(f"record of {len(value)} bytes is shorter than its header")
        (
            magic,
            version,
            hsize,
            self.digest,
            self.tensor_nbytes,
            self.labels_nbytes,
            self.params_nbytes,
            self.label,
            self.source,
            self.variant,
            self.split,
            reserved,
        ) = RECORD_HEADER.unpack_from(value, 0)
        if magic != RECORD_MAGIC:
            raise FormatError("record magic mismatch")
        if version != FORMAT_VERSION or hsize != HEADER_SIZE:
            raise FormatError(
                f"record format version {version} (header {hsize}); this reader understands version {FORMAT_VERSION}"
            )
        if self.split not in (0, 1) or reserved != 0:
            raise FormatError(f"record split {self.split} / reserved byte {reserved} out of range")
        total = HEADER_SIZE + self.tensor_nbytes + self.labels_nbytes + self.params_nbytes
        if total != len(value):
            raise FormatError(f"record sections sum to {total} bytes, value has {len(value)}")

    @property
    def labels_offset(self) -> int:
        return HEADER_SIZE + self.tensor_nbytes

    @property
    def params_offset(self) -> int:
        return self.labels_offset + self.labels_nbytes


def record_digest(value) -> bytes:
    """Recompute the digest of a record value (sha256 of bytes [40:])."""
    return hashlib.sha256(memoryview(value)[DIGEST_START:]).digest()


def fingerprint(manifest_without_fp: dict, index_bytes: bytes) -> str:
    """Whole-pack fingerprint: sha256 of the canonical manifest and the index."""
    h = hashlib.sha256()
    h.update(canonical_json(manifest_without_fp))
    h.update(index_bytes)
    return h.hexdigest()


def tensor_shape(target: dict) -> Tuple[int, ...]:
    """Per-record tensor shape of a manifest ``target`` entry (no batch axis)."""
    h, w, c = int(target["height"]), int(target["width"]), int(target["channels"])
    return (c, h, w) if target["layout"] == "NCHW" else (h, w, c)


# --- manifest validation ------------------------------------------------------

LAYOUTS = ("NHWC", "NCHW")
COLORS = {"RGB": 3, "BGR": 3, "GRAY": 1}
MAX_SEED = 2**63 - 1


def validate_manifest(m: Any) -> None:
    """Check every manifest field a reader or a command (inspect, explain, preview, verify, eval) relies on.

    The fingerprint is a plain hash, so a crafted pack can carry a valid one:
    types and ranges are checked here, and the first bad field is named in the
    :class:`FormatError`.  Unknown fields are allowed (newer writers add some).
    A missing field names the pack's format version and writer (an older pack).
    """
    _mf(m, None, "manifest", dict)
    _mf(m, "format_version", "", int, FORMAT_VERSION, FORMAT_VERSION)
    try:
        _check_fields(m)
    except _Missing as e:
        v = m.get("versions")
        by = f", written by edgeaug {v.get('edgeaug')}" if isinstance(v, dict) and v.get("edgeaug") else ""
        raise FormatError(
            f"{e} (a format version {m['format_version']} pack{by}: an older or foreign writer; rebuild it)"
        ) from None


class _Missing(FormatError):
    """A required manifest field is absent."""


def _check_fields(m: dict) -> None:
    t = _mf(m, "target", "", dict)
    for key, hi in (("height", 1 << 16), ("width", 1 << 16), ("channels", 4)):
        _mf(t, key, "target", int, 1, hi)
    _mf(t, "layout", "target", str, choices=LAYOUTS)
    _mf(t, "dtype", "target", str, choices=tuple(DTYPES))
    for key, kind in (("input_name", str), ("name", str)):
        _mf(t, key, "target", kind, optional=True)
    color = _mf(t, "color", "target", str, choices=tuple(COLORS), optional=True)
    if color is not None and COLORS[color] != t["channels"]:
        raise FormatError(f"manifest: target.color: {color} does not have {t['channels']} channels")
    dev = _mf(t, "device", "target", dict, optional=True)
    if dev is not None:
        _mf(dev, "name", "target.device", str, optional=True)
        _mf(dev, "arch", "target.device", str, optional=True)
        _mf(dev, "word_size", "target.device", int, 32, 64, optional=True)
    _check_quantization(t)
    n = _mf(m, "records", "", int, 0, MAX_RECORDS - 1)
    splits = _mf(m, "splits", "", dict)
    for s in SPLITS:
        sp = _mf(splits, s, "splits", dict)
        start, count = _mf(sp, "start", f"splits.{s}", int, 0, n), _mf(sp, "count", f"splits.{s}", int, 0, n)
        if start + count > n:
            raise FormatError(f"manifest: splits.{s}: [{start}, +{count}) outside {n} records")
    for i, c in enumerate(_mf(m, "classes", "", list)):
        _mf({"c": c}, "c", f"classes[{i}]", str)
    _mf(m, "seed", "", int, 0, MAX_SEED)
    fp = _mf(m, "fingerprint", "", str)
    if len(fp) != 64 or fp.strip("0123456789abcdef"):
        raise FormatError("manifest: fingerprint: expected 64 lowercase hex digits")
    for i, e in enumerate(_mf(m, "sources", "", list)):
        where = f"sources[{i}]"
        _mf(e, None, where, dict)
        _safe_relpath(_mf(e, "path", where, str), f"{where}.path")
        _mf(e, "label", where, int, -1, 2**31 - 1)
        _mf(e, "split", where, str, choices=tuple(SPLITS))
        _mf(e, "sha256", where, str)
        _mf(e, "records", where, int, 0, n)
        for key in ("skipped", "mask_sha256", "duplicate_of"):
            _mf(e, key, where, str, optional=True)
    for i, e in enumerate(_mf(m, "skipped", "", list)):
        _mf(e, None, f"skipped[{i}]", dict)
        _mf(e, "path", f"skipped[{i}]", str)
        _mf(e, "reason", f"skipped[{i}]", str)
    r = _mf(m, "recipe", "", dict)
    _mf(r, "variants", "recipe", int, 0)
    _mf(r, "include_original", "recipe", bool)
    _mf(r, "resize", "recipe", str, optional=True)
    _mf(r, "fill", "recipe", int, 0, 255, optional=True)  # the online shift's border
    _mf(r, "min_visibility", "recipe", (int, float), 0, 1, optional=True)
    flip = _mf(m, "keypoint_flip_idx", "", list, optional=True)
    for i, k in enumerate(flip or ()):
        _mf({"k": k}, "k", f"keypoint_flip_idx[{i}]", int, 0, len(flip) - 1)
    for i, op in enumerate(_mf(r, "ops", "recipe", list)):
        _mf(op, None, f"recipe.ops[{i}]", dict)
        _mf(op, "op", f"recipe.ops[{i}]", str)
    _check_workstation_fields(m)


def _check_workstation_fields(m: dict) -> None:
    """What ``inspect`` shows: val fraction, per-split class counts, versions, the quantization audit."""
    _mf(m, "val_fraction", "", (int, float), 0, 1)
    _mf(m, "source_kind", "", str, optional=True)
    for split, per_class in _mf(m, "counts", "", dict).items():
        _mf(per_class, None, f"counts.{split}", dict)
        for name, n in per_class.items():
            _mf({"n": n}, "n", f"counts.{split}.{name}", int, 0)
    for k, v in _mf(m, "versions", "", dict).items():
        _mf({"v": v}, "v", f"versions.{k}", str)
    a = _mf(m, "quantization_audit", "", dict, optional=True)
    if a is None:
        return
    _mf(a, "values", "quantization_audit", int, 0, optional=True)
    _mf(a, "warning", "quantization_audit", bool, optional=True)
    _mf(a, "clip_warn_threshold", "quantization_audit", (int, float), 0, 1, optional=True)
    for c, ch in enumerate(_mf(a, "channels", "quantization_audit", list)):
        where = f"quantization_audit.channels[{c}]"
        _mf(ch, None, where, dict)
        for key in ("clip_low", "clip_high", "mae", "max_error"):
            _mf(ch, key, where, (int, float), 0, 1e12)


def _check_quantization(t: dict) -> None:
    """The target fields that turn pixels into stored values (the loader's online border fill uses them)."""
    c = t["channels"]
    for key, lo in (("mean", -1e6), ("std", 1e-12)):
        vals = _mf(t, key, "target", list, optional=True)
        if vals is None:
            continue
        if len(vals) != c:
            raise FormatError(f"manifest: target.{key}: {len(vals)} values for {c} channels")
        for i, v in enumerate(vals):
            _mf({"v": v}, "v", f"target.{key}[{i}]", (int, float), lo, 1e6)
    if t["dtype"] in ("uint8", "int8"):  # integer tensors hold quantized values
        _mf(t, "scale", "target", (int, float), 1e-12, 1e6)
        lo, hi = (0, 255) if t["dtype"] == "uint8" else (-128, 127)
        _mf(t, "zero_point", "target", int, lo, hi, optional=True)


def _mf(
    d: Any,
    key: Any,
    where: str,
    kind: Any,
    lo: Any = None,
    hi: Any = None,
    choices: Tuple[str, ...] = (),
    optional: bool = False,
) -> Any:
    """One manifest field: ``d[key]`` (or ``d`` itself when key is None), type- and range-checked."""
    name = where if key is None else f"{where}.{key}" if where else key
    if key is None:
        v = d
    elif not isinstance(d, dict) or key not in d:
        if optional:
            return None
        raise (_Missing if isinstance(d, dict) else FormatError)(f"manifest: {name}: missing")
    else:
        v = d[key]
    if not isinstance(v, kind) or (isinstance(v, bool) and kind is not bool):
        want = " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__
        raise FormatError(f"manifest: {name}: expected {want}, got {type(v).__name__}")
    if (lo is not None and not v >= lo) or (hi is not None and not v <= hi):  # NaN fails both
        raise FormatError(f"manifest: {name}: {v} is outside [{lo}, {hi}]")
    if choices and v not in choices:
        raise FormatError(f"manifest: {name}: {v[:40]!r} is not one of {list(choices)}")
    return v


def _safe_relpath(path: str, name: str) -> None:
    """A source path must stay inside the source root: relative, no '..', no NUL."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\0" in path or ".." in parts:
        raise FormatError(f"manifest: {name}: {path[:80]!r} is not a relative path inside the source root")
