#!/usr/bin/env python3
"""How many offline variants does augmentation need? A study on real data, plus the online cost.

Data: scikit-learn's digits (1797 real 8x8 scans), written as PNGs in class
folders and built by the real builder into 32x32 gray uint8 packs (the
builder upscales).  The val split (20%, the same sources in every pack) holds
the originals only.

For every configuration and seed, a small MLP (scikit-learn ``partial_fit``,
64 hidden units) trains epoch by epoch on ``Pack.batches(epoch=e)``
dequantized to [0, 1]; all configurations share the epochs, the seeds, the
model initialization and the loader seed (``Pack(seed=...)``):

* ``none``: the originals only (``variants = 0``);
* ``offline K``: K augmented variants per source, no original; the loader
  serves one per source per epoch, each once per K epochs;
* ``online``: offline with K = the number of epochs (a fresh variant every
  epoch, what augmenting on the fly would give);
* ``hybrid K + flip/shift`` and ``+ shift``: K variants plus the device's
  online mirror/shift (``edgeaug.device.online``) applied to each batch.

Printed per configuration: val accuracy (mean +- sd over seeds), pack size,
bytes read per sample, and the loader's CPU time per sample with and without
the online ops.  ``--bench`` also measures the online ops on a 224x224x3
uint8 pack (Raspberry Pi profile), where the records are large.

    python scripts/study_variety.py [--quick] [--epochs 30] [--seeds 3] [--work DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET = """[device]
name = "study"
arch = "any"
word_size = 64

[input]
name = "input"
height = {size}
width = {size}
channels = {channels}
layout = "NHWC"
color = "{color}"
dtype = "uint8"
scale = 0.00392156862745098
zero_point = 0
"""

# Geometry and tone that suit handwritten digits (no mirror: it changes what a digit is).
RECIPE = """variants = {k}
include_original = {orig}
resize = "squash"
border = "constant"
fill = 0

[[ops]]
op = "affine"
p = 0.9
scale = [0.85, 1.15]
translate = [-0.1, 0.1]
shear = [-10, 10]

[[ops]]
op = "rotate"
p = 0.6
degrees = [-15, 15]

[[ops]]
op = "brightness"
p = 0.3
delta = [-0.15, 0.15]

[[ops]]
op = "contrast"
p = 0.3
factor = [0.8, 1.2]
"""

SIZE, VAL, BATCH, SHIFT = 32, 0.2, 64, 3


def write_digits(root: Path, limit: Optional[int] = None) -> int:
    """One folder per digit; pixel = round(v * 255 / 16) of the 0..16 scan (as digits_check.py)."""
    import cv2
    from sklearn.datasets import load_digits

    d = load_digits()
    for i, (img, label) in enumerate(zip(d.images[:limit], d.target[:limit])):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / str(label) / f"{i:04d}.png"), np.rint(img * 255 / 16).astype(np.uint8))
    return len(d.target)


def build_pack(work: Path, data: Path, k: int, seed: int, size: int = SIZE, color: str = "GRAY") -> Path:
    """A pack with ``k`` augmented variants per train source (``k == 0``: originals only)."""
    out = work / f"digits_{color.lower()}{size}_k{k}.lmdb"
    if out.exists():  # --work keeps packs between runs
        return out
    from edgeaug.builder.pipeline import build

    target = work / f"target_{color.lower()}{size}.toml"
    target.write_text(TARGET.format(size=size, channels=1 if color == "GRAY" else 3, color=color))
    recipe = work / f"recipe_k{k}.toml"
    recipe.write_text(RECIPE.format(k=k, orig="true" if k == 0 else "false"))
    t0 = time.monotonic()
    r = build(data, out, target, recipe, seed=seed, workers=2, val=VAL)
    print(f"  built {out.name}: {r.records} records in {time.monotonic() - t0:.1f}s", file=sys.stderr, flush=True)
    return out


# --- training ------------------------------------------------------------------------


def _batches(pack, epoch: int, online: Optional[Tuple[float, int]], fill) -> Any:
    """The pack's batches for ``epoch``, with the loader's online flip/shift when asked."""
    hflip, shift = online if online is not None else (0.0, 0)
    return pack.batches(BATCH, epoch=epoch, hflip=hflip, shift=shift)


def train(pack_path: Path, seed: int, epochs: int, online: Optional[Tuple[float, int]]) -> float:
    """Val accuracy of an MLP trained ``epochs`` epochs from the pack's train split."""
    from sklearn.neural_network import MLPClassifier

    from edgeaug.device.loader import Pack
    from edgeaug.device.online import fill_value

    clf = MLPClassifier(hidden_layer_sizes=(64,), learning_rate_init=2e-3, random_state=seed)
    classes = np.arange(10)
    with Pack(str(pack_path), "train", seed=seed) as tr, Pack(str(pack_path), "val") as va:
        fill = fill_value(tr.manifest)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for e in range(epochs):
                for x, y in _batches(tr, e, online, fill):
                    clf.partial_fit(x.reshape(len(x), -1) / np.float32(255), y, classes=classes)
        xv, yv = zip(*(va.batches(512, shuffle=False)))
        xv, yv = np.concatenate(xv), np.concatenate(yv)
    return float((clf.predict(xv.reshape(len(xv), -1) / np.float32(255)) == yv).mean())


