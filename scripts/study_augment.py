#!/usr/bin/env python3
"""Does a pack train a model as well as online augmentation?  Classification and detection on CPU.

Classification: scikit-learn's digits (1797 real 8x8 scans).  A seeded 20%
is held out; the train 80% are written as PNGs in class folders and built by
the real builder into 32x32 gray packs.  Validation is **deployment-shifted**:
the held-out digits rendered like a pack's val record, then passed once through
a fixed seeded "camera" made outside edgeaug's recipe (:func:`camera`).  Every
condition uses the same recipe (:data:`RECIPE`): ``none`` (a pack with
``variants = 0``); ``online`` (a fresh draw per epoch and sample through
``Augmentation.online``: epoch ``e`` is variant ``1 + e``); ``offline K``
(``Pack.batches(epoch=e)`` serves one variant per source per epoch); ``offline
K=8 + hybrid`` (the device's online shift, then its batch mixup/cutmix with
soft targets).  The model is a small CNN (PyTorch, ``pip install
edgeaug[study]``); ``--quick`` trains a numpy MLP instead, for CI.  Per
condition: val accuracy (mean +- sd over seeds), storage and the data path's
epoch time.  Detection: see ``study_detect.py`` (``--det-size``: its frame;
``--cuts``: how its mosaics cut objects, no training).  docs/study.md has the results.

    python scripts/study_augment.py [--quick] [--epochs 20] [--seeds 3] [--work DIR] [--json OUT] [--only TASK]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from study_variety import TARGET  # noqa: E402  (the study's profile: same as the variety study's)

# Geometry, tone and degradations that suit handwritten digits (no mirror: it changes what a digit is).
RECIPE = {
    "variants": 1,
    "include_original": False,
    "resize": "squash",
    "border": "constant",
    "fill": 0,
    "ops": [
        {"op": "affine", "p": 0.9, "scale": [0.8, 1.2], "translate": [-0.12, 0.12], "shear": [-10, 10]},
        {"op": "rotate", "p": 0.7, "degrees": [-25, 25]},
        {"op": "brightness", "p": 0.5, "delta": [-0.2, 0.2]},
        {"op": "contrast", "p": 0.5, "factor": [0.6, 1.2]},
        {"op": "gaussian_blur", "p": 0.4, "sigma": [0.3, 1.2]},
        {"op": "gaussian_noise", "p": 0.4, "sigma": [0.01, 0.05]},
    ],
}

SIZE, VAL, BATCH, SHIFT, CLASSES, CAMERA_SEED = 32, 0.2, 64, 2, 10, 20261207
MIX = {"mixup": 0.15, "cutmix": 0.15}


def recipe(k: int) -> dict:
    """The study's recipe with ``k`` variants (``k == 0``: the originals only)."""
    return {**RECIPE, "variants": k, "include_original": k == 0}


def write_target(work: Path, size: int, color: str) -> Path:
    path = work / f"target_{color.lower()}{size}.toml"
    path.write_text(TARGET.format(size=size, channels=1 if color == "GRAY" else 3, color=color))
    return path


def build_pack(work: Path, data: Path, name: str, rcp: dict, target: Path, seed: int = 0) -> Tuple[Path, float]:
    """Build (or reuse, with ``--work``) a pack; returns its path and the build's wall seconds (0 if reused)."""
    from edgeaug.builder.pipeline import build
    from edgeaug.config.recipe import parse_recipe

    out = work / f"{name}.lmdb"
    if out.exists():
        return out, 0.0
    t0 = time.monotonic()
    r = build(data, out, target, parse_recipe(rcp, name), seed=seed, workers=2, val=0.0)
    dt = time.monotonic() - t0
    print(f"  built {out.name}: {r.records} records in {dt:.1f}s", file=sys.stderr, flush=True)
    return out, dt


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


# --- data ------------------------------------------------------------------------------


def digits_split(
    limit: Optional[int] = None,
) -> Tuple[List[Tuple[str, np.ndarray, int]], List[Tuple[str, np.ndarray, int]]]:
    """(train, val) lists of (rel path, 8x8 uint8 image, label); a seeded 20% is val."""
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs, ys = np.rint(d.images * 255 / 16).astype(np.uint8), d.target
    order = np.random.default_rng(7).permutation(len(ys))[:limit]
    n_val = int(round(len(order) * VAL))
    rows = [(f"{ys[i]}/{i:04d}.png", imgs[i], int(ys[i])) for i in order]
    return rows[n_val:], rows[:n_val]


