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

from study_common import build_pack, digits_split, folder_mb, write_target  # noqa: E402
from study_cuts import cut_stats, cut_table  # noqa: E402

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

SIZE, BATCH, SHIFT, CLASSES, CAMERA_SEED = 32, 64, 2, 10, 20261207
MIX = {"mixup": 0.15, "cutmix": 0.15}


def recipe(k: int) -> dict:
    """The study's recipe with ``k`` variants (``k == 0``: the originals only)."""
    return {**RECIPE, "variants": k, "include_original": k == 0}


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
        default="boxes",
        help="the device batch mosaic's windows: placed to cut the fewest boxes (default, as Pack.batches with "
        "labels) or central (the first runs)",
    )
    ap.add_argument(
        "--mosaic-tiles",
        choices=["corner", "boxes"],
        default="corner",
        help="the builder mosaic's tiles: Ultralytics' corners (default) or slid to cut the fewest boxes",
    )
    ap.add_argument("--rows", nargs="+", metavar="TEXT", help="detection: train only the rows whose name holds TEXT")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    epochs = args.epochs or (8 if args.quick else 20)
    seeds = args.seeds or (2 if args.quick else 3)
    t0, c0 = time.monotonic(), time.process_time()
    if args.cuts:
        with tempfile.TemporaryDirectory() as tmp:
            work = args.work or Path(tmp)
            stats = cut_stats(work, args.det_size, windows=args.mosaic_windows, tiles=args.mosaic_tiles)
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
                    work / "det",
                    args.quick,
                    seeds,
                    args.det_epochs,
                    args.det_size,
                    args.mosaic_windows,
                    args.rows,
                    args.mosaic_tiles,
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
