#!/usr/bin/env python3
"""Render the preview images of docs/multi-image.md: each multi-image op on synthetic scenes.

Every scene is solid shapes (a rectangle, an ellipse, a triangle) of distinct
colours on a flat background, with exact instance masks.  Each image shows the
sources the op combines (left, small) and its output (right) with the output's
instance outlines and boxes in class colours, and for mixup/cutmix the soft
label.  The ops are called directly (``edgeaug.ops.multi``), with fixed seeds,
so the images are the same on every run (up to OpenCV's resampling).

    python scripts/make_doc_images.py [--out docs/images]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgeaug.ops.base import OPS  # noqa: E402
from edgeaug.ops.instances_geom import InstanceLabels  # noqa: E402
from edgeaug.ops.multi_paste import CutMix  # noqa: E402,F401  (registers cutmix and copy_paste)
from edgeaug.preview import color_of  # noqa: E402

OUT = (256, 192)  # output size (w, h) of every op
THUMB = 92  # source thumbnails' height
BACKGROUNDS = [(70, 90, 110), (200, 200, 185), (95, 70, 120), (60, 120, 90)]

#: (op, options, seed, sources, caption)
RENDERS = [
    ("mosaic", {}, 3, 4, "mosaic: 2x2 grid around a drawn centre, one affine back"),
    ("mixup", {"alpha": [2.0, 2.0]}, 1, 2, "mixup: lam*A + (1-lam)*B, both label sets"),
    ("cutmix", {}, 4, 2, "cutmix: a patch of B, A's objects lose it"),
    ("copy_paste", {"fraction": [1.0, 1.0]}, 2, 2, "copy_paste: B's instances pasted onto A"),
    ("scale_jitter", {"scale": [0.5, 0.5]}, 5, 1, "scale_jitter: scale, then crop or pad"),
]


def scene(idx: int) -> Tuple[np.ndarray, InstanceLabels]:
    """Source ``idx``: three shapes (classes 0, 1, 2) placed by ``idx``, with their masks and boxes."""
    rng = np.random.default_rng(10 + idx)
    w, h = 320, 240
    img = np.empty((h, w, 3), np.uint8)
    img[:] = BACKGROUNDS[idx % len(BACKGROUNDS)]
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    x0, y0 = rng.uniform(0.05, 0.3) * w, rng.uniform(0.05, 0.3) * h
    cx, cy = rng.uniform(0.55, 0.8) * w, rng.uniform(0.3, 0.6) * h
    tx, ty = rng.uniform(0.2, 0.6) * w, rng.uniform(0.7, 0.8) * h
    shapes = [
        (xx >= x0) & (xx < x0 + 0.3 * w) & (yy >= y0) & (yy < y0 + 0.3 * h),
        ((xx - cx) / (0.16 * w)) ** 2 + ((yy - cy) / (0.2 * h)) ** 2 < 1,
        (yy < ty + 0.18 * h) & (yy - ty > 1.2 * np.abs(xx - tx) - 0.05 * h),
    ]
    boxes = []
    for k, m in enumerate(shapes):
        img[m] = _shade(k, idx)
        ys, xs = np.nonzero(m)
        boxes.append([k, xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    lab = InstanceLabels(np.array(boxes, np.float32), instances=np.array(shapes), label=idx)  # image class: A, B...
    return img, lab


def _shade(k: int, idx: int) -> Tuple[int, int, int]:
    """Object colours: the class colour, lighter or darker per scene so pasted objects stay apart."""
    base = np.array(color_of(k), np.float64)
    f = (1.0, 0.7, 1.25, 0.85)[idx % 4]
    return tuple(int(v) for v in np.clip(base * f, 0, 255))


def draw_labels(img: np.ndarray, lab: InstanceLabels) -> np.ndarray:
    """Instance outlines (2 px) and boxes (1 px) in class colours."""
    import cv2

    out = img.copy()
    for k, box in enumerate(lab.boxes.tolist()):
        col = color_of(int(box[0]))
        if lab.instances is not None:
            mask = lab.instances[k].astype(np.uint8)
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(out, contours, -1, (255, 255, 255), 3)
            cv2.drawContours(out, contours, -1, col, 1)
        x0, y0, x1, y1 = (round(v) for v in box[1:])
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), col, 1)
    return out


def panel(sources: List[np.ndarray], output: np.ndarray, caption: List[str]) -> np.ndarray:
    """Source thumbnails in a column pair on the left, the output on the right, caption lines below."""
    import cv2

    thumbs = [cv2.resize(s, (THUMB * s.shape[1] // s.shape[0], THUMB), interpolation=cv2.INTER_AREA) for s in sources]
    tw = thumbs[0].shape[1]
    cols = 1 if len(thumbs) <= 2 else 2
    rows = -(-len(thumbs) // cols)
    gap = 6
    left_w = cols * tw + (cols + 1) * gap
    lines = [c for c in caption if c]
    h = max(rows * (THUMB + gap) + gap, output.shape[0] + 2 * gap) + 16 * len(lines) + 2
    w = left_w + 24 + output.shape[1] + gap
    img = np.full((h, w, 3), 255, np.uint8)
    for i, t in enumerate(thumbs):
        y, x = gap + (i // cols) * (THUMB + gap), gap + (i % cols) * (tw + gap)
        img[y : y + THUMB, x : x + tw] = t
        cv2.putText(img, "ABCD"[i], (x + 3, y + 14), cv2.FONT_HERSHEY_PLAIN, 1.0, (255, 255, 255), 1)
    ay = gap + output.shape[0] // 2
    cv2.arrowedLine(img, (left_w + 2, ay), (left_w + 20, ay), (60, 60, 60), 2, tipLength=0.4)
    ox = left_w + 24
    img[gap : gap + output.shape[0], ox : ox + output.shape[1]] = output
    for k, line in enumerate(lines):
        y = h - 6 - 16 * (len(lines) - 1 - k)
        cv2.putText(img, line, (gap, y), cv2.FONT_HERSHEY_PLAIN, 0.9, (30, 30, 30), 1, cv2.LINE_AA)
    return img


def render(name: str, options: dict, seed: int, n: int) -> Tuple[np.ndarray, str]:
    """The op's panel and a note (the soft label, when there is one)."""
    op = OPS[name](1.0, **options)
    pairs = [scene(i) for i in range(n)]
    images, labels = [p[0] for p in pairs], [p[1] for p in pairs]
    params = op.sample(np.random.default_rng(seed), images[0].shape[1::-1], n_candidates=max(0, n - 1))
    params["partners"] = list(range(1, n))[: op.partners] if op.partners else []
    out, lab = op.apply(images, labels, params, OUT, fill=114, min_visibility=0.1)
    note = ""
    if lab.mix:
        note = "soft label (classification): " + " + ".join(f"{'ABCD'[c]} {w:.2f}" for c, w in lab.mix)
    return panel(images, draw_labels(out, lab), [RENDERS_CAPTION[name], note]), note


RENDERS_CAPTION = {r[0]: r[4] for r in RENDERS}


def main(argv=None) -> int:
    import cv2

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "images")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    cv2.setNumThreads(1)
    for name, options, seed, n, _ in RENDERS:
        img, _ = render(name, options, seed, n)
        path = args.out / f"multi-{name.replace('_', '-')}.png"
        ok, buf = cv2.imencode(".png", img[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if not ok:
            raise OSError(f"{path}: could not encode")
        path.write_bytes(buf.tobytes())
        print(f"{path}: {img.shape[1]}x{img.shape[0]}, {len(buf) / 1024:.1f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
