#!/usr/bin/env python3
"""CPU cost of the device's online mosaic, mixup and cutmix against a plain batch copy.

The baseline is the honest one: ``np.copyto`` of the batch into one reused
buffer (what a mix step replaces: its output is written into a reused buffer
too).  Each configuration runs its whole step per batch: the plan's draws
(``plan_mix(mix_rng(seed, epoch, batch))``) and ``mix_batch(x, out=buf)``;
the labels' steps (``soft_targets`` for 1000 classes, ``mix_labels`` for 6
boxes and 6 keypoints per record) and the box-aware windows' search
(``fit_windows``, mosaic=1, 6 and 16 boxes per record) are timed apart.  Two cases, the device
targets' record sizes:

  rpi4        32 x 224x224x3 uint8 NHWC (~150 KB records)
  rpi-zero2w  64 x 96x96x1 int8 NHWC (~9 KB records)

CPU time (``time.process_time``) per batch, the median of ``--rounds`` rounds;
in each round every configuration runs ``--batches`` batches (a new plan each)
right after the baseline, so the ratios compare neighbours on this noisy
machine.  Usage: ``python scripts/bench_online_mix.py [--rounds 7] [--batches 20]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from edgeaug.device.online_mix import mix_batch, mix_rng, plan_mix, soft_targets
from edgeaug.device.online_mix_fit import fit_windows
from edgeaug.device.online_mix_labels import mix_labels

CASES = {
    "rpi4 32x224x224x3 uint8": ((32, 224, 224, 3), "uint8"),
    "rpi-zero2w 64x96x96x1 int8": ((64, 96, 96, 1), "int8"),
}
CONFIGS = {
    "p=0 (copy into out)": {},
    "mosaic=1": {"mosaic": 1.0},
    "mixup=1": {"mixup": 1.0},
    "cutmix=1": {"cutmix": 1.0},
    "mosaic=1 mixup=0.1": {"mosaic": 1.0, "mixup": 0.1},
    "all three 0.5": {"mosaic": 0.5, "mixup": 0.5, "cutmix": 0.5},
}
HALF = CONFIGS["all three 0.5"]


def _per_batch(step, batches: int) -> float:
    """CPU seconds per batch of ``step(b)`` over ``batches`` batches."""
    t = time.process_time()
    for b in range(batches):
        step(b)
    return (time.process_time() - t) / batches


def _records(shape, n=6, seed=0):
    rng = np.random.default_rng(seed)
    h, w = shape[1], shape[2]
    out = []
    for _ in range(shape[0]):
        xy = rng.random((n, 2)) * [w * 0.7, h * 0.7]
        wh = rng.random((n, 2)) * [w * 0.3, h * 0.3] + 1
        boxes = np.column_stack([rng.integers(0, 80, n), xy, xy + wh]).astype(np.float32)
        kps = np.column_stack([xy + wh / 2, np.full(n, 2)]).astype(np.float32)
        out.append({"boxes": boxes, "keypoints": kps})
    return out


def bench_case(name: str, shape, dtype: str, rounds: int, batches: int) -> None:
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max + 1, shape).astype(dtype)
    out = np.empty_like(x)
    h, w = shape[1], shape[2]
    fits = ["fit_windows (6 boxes)", "fit_windows (16 boxes)"]
    times = {k: [] for k in ["copy", *CONFIGS, "soft_targets (all 0.5)", "mix_labels (all 0.5)", *fits]}
    y = rng.integers(0, 1000, shape[0])
    recs = _records(shape)
    boxes = {fits[0]: [r["boxes"] for r in recs], fits[1]: [r["boxes"] for r in _records(shape, 16)]}

    def plan(b, **p):
        return plan_mix(mix_rng(1, 0, b), shape[0], h, w, **p)

    for _ in range(rounds):
        times["copy"].append(_per_batch(lambda b: np.copyto(out, x), batches))
        for cname, p in CONFIGS.items():
            times[cname].append(_per_batch(lambda b, p=p: mix_batch(x, "NHWC", plan(b, **p), out=out), batches))
        times["soft_targets (all 0.5)"].append(_per_batch(lambda b: soft_targets(y, plan(b, **HALF), 1000), batches))
        times["mix_labels (all 0.5)"].append(_per_batch(lambda b: mix_labels(recs, plan(b, **HALF)), batches))
        for k in fits:  # the plan alone is timed in "p=0"; this adds the search to it
            times[k].append(_per_batch(lambda b, k=k: fit_windows(plan(b, mosaic=1.0), boxes[k]), batches))
    base = statistics.median(times["copy"])
    print(f"\n{name}: {x.nbytes / 1e6:.1f} MB per batch")
    for k, v in times.items():
        m = statistics.median(v)
        print(f"  {k:26s} {m * 1e3:8.3f} ms/batch  {m / base:6.2f}x copy")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--batches", type=int, default=20)
    args = ap.parse_args()
    print(f"numpy {np.__version__}; CPU time per batch (median of {args.rounds} rounds of {args.batches} batches)")
    for name, (shape, dtype) in CASES.items():
        bench_case(name, shape, dtype, args.rounds, args.batches)


if __name__ == "__main__":
    main()
