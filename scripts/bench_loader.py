#!/usr/bin/env python3
"""Loader throughput: shuffled batches of 224x224x3 uint8, batch 32.

Compares, on the same records, in one run:
  loader   edgeaug.loader.Pack.batches (shuffled, one variant per source per epoch)
  memmap   np.memmap of the same tensors, fancy-index batch copy (the physical limit)
  cursor   raw py-lmdb: random txn.get + copy into a batch (no edgeaug layer)
  online   decode the source JPEG/PNG + augment + quantize per sample (what the
           device would do without a pack)

Each method runs in its own fresh process, as on a device, after one warm-up
pass that touches every record (a fresh mapping's first touch of each page is
a page fault, paid once, not every epoch).  Ratios are against baselines
measured in the same run, because this machine is noisy.
Goals: loader >= 0.8x memmap, >= 50x online.

    python scripts/bench_loader.py [--records 2000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

METHODS = ("loader", "memmap", "cursor", "online")


def rate(fn, seconds: float, warm) -> float:
    """Records per second of ``fn() -> records done``, best of 3 slices, after ``warm()``."""
    warm()
    best = 0.0
    for _ in range(3):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 3:
            n += fn()
        best = max(best, n / (time.perf_counter() - t0))
    return best


def measure(method: str, tmp: Path, batch: int, seconds: float) -> float:
    """Run one method (in this, a fresh process) and return records/s."""
    from edgeaug.device.format import HEADER_SIZE, record_key
    from edgeaug.device.loader import Pack

    pack = Pack(str(tmp / "bench.lmdb"), backend="lmdb")
    n, B, epoch = len(pack), batch, [0]

    def orders():
        epoch[0] += 1
        return pack.epoch_order(epoch[0])

    if method == "loader":

        def run():
            epoch[0] += 1
            return sum(len(x) for x, _ in pack.batches(B, epoch=epoch[0]))

        return rate(run, seconds, lambda: sum(len(x) for x, _ in pack.batches(B, all_variants=True)))
    if method == "memmap":
        mm = np.memmap(tmp / "tensors.u8", np.uint8, "r", shape=(n,) + pack.shape)

        def run():
            order = orders()
            return sum(len(np.take(mm, np.sort(order[b : b + B]), axis=0)) for b in range(0, len(order), B))

        return rate(run, seconds, lambda: int(np.asarray(mm).sum(dtype=np.uint64) >= 0))
    if method == "cursor":
        import lmdb

        pack.close()
        env = lmdb.open(str(tmp / "bench.lmdb"), subdir=False, readonly=True, lock=False)
        txn = env.begin(buffers=True)

        def run():
            order = orders() + pack._start
            for b in range(0, len(order), B):
                x = np.empty((len(order[b : b + B]), pack.nbytes), np.uint8)
                for j, r in enumerate(order[b : b + B]):
                    x[j] = np.frombuffer(txn.get(record_key(int(r))), np.uint8, pack.nbytes, HEADER_SIZE)
            return len(order)

        return rate(run, seconds, lambda: sum(len(txn.get(record_key(r))) for r in range(pack.records)))
    return measure_online(tmp, B, seconds)


def measure_online(tmp: Path, B: int, seconds: float) -> float:
    import cv2

    from edgeaug.build.augment import Augmenter
    from edgeaug.build.render import decode, render_variant, source_labels, working_image
    from edgeaug.config.recipe import load_recipe
    from edgeaug.config.targets import load_target
    from edgeaug.sources.scan import scan

    cv2.setNumThreads(1)
    aug = Augmenter(load_recipe(), load_target("rpi4"))
    blobs = [(s, s.path.read_bytes()) for s in scan(tmp / "data").sources[:B]]

    def run() -> int:
        for k, (s, blob) in enumerate(blobs):
            img = decode(blob)
            render_variant(
                aug, working_image(img, aug), source_labels(s), (img.shape[1], img.shape[0]), 1, s, 1 + k % 4
            )
        return len(blobs)

    return rate(run, seconds, run)


def prepare(tmp: Path, records: int) -> int:
    """A procedural dataset, its rpi4 pack (built in a child process) and a raw tensor file."""
    from edgeaug.demo import make_dataset
    from edgeaug.device.loader import Pack

    data = make_dataset(tmp / "data", per_class=max(4, records // (4 * 5)), seed=1)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeaug.cli",
            "build",
            str(data),
            "-o",
            str(tmp / "bench.lmdb"),
            "-t",
            "rpi4",
            "--variants",
            "4",
            "--seed",
            "1",
            "-q",
        ],
        check=True,
    )  # 5 per source
    with Pack(str(tmp / "bench.lmdb")) as pack:
        mm = np.memmap(tmp / "tensors.u8", np.uint8, "w+", shape=(len(pack),) + pack.shape)
        for i in range(len(pack)):
            mm[i] = pack[i][0]
        mm.flush()
        return len(pack)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2000, help="approximate pack size")
    ap.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--one", nargs=2, metavar=("METHOD", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:  # child: measure one method, print JSON
        print(json.dumps(measure(args.one[0], Path(args.one[1]), args.batch, args.seconds)))
        return
    tmp = Path(tempfile.mkdtemp(prefix="edgeaug-bench-"))
    try:
        n = prepare(tmp, args.records)
        print(f"pack: {n} records, {(tmp / 'bench.lmdb').stat().st_size / 1e6:.0f} MB, batch {args.batch}")
        rates = {}
        for m in METHODS:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    m,
                    str(tmp),
                    "--batch",
                    str(args.batch),
                    "--seconds",
                    str(args.seconds),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            rates[m] = json.loads(out.stdout)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n| method | records/s | loader / method |\n|---|---|---|")
    for name, r in rates.items():
        print(f"| {name} | {r:,.0f} | {rates['loader'] / r:.2f}x |")
    print(
        f"\ngoals: loader/memmap >= 0.8 -> {rates['loader'] / rates['memmap']:.2f}; "
        f"loader/online >= 50 -> {rates['loader'] / rates['online']:.0f}"
    )


if __name__ == "__main__":
    main()