def loader_cost(pack_path: Path, epochs: int, online: Optional[Tuple[float, int]]) -> float:
    """CPU microseconds per sample of serving the train split for ``epochs`` epochs (no training)."""
    from edgeaug.device.loader import Pack
    from edgeaug.device.online import fill_value

    with Pack(str(pack_path), "train") as p:
        fill = fill_value(p.manifest)
        n, t0 = 0, time.process_time()
        for e in range(epochs):
            for x, _ in _batches(p, e, online, fill):
                n += len(x)
        return (time.process_time() - t0) / max(n, 1) * 1e6


# --- the online ops' cost on large records ------------------------------------------------


def bench_online(pack_path: Path, hflip: float, shift: int, rounds: int = 5, batch: int = 32) -> Dict[str, float]:
    """CPU us/sample: plain batches vs batches(hflip, shift) (done during the read), and a view loop copying vs
    transforming with fill_online.

    The four loops alternate over ``rounds`` so load from other processes hits
    them alike; each figure is the median over rounds.
    """
    from edgeaug.device.loader import Pack
    from edgeaug.device.online import border_pattern, fill_online, fill_value, online_params

    with Pack(str(pack_path), "train") as p:
        fill, layout = fill_value(p.manifest), p.manifest["target"]["layout"]
        pattern = border_pattern(p.shape, layout, fill, p.dtype)  # built once, as a loader would

        def plain(e):
            for _x, _ in p.batches(batch, epoch=e):
                pass

        def online(e):
            for _x, _ in p.batches(batch, epoch=e, hflip=hflip, shift=shift):
                pass

        def views(e, transform):
            order = p.epoch_order(e)
            out = np.empty((batch,) + p.shape, p.dtype)
            for b in range(0, len(order), batch):
                idx = order[b : b + batch]
                f, s = online_params(p.seed, e, idx, hflip, shift)
                for j, i in enumerate(idx.tolist()):
                    if transform:
                        fill_online(out[j], p[i][0], layout, f[j], s[j, 0], s[j, 1], pattern)
                    else:
                        out[j] = p[i][0]

        loops = {
            "batches": plain,
            "batches(hflip, shift)": online,
            "views copy": lambda e: views(e, False),
            "views fill_online": lambda e: views(e, True),
        }
        times: Dict[str, List[float]] = {k: [] for k in loops}
        for r in range(rounds):
            for name, fn in loops.items():
                t0 = time.process_time()
                fn(r)
                times[name].append((time.process_time() - t0) / len(p.epoch_order(r)) * 1e6)
    med = {k: float(np.median(v)) for k, v in times.items()}
    med["ratio online"] = med["batches"] / med["batches(hflip, shift)"]
    med["ratio fill_online"] = med["views copy"] / med["views fill_online"]
    return med


# --- the study -----------------------------------------------------------------------


