"""Workstation verification: digests, and regenerating records from the sources.

Regeneration must run on the build machine (or one with the same OpenCV
build and CPU family): OpenCV is not bit-exact across x86 and ARM, so a
device only checks digests (``python -m edgeaug.loader verify``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from edgeaug.builder.augment import Augmenter
from edgeaug.builder.partners import Partners
from edgeaug.builder.render import load_source, render_variant, working_image
from edgeaug.config.recipe import parse_recipe
from edgeaug.config.targets import target_from_dict
from edgeaug.device.format import FormatError
from edgeaug.device.labels import pack_labels
from edgeaug.device.loader import Pack, PackError
from edgeaug.sources.base import Source
from edgeaug.sources.scan import scan


@dataclass
class Mismatch:
    record: int
    source: str
    variant: int
    op: str
    max_abs_diff: float

    def __str__(self) -> str:
        diff = f"; max |diff| {self.max_abs_diff:g}" if self.max_abs_diff else ""  # 0: the op says pixels match
        return f"record {self.record} ({self.source}, variant {self.variant}): {self.op}{diff}"


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


def verify_pack(
    path: str | Path,
    source: str | Path | None = None,
    sample: Optional[int] = None,
    progress: Optional[Callable[[int, int], None]] = None,
    recipe_dir: str | Path | None = None,
) -> VerifyReport:
    """Check digests; with ``source``, regenerate all (or ``sample``) records and compare.

    ``progress(done, total)`` is called after each regenerated record.  The
    pack is untrusted: a model file its recipe names (the ``onnx`` op) must be
    a relative path inside ``source``'s folder or ``recipe_dir`` (the build
    recipe's folder), symlinks resolved; anything else is refused.
    """
    rep = VerifyReport()
    with Pack(str(path)) as pack:
        rep.records = pack.records
        rep.digest_problems = pack.verify()
        if source is not None:
            _regenerate(pack, Path(source), sample, rep, progress, recipe_dir)
    return rep


def record_sources(manifest: Dict[str, Any], records: int) -> np.ndarray:
    """The source index of every record, from the manifest alone.

    Records are train sources in manifest order, then val sources, each
    source's records together (docs/FORMAT.md); each entry says how many.
    """
    src = manifest["sources"]
    order = [i for split in ("train", "val") for i, e in enumerate(src) if e["split"] == split]
    out = np.repeat(np.asarray(order, np.int64), [int(src[i]["records"]) for i in order])
    if len(out) != records:
        raise PackError(f"manifest: sources list {len(out)} records in all, but the pack has {records}")
    return out


def _pick(n: int, sample: Optional[int], fp: str) -> np.ndarray:
    if sample is None or sample >= n:
        return np.arange(n)
    rng = np.random.default_rng(int(fp[:16], 16))  # reproducible choice per pack
    return np.sort(rng.choice(n, size=max(0, sample), replace=False))


def _regenerate(
    pack: Pack,
    source: Path,
    sample: Optional[int],
    rep: VerifyReport,
    progress: Optional[Callable[[int, int], None]],
    recipe_dir: str | Path | None = None,
) -> None:

    m = pack.manifest
    try:
        tgt = target_from_dict(m["target"])
    except FormatError as e:  # a crafted manifest
        raise PackError(f"{pack.path}: {e}") from None
    roots = (source if source.is_dir() else source.parent,) + ((Path(recipe_dir),) if recipe_dir else ())
    aug = Augmenter(parse_recipe(m["recipe"], f"{pack.path}: manifest.recipe", base=roots), tgt)
    sset = scan(source)
    built_from = m.get("source_kind")
    if built_from is not None and sset.kind != built_from:
        rep.source_problems.append(
            f"{source}: reads as a {sset.kind} dataset, but the pack was built from a {built_from} dataset"
        )
        return
    by_rel = {s.rel: s for s in sset.sources}
    chosen = _pick(pack.records, sample, m["fingerprint"])
    owner = record_sources(m, pack.records)[chosen]
    done = 0
    for src_idx in np.unique(owner):
        records = chosen[owner == src_idx]
        entry = m["sources"][int(src_idx)]
        src = by_rel.get(entry["path"])
        if src is None:
            rep.source_problems.append(f"{entry['path']}: missing from {source}")
        else:
            partners = _partners(m, by_rel, int(src_idx), source, aug) if aug.multi is not None else None
            _regenerate_source(pack, aug, src, int(src_idx), records, rep, partners)
        done += len(records)
        if progress:
            progress(done, len(chosen))


def _partners(m: Dict[str, Any], by_rel: Dict[str, Any], src_idx: int, root: Path, aug: Any) -> Partners:
    """The build's partner candidates of source ``src_idx``: its split's sources in manifest (plan) order.

    A source missing from the folder stays in the list (as a path that does not
    exist), so indices keep their meaning and a record that used it shows up as
    a mismatch.
    """
    entries = m["sources"]
    split = entries[src_idx].get("split")
    same = [i for i, e in enumerate(entries) if e.get("split") == split]
    base = root if root.is_dir() else root.parent
    cands = tuple(
        by_rel.get(entries[i]["path"]) or Source(str(entries[i]["path"]), base / "\0missing", -1) for i in same
    )
    return Partners(cands, same.index(src_idx), aug.recipe.fill, load_source)


def _regenerate_source(
    pack: Pack, aug: Any, src: Any, src_idx: int, records: np.ndarray, rep: VerifyReport, partners: Any = None
) -> None:
    """Render ``records`` of one source again, through the build's own read-decode-labels path, and compare."""

    entry, seed = pack.manifest["sources"][src_idx], int(pack.manifest["seed"])
    loaded = load_source(src, aug.recipe.fill, entry["sha256"], entry.get("mask_sha256"))  # older packs: no mask hash
    if loaded.error:
        rep.source_problems.append(f"{entry['path']}: {loaded.error}")
        return
    size, work = loaded.image.shape[1::-1], working_image(loaded.image, aug)
    for r in records:
        stored = pack.record_at(int(r))
        if stored["source"] != src_idx:
            rep.digest_problems.append(f"record {r}: names source {stored['source']}, the manifest {src_idx}")
            continue
        v = int(stored["variant"])
        tensor, lab, params = render_variant(aug, work, loaded.labels, size, seed, src, v, None, loaded.image, partners)
        rep.regenerated += 1
        diff = _compare(stored, tensor, lab, params)
        if diff is not None:
            rep.mismatches.append(Mismatch(int(r), entry["path"], v, *diff))


