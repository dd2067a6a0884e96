"""How the detection study's mosaics cut its objects (``study_augment.py --cuts``): no training.

Every object of the train scenes gets its own class id and is followed through the builder's render of the
study's recipe and the device's batch mosaic (central or box-aware windows); docs/study.md has the tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import numpy as np
from study_common import digits_split, write_target


def cut_stats(
    work: Path,
    size: int = 64,
    n: int = 480,
    variants: int = 7,
    batch: int = 32,
    windows: str = "centre",
    tiles: str = "corner",
) -> Dict[str, Any]:
    """How the detection study's mosaics cut its objects at ``size`` x ``size``: visible share and size per object.

    Each object gets its own class id, followed through the builder's render (min_visibility 0) and the device's
    batch mosaic (p = 1.0).  No rotation or shear: a box's unclipped area is its source's x (fit x mosaic x affine
    scale)^2.  Per object shown (all four tiles' for a mosaic): its visible share v (of the record's box for the
    batch mosaic; ``total``: of the scene's).  v < 0.1: dropped (min_visibility).
    """
    import study_detect as sd

    from edgeaug.augment import Augmentation, PartnerPool

    rows = sd.make_split(None, sd.backgrounds(sd.TRAIN_BG, 1), [r[1] for r in digits_split()[0]], n, 11, size)
    ids, own, k = [], {}, 0
    for rel, img, b in rows:
        ids.append((rel, img, {"boxes": [[k + i, *x[1:]] for i, x in enumerate(b)]}))
        own[rel], k = list(range(k, k + len(b))), k + len(b)
    area = np.array([(x[3] - x[1]) * (x[4] - x[2]) for _, _, b in rows for x in b])
    fit, target, pool = size / sd.scaled(size)[0], write_target(work, size, "RGB"), PartnerPool(ids)
    out: Dict[str, Any] = {"originals (fit only, as val)": {"size": np.sqrt(area) * fit, "outputs": n}}
    tag = " with box-aware tiles" if tiles == "boxes" else ""
    for name, mosaic in (("affine only (K=8, no mosaic)", False), (f"builder mosaic{tag} (K=8 with mosaic)", True)):
        aug = Augmentation({**sd.recipe(8, mosaic, tiles=tiles), "min_visibility": 0.0}, str(target), seed=0)
        vis, recs = [], []
        for v, (rel, img, lab) in ((v, r) for v in range(1, variants + 1) for r in ids):
            _, labs, params = aug.record(img, lab, source=rel, variant=v, partners=pool if mosaic else None)
            s = fit * np.prod([p["scale"] for p in params if p["on"] and p["op"] in ("mosaic", "affine")])
            shown = [rel] + next((p["partner_rels"] for p in params if p["op"] == "mosaic"), [])
            bx = labs.boxes.reshape(-1, 5)
            share = _areas(bx) / (area[bx[:, 0].astype(int)] * s * s)
            got: Dict[int, List[float]] = {}  # a source drawn twice shows its objects twice
            for b, sh in zip(bx, share):
                got.setdefault(int(b[0]), []).append(sh)
            vis += [min(1.0, got[i].pop() if got.get(i) else 0.0) for t in shown for i in own[t]]
            recs.append((bx[share >= 0.1], dict(zip(bx[:, 0].astype(int).tolist(), share.tolist()))))
        out[name] = {"vis": vis, "size": np.sqrt(np.concatenate([_areas(r) for r, _ in recs])), "outputs": len(recs)}
        tag = " + batch mosaic" + (" (box-aware windows)" if windows == "boxes" else "")
        out[name + tag] = {**_batch_cuts(recs, n, size, batch, windows), "outputs": len(recs)}
    return out


def _batch_cuts(recs, n: int, size: int, batch: int, windows: str = "centre") -> Dict[str, list]:
    """The device's batch mosaic over ``recs`` (kept boxes, {id: share of the scene}), one epoch per ``n``."""
    from edgeaug.device.online_mix import mix_rng, plan_mix
    from edgeaug.device.online_mix_fit import fit_windows
    from edgeaug.device.online_mix_labels import mix_labels

    res: Dict[str, list] = {"vis": [], "size": [], "total": []}  # per object shown; size: kept ones' px
    for e0 in range(0, len(recs), n):
        order = np.random.default_rng([0, e0]).permutation(min(n, len(recs) - e0)) + e0
        for b0 in range(0, len(order), batch):
            part = [recs[i] for i in order[b0 : b0 + batch]]
            plan = plan_mix(mix_rng(0, e0 // n, b0 // batch), len(part), size, size, mosaic=1.0)
            if windows == "boxes":
                fit_windows(plan, [r for r, _ in part])
            for j, la in enumerate(mix_labels([{"boxes": r} for r, _ in part], plan, min_visibility=0.0)):
                got = dict(zip(la["boxes"][:, 0].astype(int).tolist(), _areas(la["boxes"]).tolist()))
                for q in plan.quads[j]:
                    for b, a in zip(part[q][0], _areas(part[q][0])):
                        v = min(1.0, got.get(int(b[0]), 0.0) / max(a, 1e-12))
                        res["vis"].append(v)
                        res["total"].append(v * min(1.0, part[q][1][int(b[0])]))
                        res["size"] += [np.sqrt(got[int(b[0])])] if v >= 0.1 else []
    return res


def _areas(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, np.float64).reshape(-1, 5)
    return (b[:, 3] - b[:, 1]) * (b[:, 4] - b[:, 2])


def cut_table(stats: Dict[str, Any], size: int) -> str:
    """The cut measurement as a markdown table."""
    head = "objects shown | whole (v = 1) | cut, kept (0.1 <= v < 1) | dropped (v < 0.1) | of them v = 0"
    lines = [f"objects at {size}x{size}; v: visible share of an object's box", "", f"| pipeline | {head} "]
    lines[-1] += "| whole vs the scene | per output: kept (whole vs the scene) | kept size px p10 / p50 / p90 (mean) |"
    lines.append("|---" * 9 + "|")
    for name, st in stats.items():
        z = np.asarray(st["size"], np.float64)
        sz = f"{np.percentile(z, 10):.1f} / {np.median(z):.1f} / {np.percentile(z, 90):.1f} ({z.mean():.1f})"
        v = np.asarray(st.get("vis", np.ones(len(z))))
        t = np.asarray(st.get("total", v))
        pct = [np.mean(m) * 100 for m in (v >= 0.999, (v >= 0.1) & (v < 0.999), v < 0.1, v <= 0, t >= 0.999)]
        per = f"{np.sum(v >= 0.1) / st['outputs']:.2f} ({np.sum(t >= 0.999) / st['outputs']:.2f})"
        lines.append(f"| {name} | {len(v)} | " + " | ".join(f"{p:.1f}%" for p in pct) + f" | {per} | {sz} |")
    return "\n".join(lines)