def configurations(epochs: int, ks: List[int], hybrid_ks: List[int]) -> List[Tuple[str, int, Any]]:
    """(name, K, online (hflip, shift) or None), in table order."""
    rows = [("none (originals)", 0, None)] + [(f"offline K={k}", k, None) for k in ks]
    rows.append((f"online (K={epochs}, one fresh variant per epoch)", epochs, None))
    for k in hybrid_ks:
        rows.append((f"hybrid K={k} + flip 0.5 + shift {SHIFT}", k, (0.5, SHIFT)))
        rows.append((f"hybrid K={k} + shift {SHIFT}", k, (0.0, SHIFT)))
    return rows


def run(work: Path, epochs: int, seeds: int, ks: List[int], hybrid_ks: List[int], bench: bool) -> Dict[str, Any]:
    data = work / "digits"
    if not data.exists():
        write_digits(data)
    rows = configurations(epochs, ks, hybrid_ks)
    packs = {k: build_pack(work, data, k, seed=0) for k in sorted({k for _, k, _ in rows})}
    out = []
    for name, k, online in rows:
        t0 = time.process_time()
        accs = [train(packs[k], s, epochs, online) for s in range(seeds)]
        from edgeaug.device.loader import Pack

        with Pack(str(packs[k])) as p:
            read = p.nbytes
        row = {
            "config": name,
            "K": k,
            "online": online,
            "acc_mean": float(np.mean(accs)),
            "acc_sd": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
            "accs": accs,
            "pack_mb": packs[k].stat().st_size / 1e6,
            "bytes_per_sample": read,
            "loader_us": loader_cost(packs[k], min(epochs, 5), online),
        }
        out.append(row)
        print(
            f"  {name}: {row['acc_mean']:.4f} +- {row['acc_sd']:.4f} ({time.process_time() - t0:.0f}s CPU)",
            file=sys.stderr,
            flush=True,
        )
    result: Dict[str, Any] = {"epochs": epochs, "seeds": seeds, "rows": out}
    if bench:
        subset = work / "digits_subset"  # 320 sources: a 40 MB pack of 150 KB records
        if not subset.exists():
            write_digits(subset, 320)
        big = build_pack(work, subset, 0, seed=0, size=224, color="RGB")
        result["bench_rpi"] = {
            "flip 0.5 + shift 8": bench_online(big, 0.5, 8),
            "shift 8": bench_online(big, 0.0, 8),
        }
        result["bench_digits"] = {"flip 0.5 + shift 3": bench_online(packs[0], 0.5, SHIFT)}
    return result


def table(result: Dict[str, Any]) -> str:
    lines = [
        f"| configuration | val accuracy (mean ± sd, {result['seeds']} seeds) | pack size | "
        "bytes read / sample | loader CPU µs / sample |",
        "|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['config']} | {r['acc_mean'] * 100:.2f} ± {r['acc_sd'] * 100:.2f} % | {r['pack_mb']:.1f} MB | "
            f"{r['bytes_per_sample']} | {r['loader_us']:.1f} |"
        )
    for key in ("bench_rpi", "bench_digits"):
        for cfg, b in result.get(key, {}).items():
            lines.append("")
            lines.append(
                f"{key} ({cfg}): batches {b['batches']:.1f} µs/sample, batches(hflip, shift) "
                f"{b['batches(hflip, shift)']:.1f} ({b['ratio online']:.2f}x); views copy {b['views copy']:.1f}, "
                f"fill_online during the copy {b['views fill_online']:.1f} ({b['ratio fill_online']:.2f}x)"
            )
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 6 epochs, 2 seeds, K in 1, 4")
    ap.add_argument("--epochs", type=int, default=30, help="training epochs (also the online K); default 30")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per configuration; default 3")
    ap.add_argument("--work", type=Path, help="keep the digits and packs here (default: a temporary folder)")
    ap.add_argument("--no-bench", action="store_true", help="skip the 224x224x3 online-ops benchmark")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    epochs, seeds, ks, hk = args.epochs, args.seeds, [1, 2, 4, 8, 16], [4, 8]
    if args.quick:
        epochs, seeds, ks, hk = 6, 2, [1, 4], [4]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = run(work, epochs, seeds, ks, hk, not args.no_bench)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