def _compare(stored: Dict[str, Any], tensor: np.ndarray, lab: Any, params: List[Dict]) -> Any:
    """None if identical; else (what differs, max abs tensor difference)."""

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
    same_labels = _packed(stored) == pack_labels(
        lab.boxes, lab.keypoints, lab.mask, instances=lab.instances, mix=lab.mix
    )
    if d == 0 and same_labels:
        return None
    ops = ", ".join(p["op"] for p in params if p.get("on")) or "resize only"
    if d == 0:
        return f"labels differ after ops {ops} ({_label_diff(stored, lab)}); the pixels are identical", d
    return f"pixels differ after ops {ops}" + (
        "" if same_labels else f"; labels differ too ({_label_diff(stored, lab)})"
    ), d


def _packed(stored: Dict[str, Any]) -> bytes:
    """A stored record's labels packed again, instances and soft label included (when the pack has them)."""
    return pack_labels(
        stored["boxes"], stored["keypoints"], stored["mask"], instances=stored.get("instances"), mix=stored.get("mix")
    )


def _label_diff(stored: Dict[str, Any], lab: Any) -> str:
    """Which labels differ: counts, or the largest coordinate difference."""
    parts = []
    for name in ("boxes", "keypoints"):
        a, b = np.asarray(stored[name], np.float64), np.asarray(getattr(lab, name), np.float64)
        if a.shape != b.shape:
            parts.append(f"{name}: stored {len(a)}, regenerated {len(b)}")
        elif a.size and not np.array_equal(a, b):
            parts.append(f"{name}: max |diff| {float(np.max(np.abs(a - b))):g}")
    sm, rm = stored["mask"], lab.mask
    if (sm is None) != (rm is None):
        parts.append(f"mask: stored {'none' if sm is None else 'one'}, regenerated {'none' if rm is None else 'one'}")
    elif sm is not None and not np.array_equal(sm, rm):
        parts.append(f"mask: {int(np.count_nonzero(sm != rm))} pixels")
    si, ri = stored.get("instances"), getattr(lab, "instances", None)
    if "instances" not in stored:  # a pack without instance storage
        pass
    elif (si is None) != (ri is None) or (si is not None and si.shape != ri.shape):
        parts.append(f"instances: stored {0 if si is None else len(si)}, regenerated {0 if ri is None else len(ri)}")
    elif si is not None and not np.array_equal(si, ri):
        parts.append(f"instances: {int(np.count_nonzero(si != ri))} pixels")
    smix = [(int(c), float(np.float32(w))) for c, w in stored.get("mix") or []]  # stored as float32
    rmix = [(int(c), float(np.float32(w))) for c, w in getattr(lab, "mix", None) or []]
    if "mix" in stored and smix != rmix:  # no soft label: [] stored, None or [] regenerated
        parts.append(f"mix: stored {smix}, regenerated {rmix}")
    return "; ".join(parts) or "label bytes"
