#!/usr/bin/env python3
"""edgeaug's ``mosaic`` against Albumentations' ``Mosaic``: same images, same output size, same run.

Both sides get the same decoded source images (solid shapes on noise, with
boxes) and make 2x2 mosaics of ``--out`` pixels, boxes following, one output
per record with three partners from the same pool.  CPU time per output
(``time.process_time``, OpenCV single-threaded), best of ``--repeat`` rounds,
the two sides' rounds interleaved.

What each does (not the same geometry, the same job):

* edgeaug ``mosaic`` (Ultralytics' behaviour): a centre drawn in [0.5, 1.5] x
  (W, H) of a 2W x 2H canvas, then one affine (scale [0.5, 1.5], translate
  +-0.1) back to W x H; each tile is warped once from its source, only into its
  part of the output.
* Albumentations ``Mosaic(grid_yx=(2, 2), target_size=out, cell_shape=out)``:
  each cell image is resized to the cell ("cover"), the grid is assembled and a
  window of ``target_size`` cropped around a centre drawn in ``center_range``;
  partners come through ``mosaic_metadata``.

    python scripts/bench_mosaic.py [--images 16] [--size 640x480] [--out 640x640] [--outputs 64] [--repeat 3]
    python scripts/bench_augment.py --mosaic      # the same, from the main benchmark
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import List, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def make_sources(n: int, w: int, h: int, seed: int = 0) -> List[Tuple[np.ndarray, np.ndarray]]:
    """``n`` images (H, W, 3) uint8 with 3-6 solid rectangles each, and their boxes ``(k, 5)`` [class, x0..y1]."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        boxes = []
        for _ in range(int(rng.integers(3, 7))):
            bw, bh = int(rng.uniform(0.1, 0.4) * w), int(rng.uniform(0.1, 0.4) * h)
            x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            cls = int(rng.integers(0, 10))
            img[y0 : y0 + bh, x0 : x0 + bw] = rng.integers(0, 256, 3)
            boxes.append([cls, x0, y0, x0 + bw, y0 + bh])
        out.append((img, np.array(boxes, np.float32)))
    return out


def partners_of(i: int, n: int) -> List[int]:
    return [(i + k) % n for k in (1, 2, 3)]


def run_edgeaug(sources, outputs: int, out: Tuple[int, int], seed: int) -> Tuple[float, int]:
    """CPU seconds per output and the boxes kept in all, edgeaug's mosaic."""
    from edgeaug.ops.base import OPS
    from edgeaug.ops.instances_geom import InstanceLabels
    from edgeaug.ops.multi import Mosaic  # noqa: F401  (registers mosaic)

    op = OPS["mosaic"](1.0)
    labels = [InstanceLabels(b.copy(), label=-1) for _, b in sources]
    rng = np.random.default_rng(seed)
    kept, t0 = 0, time.process_time()
    for i in range(outputs):
        j = i % len(sources)
        idx = [j] + partners_of(j, len(sources))
        params = op.sample(rng, sources[j][0].shape[1::-1], len(sources) - 1)
        img, lab = op.apply(
            [sources[k][0] for k in idx], [labels[k] for k in idx], params, out, fill=114, min_visibility=0.1
        )
        kept += len(lab.boxes)
    return (time.process_time() - t0) / outputs, kept


def run_albumentations(sources, outputs: int, out: Tuple[int, int], seed: int) -> Tuple[float, int]:
    """CPU seconds per output and the boxes kept in all, ``albumentations.Mosaic``."""
    import albumentations as A

    w, h = out
    tf = A.Compose(
        [A.Mosaic(grid_yx=(2, 2), target_size=(h, w), cell_shape=(h, w), fill=114, p=1.0)],
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["classes"], min_visibility=0.1),
        seed=seed,
    )
    items = [{"image": img, "bboxes": b[:, 1:], "classes": b[:, 0].astype(int).tolist()} for img, b in sources]
    kept, t0 = 0, time.process_time()
    for i in range(outputs):
        j = i % len(sources)
        res = tf(**items[j], mosaic_metadata=[items[k] for k in partners_of(j, len(sources))])
        assert res["image"].shape == (h, w, 3)
        kept += len(res["bboxes"])
    return (time.process_time() - t0) / outputs, kept


def run(images: int = 16, size=(640, 480), out=(640, 640), outputs: int = 64, repeat: int = 3) -> int:
    import albumentations
    import cv2

    cv2.setNumThreads(1)
    sources = make_sources(images, *size)
    best = {"edgeaug": float("inf"), "albumentations": float("inf")}
    boxes = {}
    for r in range(repeat):
        for name, fn in (("edgeaug", run_edgeaug), ("albumentations", run_albumentations)):
            t, kept = fn(sources, outputs, out, seed=r)
            best[name] = min(best[name], t)
            boxes[name] = kept / outputs
    print(
        f"2x2 mosaic, {images} source images {size[0]}x{size[1]} uint8 with 3-6 boxes, output {out[0]}x{out[1]}, "
        f"{outputs} outputs per round, best of {repeat}, one thread; albumentations {albumentations.__version__}, "
        f"OpenCV {cv2.__version__}, numpy {np.__version__}\n"
    )
    print("| mosaic | CPU ms per output | boxes per output | outputs/s |")
    print("|---|---|---|---|")
    for name, t in best.items():
        print(f"| {name} | {t * 1e3:.2f} | {boxes[name]:.1f} | {1 / t:.0f} |")
    print(f"\nedgeaug / Albumentations time: {best['edgeaug'] / best['albumentations']:.2f}x")
    return 0


def _size(text: str) -> Tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--size", type=_size, default=(640, 480), help="source size WxH")
    ap.add_argument("--out", type=_size, default=(640, 640), help="output size WxH")
    ap.add_argument("--outputs", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    return run(a.images, a.size, a.out, a.outputs, a.repeat)


if __name__ == "__main__":
    sys.exit(main())
