"""The labels section of a record (format versions 1 to 3), and soft targets from it.

Device code: numpy and the standard library only (Python >= 3.9, numpy >= 1.21).

Layout, little-endian, every array prefixed by its ``u4`` row or byte count::

    u4 n, (n, 5) float32   boxes [class, x0, y0, x1, y1] in output pixels
    u4 k, (k, 3) float32   keypoints [x, y, visible]
    u4 b, b bytes          semantic mask (H, W) uint8; b is 0 or H*W
    -- version 3 adds (EXTENDED_LABELS; versions 1 and 2 end after the mask) --
    u4 s, s bytes          instance masks (see :mod:`.instances`); s = 0: none
    u4 m, (m, 2) float32   soft label [class, weight] of a mixed record; m = 0: none

Row ``i`` of the instances is the mask of box ``i``.  The section is untrusted:
every count is checked against the section's end before anything is read or
allocated, and a crafted section gives a :class:`FormatError` naming the field.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .format import EXTENDED_LABELS, FORMAT_VERSION, MAX_LABEL_ROWS, FormatError, newer_format  # bundle: drop
from .instances import decode_instances, encode_instances  # bundle: drop

#: Most ``[class, weight]`` rows one record's soft label may have.
MAX_MIX_ROWS = 1 << 16
#: Class indices must be exact in float32.
MAX_MIX_CLASS = 1 << 24


def is_extended(instances: Optional[np.ndarray], mix: Optional[Sequence[Tuple[int, float]]]) -> bool:
    """Whether a record needs the extended labels section (format version 3): instance masks or a soft label."""
    return instances is not None or bool(mix)


def pack_labels(
    boxes: Optional[np.ndarray],
    keypoints: Optional[np.ndarray],
    mask: Optional[np.ndarray],
    instances: Optional[np.ndarray] = None,
    mix: Optional[Sequence[Tuple[int, float]]] = None,
) -> bytes:
    """Serialize a record's labels section.

    ``instances``: ``(n, H, W)`` bool masks aligned with the ``n`` boxes, or None;
    ``mix``: the soft label ``[(class, weight), ...]`` of an offline mixed record.
    With neither, the section ends after the mask (versions 1 and 2, which every
    loader reads); otherwise it is extended: pass ``extended=is_extended(...)``
    to :func:`edgeaug.device.format.encode_record` so the record says version 3.
    """
    parts = []
    for arr, cols in ((boxes, 5), (keypoints, 3)):
        a = np.zeros((0, cols), "<f4") if arr is None else np.ascontiguousarray(arr, "<f4")
        if a.ndim != 2 or a.shape[1] != cols:
            raise FormatError(f"label array must be (n, {cols}), got {a.shape}")
        parts += [struct.pack("<I", a.shape[0]), a.tobytes()]
    nboxes = struct.unpack_from("<I", parts[0])[0]
    m = b"" if mask is None else np.ascontiguousarray(mask, "u1").tobytes()
    parts += [struct.pack("<I", len(m)), m]
    if not is_extended(instances, mix):
        return b"".join(parts)
    inst = b""
    if instances is not None:
        if np.ndim(instances) != 3 or len(instances) != nboxes:
            raise FormatError(f"instances {np.shape(instances)} must be (n, H, W) for {nboxes} boxes")
        if mask is not None and np.shape(instances)[1:] != np.shape(mask):
            raise FormatError(f"instances {np.shape(instances)} do not match the mask {np.shape(mask)}")
        inst = encode_instances(instances)
    parts += [struct.pack("<I", len(inst)), inst]
    rows = _mix_rows(mix)
    parts += [struct.pack("<I", len(rows)), rows.tobytes()]
    return b"".join(parts)


def _mix_rows(mix) -> np.ndarray:
    """``mix`` as checked ``(m, 2) <f4`` rows (the checks :func:`_read_mix` makes on the way back)."""
    rows = np.asarray([] if mix is None else [[c, w] for c, w in mix], "<f4").reshape(-1, 2)
    _check_mix(rows, "mix")
    return rows


def _check_mix(rows: np.ndarray, where: str) -> None:
    for i, (c, w) in enumerate(rows.tolist()):
        if not (0 <= c < MAX_MIX_CLASS and c == int(c)):
            raise FormatError(f"{where}[{i}]: class {c} is not a class index")
        if not (math.isfinite(w) and 0.0 <= w <= 1.0):
            raise FormatError(f"{where}[{i}]: weight {w} is outside [0, 1]")


def unpack_labels(buf, mask_shape: Tuple[int, int], version: Optional[int] = None) -> Dict[str, Any]:
    """Parse a labels section of format ``version`` (the record header's), bounds-checking every count.

    Returns ``boxes``, ``keypoints``, ``mask`` (``(H, W)`` uint8 or None),
    ``instances`` (``(n, H, W)`` bool aligned with ``boxes``, or None) and
    ``mix`` (a list of ``(class, weight)``, empty for a record that is not mixed);
    version 1 and 2 sections have no instances and no mix.  ``version`` None (tools
    and tests only; readers pass the record header's) reads what :func:`pack_labels`
    wrote: extended when bytes follow the mask.
    """
    if version is not None and not 1 <= version <= FORMAT_VERSION:
        raise FormatError(newer_format(version) if version > FORMAT_VERSION else f"labels: format version {version}")
    out: Dict[str, Any] = {}
    pos, end = 0, len(buf)
    for name, cols in (("boxes", 5), ("keypoints", 3)):
        n = _read_u4(buf, pos, end, name)
        pos += 4
        nbytes = n * cols * 4
        if n > MAX_LABEL_ROWS or pos + nbytes > end:
            raise FormatError(f"labels: {name} count {n} overruns the record")
        # Copies: the caller may keep labels after the pack (and its mapping) is closed.
        out[name] = np.frombuffer(buf, "<f4", n * cols, pos).reshape(n, cols).copy()
        pos += nbytes
    n = _read_u4(buf, pos, end, "mask")
    pos += 4
    h, w = mask_shape
    if version is None:
        version = 1 if pos + n == end else EXTENDED_LABELS
    mask_end = end if version < EXTENDED_LABELS else pos + n
    if n not in (0, h * w) or pos + n != mask_end or mask_end > end:
        raise FormatError(f"labels: mask of {n} bytes does not fit {h}x{w}")
    out["mask"] = np.frombuffer(buf, "u1", n, pos).reshape(h, w).copy() if n else None
    pos += n
    out["instances"], out["mix"] = None, []
    if version >= EXTENDED_LABELS:
        pos = _read_instances(buf, pos, end, out, (h, w))
        pos = _read_mix(buf, pos, end, out)
        if pos != end:
            raise FormatError(f"labels: {end - pos} bytes after the mix field")
    return out


def _read_instances(buf, pos: int, end: int, out: Dict[str, Any], shape: Tuple[int, int]) -> int:
    n = _read_u4(buf, pos, end, "instances")
    pos += 4
    if pos + n > end:
        raise FormatError(f"labels: instances of {n} bytes overrun the section")
    if n:
        out["instances"] = decode_instances(memoryview(buf)[pos : pos + n], len(out["boxes"]), *shape)
    return pos + n


def _read_mix(buf, pos: int, end: int, out: Dict[str, Any]) -> int:
    m = _read_u4(buf, pos, end, "mix")
    pos += 4
    if m > MAX_MIX_ROWS or pos + 8 * m > end:
        raise FormatError(f"labels: mix count {m} overruns the section")
    rows = np.frombuffer(buf, "<f4", 2 * m, pos).reshape(m, 2)
    _check_mix(rows, "labels: mix")
    out["mix"] = [(int(c), float(w)) for c, w in rows.tolist()]
    return pos + 8 * m


def _read_u4(buf, pos: int, end: int, what: str) -> int:
    if pos + 4 > end:
        raise FormatError(f"labels: {what} count truncated")
    return struct.unpack_from("<I", buf, pos)[0]


def section_counts(buf, version: int = FORMAT_VERSION) -> Tuple[int, int, int]:
    """``(boxes, instance masks or -1 for none, mix rows)`` of a labels section, read from its counts only.

    Cheap (nothing is decoded): for summaries over a whole pack.  Raises
    :class:`FormatError` where :func:`unpack_labels` would on the counts.
    """
    pos, end, counts = 0, len(buf), []
    for name, unit in (("boxes", 20), ("keypoints", 12), ("mask", 1), ("instances", 1)):
        if name == "instances" and version < EXTENDED_LABELS:
            return counts[0], -1, 0
        n = _read_u4(buf, pos, end, name)
        if pos + 4 + n * unit > end:
            raise FormatError(f"labels: {name} count {n} overruns the section")
        counts.append(n)
        pos += 4 + n * unit
    if 0 < counts[3] < 4:
        raise FormatError("labels: instances count truncated")
    inst = _read_u4(buf, pos - counts[3], end, "instances") if counts[3] else -1
    return counts[0], inst, _read_u4(buf, pos, end, "mix")


def soft_targets_from_records(labels: Sequence[int], mixes: Sequence[Sequence], classes: int) -> np.ndarray:
    """``(B, classes)`` float32 training targets of ``B`` stored records.

    Row ``i`` is the one-hot of ``labels[i]`` when ``mixes[i]`` is empty, else
    the record's soft label (``Pack.record(i)["mix"]``: ``(class, weight)``
    pairs, a class may repeat), normalized to sum to 1.  A class outside
    ``0..classes-1`` (or an unlabeled record, label -1, without a mix) is a
    ``ValueError`` naming the row.
    """
    if len(labels) != len(mixes):
        raise ValueError(f"soft targets: {len(labels)} labels but {len(mixes)} mixes")
    out = np.zeros((len(labels), int(classes)), np.float32)
    for i, (label, mix) in enumerate(zip(labels, mixes)):
        pairs = list(mix) if mix is not None and len(mix) else [(int(label), 1.0)]
        for c, w in pairs:
            if not 0 <= int(c) < classes:
                raise ValueError(f"soft targets: row {i}: class {int(c)} outside 0..{classes - 1}")
            out[i, int(c)] += float(w)
        total = out[i].sum()
        if not total > 0:
            raise ValueError(f"soft targets: row {i}: weights sum to {total}")
        out[i] /= total
    return out


def describe_mix(mix: Sequence[Tuple[int, float]], classes: List[str]) -> str:
    """A soft label for people: ``"cat 0.62 + dog 0.38"`` (class index when it has no name)."""
    return " + ".join(f"{classes[c] if 0 <= c < len(classes) else c} {w:.2f}" for c, w in mix)
