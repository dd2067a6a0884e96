#!/usr/bin/env python3
"""Loader throughput: shuffled batches of 224x224x3 uint8, batch 32.

Compares, in one run on the same records:
  loader   edgeaug.loader.Pack.batches (shuffled, one variant per source per epoch)
  memmap   np.memmap of the same tensors, fancy-index batch copy (the physical limit)
  cursor   raw py-lmdb: random txn.get + copy into a batch (no edgeaug layer)
  online   decode the source JPEG/PNG + augment + quantize per sample (what the
           device would do without a pack)

Ratios are reported against baselines measured in the same run, because this
machine is noisy.  Goals: loader >= 0.8x memmap, >= 50x online.

    python scripts/bench_loader.py [--records 2000] [--seconds 3]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def rate(fn, seconds: float) -> float:
    """Records per second of ``fn() -> records done``, best of 3 slices."""
    fn()  # warm the page cache and code paths
    best = 0.0
    for _ in range(3):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 3:
            n += fn()
        best = max(best, n / (time.perf_counter() - t0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2000, help="approximate pack size")
    ap.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()

    import cv2
    import lmdb
    from edgeaug.augment import Augmenter
    from edgeaug.build import build
    from edgeaug.demo import make_dataset
    from edgeaug.format import HEADER_SIZE, record_key
    from edgeaug.loader import Pack
    from edgeaug.recipe import load_recipe
    from edgeaug.render import decode, render_variant, source_labels, working_image
    from edgeaug.sources import scan
    from edgeaug.targets import load_target

    cv2.setNumThreads(1)
    tmp = Path(tempfile.mkdtemp(prefix="edgeaug-bench-"))
    per_class = max(4, args.records // (4 * 5))
    data = make_dataset(tmp / "data", per_class=per_class, seed=1)
    pack_path = tmp / "bench.lmdb"
    res = build(data, pack_path, "rpi4", variants=4, seed=1)  # original + 4 = 5 per source
    pack = Pack(str(pack_path), backend="lmdb")
    n, B = len(pack), args.batch
    print(f"pack: {res.records} records, {pack_path.stat().st_size / 1e6:.0f} MB, built in {res.seconds:.1f}s")

    # (a) memmap of exactly the loader's epoch records
    raw = tmp / "tensors.u8"
    mm = np.memmap(raw, np.uint8, "w+", shape=(n,) + pack.shape)
    for i in range(n):
        mm[i] = pack[i][0]
    mm.flush()
    mm = np.memmap(raw, np.uint8, "r", shape=(n,) + pack.shape)

    epoch = [0]

    def loader() -> int:
        done = 0
        for x, _ in pack.batches(B, epoch=epoch[0]):
            done += len(x)
        epoch[0] += 1
        return done

    def memmap() -> int:
        order = pack.epoch_order(epoch[0])
        epoch[0] += 1
        done = 0
        for b in range(0, len(order), B):
            done += len(np.take(mm, np.sort(order[b:b + B]), axis=0))
        return done

    import shutil
    raw_copy = tmp / "raw.lmdb"  # py-lmdb allows one environment per file per process
    shutil.copy(pack_path, raw_copy)
    env = lmdb.open(str(raw_copy), subdir=False, readonly=True, lock=False, readahead=False)

    def cursor() -> int:
        order = pack.epoch_order(epoch[0]) + pack._start
        epoch[0] += 1
        done = 0
        with env.begin(buffers=True) as txn:
            for b in range(0, len(order), B):
                idx = order[b:b + B]
                x = np.empty((len(idx), pack.nbytes), np.uint8)
                for j, r in enumerate(idx):
                    x[j] = np.frombuffer(txn.get(record_key(int(r))), np.uint8, pack.nbytes, HEADER_SIZE)
                done += len(idx)
        return done

    sset = scan(data)
    aug = Augmenter(load_recipe(), load_target("rpi4"))
    blobs = [(s, s.path.read_bytes()) for s in sset.sources[:B * 4]]

    def online() -> int:
        for k, (s, blob) in enumerate(blobs[:B]):
            img = decode(blob)
            work = working_image(img, aug)
            render_variant(aug, work, source_labels(s), (img.shape[1], img.shape[0]), 1, s, 1 + k % 4)
        return B

    rates = {name: rate(fn, args.seconds) for name, fn in
             [("loader", loader), ("memmap", memmap), ("cursor", cursor), ("online", online)]}
    print("\n| method | records/s | loader / method |\n|---|---|---|")
    for name, r in rates.items():
        print(f"| {name} | {r:,.0f} | {rates['loader'] / r:.2f}x |")
    print(f"\ngoals: loader/memmap >= 0.8 -> {rates['loader'] / rates['memmap']:.2f}; "
          f"loader/online >= 50 -> {rates['loader'] / rates['online']:.0f}")
    pack.close()
    env.close()


if __name__ == "__main__":
    main()
