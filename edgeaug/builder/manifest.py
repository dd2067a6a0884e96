"""What a pack is sealed with and what a partial build is keyed by.

* :func:`manifest_for`: the pack's manifest, everything needed to understand
  and reproduce it (sources, skipped ones, splits, versions, the audit);
* :func:`plan_fingerprint`: the sha256 of everything the pack's bytes depend
  on but the sources' content; a partial build is resumed only when it matches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
from typing import Any, Dict, Sequence

from edgeaug import __version__
from edgeaug.builder import chunks
from edgeaug.builder.audit import audit
from edgeaug.builder.plan import Task, render_versions
from edgeaug.config.recipe import Recipe
from edgeaug.config.targets import Target
from edgeaug.device.format import EXTENDED_LABELS, SPLITS
from edgeaug.sources.base import SourceSet


def pack_version(sset, recipe, codec: str) -> int:
    """The lowest format version that reads every record the build can write.

    3 (extended labels) when a record can hold instance masks (a dataset with
    segments) or a soft label (a multi-image op first in the recipe), else 2
    when tensors are compressed, else 1: such packs stay readable by every loader.
    """
    first = recipe.ops[0].build() if recipe.ops else None
    multi = first is not None and (
        getattr(first, "multi", False) or any(getattr(c, "multi", False) for c in getattr(first, "children", ()))
    )
    if multi or any(getattr(s, "segments", None) for s in sset.sources):
        return EXTENDED_LABELS
    return 2 if codec != "none" else 1


def manifest_for(sset, tasks, results, recipe, target, seed: int, val: float, hist=None) -> Dict[str, Any]:
    """The manifest: everything needed to understand and reproduce the pack.

    ``hist``: the kept records' summed histograms for the quantization audit
    (None: summed from ``results``).
    """
    import numpy as np

    from edgeaug.builder.plan import opencv_version

    split_of = {t.index: t.split for t in tasks}
    sources, skipped = [], []
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
        sources.append(entry)
    for t in tasks:
        splits[t.split]["count"] += results[t.index].count if t.index in results else 0
    splits["val"]["start"] = splits["train"]["count"]
    codec, level = target.compress
    return {
        "format_version": pack_version(sset, recipe, codec),
        **({"compression": {"codec": codec, "level": level}} if codec != "none" else {}),
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
        # "counts" (records per split and class, by each record's own label) comes from the index: PackWriter.finish.
        "tensor": {"shape": list(target.shape), "dtype": target.dtype},
        # Optional: per-instance keypoint i is keypoint_flip_idx[i] after a mirror (for online flips on the device).
        **({"keypoint_flip_idx": list(sset.keypoint_flip)} if getattr(sset, "keypoint_flip", None) else {}),
        "quantization_audit": audit(hist, target) if hist is not None else audit_results(results.values(), target),
    }


def audit_results(results, target: Target) -> Dict[str, Any]:
    """Sum the workers' histograms into the manifest's quantization audit."""
    import numpy as np

    total = np.zeros((target.channels, 256), np.int64)
    for r in results:
        if r.hist is not None:
            total += r.hist
    return audit(total, target)


def plan_fingerprint(
    sset: SourceSet, tasks: Sequence[Task], recipe: Recipe, target: Target, seed: int, val: float
) -> str:
    """sha256 of everything a pack's bytes depend on except the sources' content.

    A partial build is resumed only when this matches (contents are checked
    separately).  Absolute paths stay in the local sidecar; never in a pack.
    """
    srcs = [{f.name: getattr(s, f.name) for f in dataclasses.fields(s)} for s in sset.sources]
    body = {
        "format": 1,
        **({"compress": list(target.compress)} if target.compress[0] != "none" else {}),
        "versions": render_versions(),
        "target": target.to_dict(),
        "recipe": recipe.to_dict(),
        "seed": seed,
        "val": val,
        "classes": list(sset.classes),
        "kind": sset.kind,
        "sources": srcs,
        "tasks": [[t.index, t.split, list(t.variants)] for t in tasks],
        "chunk_records": chunks.CHUNK_RECORDS,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
