"""Rewrite a built pack's records as a writer of another kind would: instance masks and soft labels added,
or the whole pack put back to format version 1.  Digests, index and fingerprint are recomputed, so the
result is a valid pack (the builder does not write instances yet on every path; these tests need them now)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, Dict, Optional

import lmdb
import numpy as np

from edgeaug.device import format as F
from edgeaug.device import labels as L
from edgeaug.device.instances import instance_boxes

#: How the crafted tensors paint instance k: pixel value 200 + 20 * k (0 elsewhere).
PAINT = (200, 220)


def rewrite(
    src: Path, dst: Path, change: Callable, version: Optional[int] = None, recipe: Optional[dict] = None
) -> Path:
    """Copy ``src`` to ``dst``; ``change(r, tensor_bytes, header, labels) -> (tensor_bytes, labels_bytes)``.

    ``version``: write every record header and the manifest with this format version;
    ``recipe``: manifest recipe fields to set.
    """
    shutil.copy(src, dst)
    env = lmdb.open(str(dst), subdir=False, lock=False, map_size=1 << 30)
    with env.begin(write=True) as txn:
        m = json.loads(bytes(txn.get(F.MANIFEST_KEY)))
        index = np.frombuffer(bytes(txn.get(F.INDEX_KEY)), F.INDEX_DTYPE).copy()
        shape = (int(m["target"]["height"]), int(m["target"]["width"]))
        for r in range(m["records"]):
            v = bytes(txn.get(F.record_key(r)))
            h = F.RecordHeader(v)
            labels = L.unpack_labels(v[h.labels_offset : h.params_offset], shape, h.version)
            tensor, lab = change(r, v[F.HEADER_SIZE : h.labels_offset], h, labels)
            params = json.loads(v[h.params_offset :])
            x = np.frombuffer(tensor, np.uint8)
            extended = (version if version is not None else h.version) >= F.EXTENDED_LABELS
            new = F.encode_record(x, h.label, h.source, h.variant, h.split, lab, params, extended=extended)
            if version is not None:  # the version is outside the digest (bytes [40:])
                new = new[:4] + version.to_bytes(2, "little") + new[6:]
            txn.put(F.record_key(r), new)
            index[r]["digest"] = np.frombuffer(new[8:40], np.uint8)
        if version is not None:
            m["format_version"] = version
        m["recipe"].update(recipe or {})
        txn.put(F.INDEX_KEY, index.tobytes())
        m["fingerprint"] = F.fingerprint({k: v for k, v in m.items() if k != "fingerprint"}, index.tobytes())
        txn.put(F.MANIFEST_KEY, json.dumps(m).encode())
    env.close()
    return dst


def instance_masks(r: int, h: int, w: int) -> np.ndarray:
    """Two non-rectangular, non-overlapping instances per record, placed by ``r``."""
    m = np.zeros((2, h, w), bool)
    y, x = r % 3, r % 2
    m[0, y : y + 3, x : x + 4] = True
    m[0, y, x] = False  # a notch: the mask is not its box
    m[1, h - 3 :, w - 2 :] = True  # an L at the bottom right
    m[1, h - 3 : h - 1, w - 2] = False
    return m


def mix_of(r: int, label: int, classes: int):
    """Every other record is an offline mixed one."""
    return [(label, 0.7), ((label + 1) % classes, 0.3)] if r % 2 == 0 else []


def with_instances(src: Path, dst: Path, min_visibility: float = 0.0) -> Path:
    """Each uint8 record gets two instances (painted into its tensor, see :data:`PAINT`) and maybe a mix."""
    m = json.loads(_manifest(src))
    h, w, c = (int(m["target"][k]) for k in ("height", "width", "channels"))
    classes = len(m["classes"])

    def change(r, tensor, header, labels: Dict):
        inst = instance_masks(r, h, w)
        x = np.zeros((h, w, c), np.uint8)
        for k, value in enumerate(PAINT):
            x[inst[k]] = value
        boxes = np.concatenate([np.full((2, 1), header.label, np.float32), instance_boxes(inst)], 1)
        return x.tobytes(), L.pack_labels(boxes, None, None, inst, mix_of(r, header.label, classes))

    return rewrite(src, dst, change, version=F.EXTENDED_LABELS, recipe={"min_visibility": min_visibility})


def as_version_3(src: Path, dst: Path) -> Path:
    """The same records with extended labels sections (zero instance and mix counts): format version 3."""

    def change(r, tensor, header, labels):
        return tensor, L.pack_labels(labels["boxes"], labels["keypoints"], labels["mask"]) + bytes(8)

    return rewrite(src, dst, change, version=F.EXTENDED_LABELS)


def as_version_1(src: Path, dst: Path) -> Path:
    """The pack as format version 1 wrote it: no instances or mix counts in the labels sections."""

    def change(r, tensor, header, labels):
        assert labels["instances"] is None and not labels["mix"]
        return tensor, L.pack_labels(labels["boxes"], labels["keypoints"], labels["mask"])

    return rewrite(src, dst, change, version=1)


def _manifest(path: Path) -> bytes:
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
    with env.begin() as txn:
        raw = bytes(txn.get(F.MANIFEST_KEY))
    env.close()
    return raw