def write_images(root: Path, rows: List[Tuple[str, np.ndarray, int]]) -> None:
    import cv2

    for rel, img, _ in rows:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), img)


def camera(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One fixed "device camera" pass over a uint8 (H, W[, C]) image: made with cv2/numpy, not edgeaug's ops."""
    import cv2

    h, w = x.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2 + rng.uniform(-2, 2), h / 2 + rng.uniform(-2, 2)), rng.uniform(-30, 30), 1.0)
    m[:, :2] *= rng.uniform(0.75, 1.2)
    m[:, 2] += rng.uniform(-0.12, 0.12, 2) * (w, h)
    y = cv2.warpAffine(x, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    y = cv2.GaussianBlur(y, (0, 0), rng.uniform(0.4, 1.3)).astype(np.float32)
    y = y * rng.uniform(0.55, 1.0) + rng.uniform(0, 45) + rng.normal(0, rng.uniform(3, 12), y.shape)
    return np.clip(np.rint(y), 0, 255).astype(np.uint8).reshape(x.shape)


def shifted_val(val_rows, aug) -> Tuple[np.ndarray, np.ndarray]:
    """Val tensors as a pack renders them (variant 0), then the camera; seeded once for the whole study."""
    rng = np.random.default_rng(CAMERA_SEED)
    xs = [camera(aug.record(img, source=rel, variant=0)[0], rng) for rel, img, _ in val_rows]
    return np.stack(xs), np.array([y for _, _, y in val_rows], np.int64)


# --- conditions: each yields (x uint8 NHWC, targets) batches for an epoch ----------------


class Condition:
    """A row of the table: how its batches are served, and what it stores."""

    def __init__(self, name: str, pack: Optional[Path] = None, shift: int = 0, mix: bool = False) -> None:
        self.name, self.pack, self.shift, self.mix = name, pack, shift, mix
        self.online = None  # (Augmentation, train rows) for the online condition

    def batches(self, seed: int, epoch: int) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        """Targets are int64 class ids, or (B, classes) float32 soft targets under batch mixup/cutmix."""
        if self.online is not None:
            yield from self._online(seed, epoch)
            return
        from edgeaug.device.loader import Pack

        mix = {**MIX, "soft_labels": True} if self.mix else {}  # the device's batch mixup/cutmix, soft targets
        with Pack(str(self.pack), "train", seed=seed) as p:
            for x, y in p.batches(BATCH, epoch=epoch, shift=self.shift, **mix):
                yield x, (y if self.mix else y.astype(np.int64))

    def _online(self, seed: int, epoch: int) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        aug, rows = self.online
        order = np.random.default_rng([seed, epoch]).permutation(len(rows))
        for b in range(0, len(order), BATCH):
            part = [rows[i] for i in order[b : b + BATCH]]
            x = np.stack([aug.online(img, epoch, source=rel)[0] for rel, img, _ in part])
            yield x, np.array([y for _, _, y in part], np.int64)

    def epoch_seconds(self, epochs: int = 2) -> float:
        """Wall seconds of the data path alone for one epoch (median of ``epochs``): reads, online ops, renders."""
        times = []
        for e in range(epochs):
            t0 = time.perf_counter()
            for _ in self.batches(0, e):
                pass
            times.append(time.perf_counter() - t0)
        return float(np.median(times))


def conditions(work: Path, data: Path, train_rows, target: Path, ks: List[int], hybrid_k: int) -> List[Condition]:
    from edgeaug.augment import Augmentation

    rows = [Condition("none (originals)", build_pack(work, data, "k0", recipe(0), target)[0])]
    online = Condition("online (fresh draw every epoch, in-process API)")
    online.online = (Augmentation(recipe(1), str(target), seed=0), train_rows)
    rows.append(online)
    packs = {k: build_pack(work, data, f"k{k}", recipe(k), target)[0] for k in sorted(set(ks) | {hybrid_k})}
    rows += [Condition(f"offline K={k}", packs[k]) for k in ks]
    rows.append(Condition(f"offline K={hybrid_k} + shift {SHIFT}", packs[hybrid_k], SHIFT))
    mix = f"mixup {MIX['mixup']} + cutmix {MIX['cutmix']}"
    rows.append(Condition(f"offline K={hybrid_k} + shift {SHIFT} + {mix}", packs[hybrid_k], SHIFT, True))
    return rows


# --- models: fit(condition, seed, epochs) -> predict(x) ------------------------------------


def train_numpy(cond: Condition, seed: int, epochs: int, hidden: int = 64) -> Callable[[np.ndarray], np.ndarray]:
    """A one-hidden-layer MLP in numpy (softmax cross-entropy, soft targets allowed, Adam): --quick, no PyTorch."""
    rng = np.random.default_rng(seed)
    d = SIZE * SIZE
    params = [rng.normal(0, (2 / d) ** 0.5, (d, hidden)), np.zeros(hidden), rng.normal(0, 0.1, (hidden, CLASSES))]
    params.append(np.zeros(CLASSES))
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    step, lr = 0, 2e-3
    for e in range(epochs):
        for x, y in cond.batches(seed, e):
            t = np.eye(CLASSES)[y] if y.ndim == 1 else y.astype(np.float64)
            a = x.reshape(len(x), -1) / 255.0
            h = np.maximum(a @ params[0] + params[1], 0)
            z = h @ params[2] + params[3]
            p = np.exp(z - z.max(1, keepdims=True))
            g = (p / p.sum(1, keepdims=True) - t) / len(x)
            gh = (g @ params[2].T) * (h > 0)
            grads = [a.T @ gh, gh.sum(0), h.T @ g, g.sum(0)]
            step += 1
            for i, gr in enumerate(grads):
                m[i] = 0.9 * m[i] + 0.1 * gr
                v[i] = 0.999 * v[i] + 0.001 * gr * gr
                params[i] -= lr * (m[i] / (1 - 0.9**step)) / (np.sqrt(v[i] / (1 - 0.999**step)) + 1e-8)

    def predict(x: np.ndarray) -> np.ndarray:
        h = np.maximum(x.reshape(len(x), -1) / 255.0 @ params[0] + params[1], 0)
        return (h @ params[2] + params[3]).argmax(1)

    return predict


def train_torch(cond: Condition, seed: int, epochs: int) -> Callable[[np.ndarray], np.ndarray]:
    """A small CNN (3 conv layers, 11k weights), Adam, cross-entropy on hard or soft targets."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.2), nn.Linear(32 * 16, CLASSES),
    )  # fmt: skip
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)

    def tensor(x: np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float().div_(255.0)

    for e in range(epochs):
        net.train()
        for x, y in cond.batches(seed, e):
            loss = nn.functional.cross_entropy(net(tensor(x)), torch.from_numpy(y))
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    net.eval()

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(tensor(x)).argmax(1).numpy()

    return predict


# --- the study -----------------------------------------------------------------------------


def classification(work: Path, quick: bool, epochs: int, seeds: int) -> Dict[str, Any]:
    from edgeaug.augment import Augmentation

    work.mkdir(parents=True, exist_ok=True)
    train_rows, val_rows = digits_split(600 if quick else None)
    data = work / "digits"
    if not data.exists():
        write_images(data, train_rows)
    target = write_target(work, SIZE, "GRAY")
    ks, hk = ([1, 4], 4) if quick else ([1, 2, 4, 8, 16], 8)
    conds = conditions(work, data, train_rows, target, ks, hk)
    xv, yv = shifted_val(val_rows, Augmentation(recipe(0), str(target), seed=0))
    fit = train_numpy if quick else train_torch
    out = []
    for c in conds:
        t0 = time.monotonic()
        accs = [float((fit(c, s, epochs)(xv) == yv).mean()) for s in range(seeds)]
        mb = c.pack.stat().st_size / 1e6 if c.pack else folder_mb(data)
        row = {"condition": c.name, "accs": accs, "mean": float(np.mean(accs)), "sd": float(np.std(accs, ddof=1))}
        row.update(storage_mb=mb, storage="sources" if c.pack is None else "pack", epoch_s=c.epoch_seconds())
        out.append(row)
        print(f"  {c.name}: {row['mean']:.4f} +- {row['sd']:.4f} ({time.monotonic() - t0:.0f}s)", file=sys.stderr)
    return {"task": "classification", "model": "numpy MLP" if quick else "CNN (PyTorch)", "epochs": epochs,
            "seeds": seeds, "train": len(train_rows), "val": len(val_rows), "rows": out}  # fmt: skip


def cut_stats(
    work: Path, size: int = 64, n: int = 480, variants: int = 7, batch: int = 32, windows: str = "centre"
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
    for name, mosaic in (("affine only (K=8, no mosaic)", False), ("builder mosaic (K=8 with mosaic)", True)):
        aug = Augmentation({**sd.recipe(8, mosaic), "min_visibility": 0.0}, str(target), seed=0)
        vis, recs = [], []
        for v, (rel, img, lab) in ((v, r) for v in range(1, variants + 1) for r in ids):
            _, labs, params = aug.record(img, lab, source=rel, variant=v, partners=pool if mosaic else None)
            s = fit * np.prod([p["scale"] for p in params if p["on"] and p["op"] in ("mosaic", "affine")])
            tiles = [rel] + next((p["partner_rels"] for p in params if p["op"] == "mosaic"), [])
            bx = labs.boxes.reshape(-1, 5)
            share = _areas(bx) / (area[bx[:, 0].astype(int)] * s * s)
            got: Dict[int, List[float]] = {}  # a source drawn twice shows its objects twice
            for b, sh in zip(bx, share):
                got.setdefault(int(b[0]), []).append(sh)
            vis += [min(1.0, got[i].pop() if got.get(i) else 0.0) for t in tiles for i in own[t]]
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


def table(result: Dict[str, Any], metric: str = "val accuracy (shifted)") -> str:
    lines = [
        f"{result['task']}: {result['model']}, {result['epochs']} epochs, {result['seeds']} seeds, "
        f"{result['train']} train / {result['val']} val sources",
        "",
        f"| condition | {metric}, mean ± sd | storage | data-path epoch time |",
        "|---|---|---|---|",
    ]
    for r in result["rows"]:
        score = f"skipped: {r['skipped']}" if r.get("skipped") else f"{r['mean'] * 100:.1f} ± {r['sd'] * 100:.1f}"
        store = f"{r['storage_mb']:.2f} MB {r['storage']}" if "storage_mb" in r else ""
        epoch = f"{r['epoch_s'] * 1000:.0f} ms" if "epoch_s" in r else ""
        lines.append(f"| {r['condition']} | {score} | {store} | {epoch} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CI smoke run without PyTorch: numpy MLP, 600 digits")
    ap.add_argument("--epochs", type=int, help="training epochs (default 20; --quick 8)")
    ap.add_argument("--seeds", type=int, help="training seeds per condition (default 3; --quick 2)")
    ap.add_argument("--work", type=Path, help="keep the data and packs here (default: a temporary folder)")
    ap.add_argument("--only", choices=["classification", "detection"], help="run one task only")
    ap.add_argument("--threads", type=int, default=1, help="PyTorch threads (default 1: the machine is shared)")
    ap.add_argument("--det-size", type=int, default=64, help="detection frame px (default 64); scenes and digits scale")
    ap.add_argument("--det-epochs", type=int, default=30, help="detection training epochs (default 30)")
    ap.add_argument("--cuts", action="store_true", help="measure how the mosaics cut objects (--det-size); no training")
    ap.add_argument(
        "--mosaic-windows",
        choices=["centre", "boxes"],
        default="centre",
        help="the device batch mosaic's windows: central (default) or placed to cut the fewest boxes",
    )
    ap.add_argument("--rows", nargs="+", metavar="TEXT", help="detection: train only the rows whose name holds TEXT")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    epochs = args.epochs or (8 if args.quick else 20)
    seeds = args.seeds or (2 if args.quick else 3)
    t0, c0 = time.monotonic(), time.process_time()
    if args.cuts:
        with tempfile.TemporaryDirectory() as tmp:
            stats = cut_stats(args.work or Path(tmp), args.det_size, windows=args.mosaic_windows)
            print(cut_table(stats, args.det_size))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = []
        if not args.quick:
            import torch

            torch.set_num_threads(args.threads)
        if args.only != "detection":
            results.append(classification(work / "cls", args.quick, epochs, seeds))
        if args.only != "classification":
            import study_detect

            results.append(
                study_detect.detection(
                    work / "det", args.quick, seeds, args.det_epochs, args.det_size, args.mosaic_windows, args.rows
                )
            )
    for r in results:
        print(table(r, "mAP@0.5 (held-out backgrounds)" if r["task"] == "detection" else "val accuracy (shifted)"))
        print()
    print(f"this run: {time.monotonic() - t0:.0f}s wall, {time.process_time() - c0:.0f}s CPU in this process")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
