"""Workstation verification: digests, and regenerating records from the sources.

Regeneration must run on the build machine (or one with the same OpenCV
build and CPU family): OpenCV is not bit-exact across x86 and ARM, so a
device only checks digests (``python -m edgeaug.loader verify``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from edgeaug.device.loader import Pack, PackError


@dataclass
class Mismatch:
    record: int
    source: str
    variant: int
    op: str
    max_abs_diff: float

    def __str__(self) -> str:
        return (
            f"record {self.record} ({self.source}, variant {self.variant}): {self.op}; max |diff| {self.max_abs_diff:g}"
        )


@dataclass
class VerifyReport:
    records: int = 0
    digest_problems: List[str] = field(default_factory=list)
    source_problems: List[str] = field(default_factory=list)
    regenerated: int = 0
    mismatches: List[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.digest_problems or self.source_problems or self.mismatches)

    def summary(self) -> str:
        s = f"{self.records - len(self.digest_problems)}/{self.records} digests ok"
        if self.regenerated or self.source_problems:
            s += (
                f", {self.regenerated - len(self.mismatches)}/{self.regenerated} regenerated "
                f"records byte-identical, {len(self.source_problems)} source problems"
            )
        return s + (" — OK" if self.ok else " — FAILED")


def verify_pack(path: str | Path, source: str | Path | None = None, sample: Optional[int] = None) -> VerifyReport:
    """Check digests; with ``source``, regenerate all (or ``sample``) records and compare."""
    rep = VerifyReport()
    with Pack(str(path)) as pack:
        rep.records = pack.records
        rep.digest_problems = pack.verify()
        if source is not None:
            _regenerate(pack, Path(source), sample, rep)
    return rep


def _pick(n: int, sample: Optional[int], fp: str) -> np.ndarray:
    if sample is None or sample >= n:
        return np.arange(n)
    rng = np.random.default_rng(int(fp[:16], 16))  # reproducible choice per pack
    return np.sort(rng.choice(n, size=max(0, sample), replace=False))


def _regenerate(pack: Pack, source: Path, sample: Optional[int], rep: VerifyReport) -> None:
    import hashlib

    from edgeaug.build.augment import Augmenter
    from edgeaug.build.render import (
        SourceDecodeError,
        decode,
        load_mask,
        read_source,
        render_variant,
        source_labels,
        working_image,
    )
    from edgeaug.config.recipe import parse_recipe
    from edgeaug.device.format import pack_labels
    from edgeaug.sources.scan import scan

    m = pack.manifest
    from edgeaug.config.targets import target_from_dict

    try:
        tgt = target_from_dict(m["target"])
    except (TypeError, ValueError, KeyError) as e:  # a crafted manifest
        raise PackError(f"{pack.path}: manifest target is malformed: {e}") from None
    aug = Augmenter(parse_recipe(m["recipe"], "manifest.recipe"), tgt)
    by_rel = {s.rel: s for s in scan(source).sources}
    chosen = _pick(pack.records, sample, m["fingerprint"])
    rows = pack._index[chosen]
    for src_idx in np.unique(rows["source"]):
        entry = m["sources"][int(src_idx)]
        src = by_rel.get(entry["path"])
        if src is None:
            rep.source_problems.append(f"{entry['path']}: missing from {source}")
            continue
        try:
            data = read_source(src.path)
        except SourceDecodeError as e:
            rep.source_problems.append(f"{entry['path']}: {e}")
            continue
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            rep.source_problems.append(f"{entry['path']}: content differs from the build's")
            continue
        try:
            image = decode(data, aug.recipe.fill)
            labels = source_labels(src, image.shape[1::-1])
            labels.mask = load_mask(src)
        except SourceDecodeError as e:
            rep.source_problems.append(f"{entry['path']}: {e}")
            continue
        work = working_image(image, aug)
        for r in chosen[rows["source"] == src_idx]:
            stored = pack.record_at(int(r))
            tensor, lab, params = render_variant(
                aug, work, labels, (image.shape[1], image.shape[0]), int(m["seed"]), src, int(stored["variant"])
            )
            rep.regenerated += 1
            diff = _compare(stored, tensor, pack_labels(lab.boxes, lab.keypoints, lab.mask), params)
            if diff is not None:
                rep.mismatches.append(Mismatch(int(r), entry["path"], int(stored["variant"]), *diff))


def _compare(stored: Dict[str, Any], tensor: np.ndarray, labels: bytes, params: List[Dict]) -> Any:
    """None if identical; else (which op, max abs tensor difference)."""
    from edgeaug.device.format import pack_labels

    x = stored["x"]
    d = (
        float(np.max(np.abs(x.astype(np.float64) - tensor.astype(np.float64))))
        if x.shape == tensor.shape
        else float("inf")
    )
    old = stored["params"].get("ops", [])
    if old != params:
        for i, (a, b) in enumerate(zip(old, params)):
            if a != b:
                return f"params of op {i} ({b.get('op')}) differ: stored {a} vs {b}", d
        return "the op list differs", d
    if d == 0 and pack_labels(stored["boxes"], stored["keypoints"], stored["mask"]) == labels:
        return None
    ops = [p["op"] for p in params if p.get("on")] or ["resize only"]
    what = "pixels" if d else "labels"
    return f"{what} differ after ops {', '.join(ops)}", d
