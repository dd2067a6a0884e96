#!/usr/bin/env python3
"""The augmentation engine against Albumentations, in one run, same images, same output size.

Three measurements, each the best of ``--repeat`` rounds (the rounds of the
two sides interleave, so other load on the machine hits both alike):

1. **augment step, one core**: images/s from a decoded source image to the
   224x224 target: edgeaug's ``Augmenter`` (sample + one warp + photometric
   ops + quantization) vs ``albumentations.Compose`` of the equivalent ops
   (same ranges and probabilities, ``RandomResizedCrop`` to 224x224 first).
   OpenCV runs single-threaded on both sides.
2. **end to end, one core**: ``edgeaug build`` (read, decode once, K variants,
   LMDB pack) vs a "custom script" that reads each image once, runs the
   Albumentations pipeline K times and writes each variant as a PNG
   (``cv2.imwrite``, OpenCV's default, fastest PNG level).
3. **scaling**: both end-to-end jobs again with all cores (edgeaug
   ``--workers N``; the script with a ``multiprocessing.Pool`` of N).

Three recipes: ``default`` (edgeaug/config/recipes/default.toml), ``full`` (every
op family at moderate probabilities) and ``geometric`` (rotate, affine and
perspective together: where one warp instead of three pays most).

Albumentations is a dev/benchmark dependency only (``pip install
albumentations``).  Ratios > 1 mean edgeaug is faster.

    python scripts/bench_augment.py [--images 48] [--variants 8] [--size 640x480] [--repeat 3]
                                    [--recipes default,full,geometric]
    python scripts/bench_augment.py --ops [fog,rain,...]   # per-op table (see scripts/bench_ops.py)
    python scripts/bench_augment.py --mosaic   # mosaic vs albumentations.Mosaic (see scripts/bench_mosaic.py)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FULL = """
variants = 8
include_original = false
resize = "squash"
border = "reflect"
[[ops]]
op = "random_resized_crop"
scale = [0.35, 1.0]
[[ops]]
op = "hflip"
p = 0.5
[[ops]]
op = "rotate"
p = 0.5
degrees = [-15, 15]
[[ops]]
op = "affine"
p = 0.3
scale = [0.9, 1.1]
translate = [-0.1, 0.1]
shear = [-5, 5]
[[ops]]
op = "perspective"
p = 0.2
distortion = [0.02, 0.05]
[[ops]]
op = "brightness"
p = 0.5
delta = [-0.2, 0.2]
[[ops]]
op = "contrast"
p = 0.5
factor = [0.8, 1.2]
[[ops]]
op = "gamma"
p = 0.3
gamma = [0.8, 1.25]
[[ops]]
op = "hue_saturation"
p = 0.3
hue = [-10, 10]
saturation = [0.8, 1.2]
[[ops]]
op = "grayscale"
p = 0.05
[[ops]]
op = "clahe"
p = 0.1
[[ops]]
op = "gaussian_blur"
p = 0.2
sigma = [0.1, 1.5]
[[ops]]
op = "motion_blur"
p = 0.1
length = [3, 9]
[[ops]]
op = "gaussian_noise"
p = 0.2
sigma = [0.0, 0.04]
[[ops]]
op = "jpeg"
p = 0.2
quality = [50, 95]
[[ops]]
op = "cutout"
p = 0.3
count = [1, 3]
size = [0.1, 0.25]
"""

GEOMETRIC = """
variants = 8
include_original = false
resize = "squash"
border = "reflect"
[[ops]]
op = "random_resized_crop"
scale = [0.35, 1.0]
[[ops]]
op = "hflip"
p = 0.5
[[ops]]
op = "rotate"
degrees = [-15, 15]
[[ops]]
op = "affine"
scale = [0.9, 1.1]
translate = [-0.1, 0.1]
shear = [-5, 5]
[[ops]]
op = "perspective"
p = 0.5
distortion = [0.02, 0.05]
[[ops]]
op = "brightness"
p = 0.5
delta = [-0.2, 0.2]
"""


def albu_default(A, refl):
    """edgeaug/config/recipes/default.toml in Albumentations (resize when the crop does not fire)."""
    return [
        A.OneOf(
            [
                A.RandomResizedCrop(size=(224, 224), scale=(0.5, 1.0), ratio=(0.75, 1.3333), p=0.8),
                A.Resize(224, 224, p=0.2),
            ],
            p=1.0,
        ),
        A.HorizontalFlip(p=0.5),
        A.Rotate(limit=12, border_mode=refl, p=0.4),
        A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.0, p=0.5),
        A.RandomBrightnessContrast(brightness_limit=0.0, contrast_limit=0.2, p=0.5),
        A.HueSaturationValue(hue_shift_limit=8, sat_shift_limit=20, val_shift_limit=0, p=0.3),
        A.GaussianBlur(sigma_limit=(0.3, 1.2), blur_limit=0, p=0.15),
        A.GaussNoise(std_range=(0.0, 0.03), p=0.15),
        A.CoarseDropout(num_holes_range=(1, 2), hole_height_range=(0.1, 0.2), hole_width_range=(0.1, 0.2), p=0.2),
    ]


def albu_full(A, refl):
    return [
        A.RandomResizedCrop(size=(224, 224), scale=(0.35, 1.0), p=1.0),
        A.HorizontalFlip(p=0.5),
        A.Rotate(limit=15, border_mode=refl, p=0.5),
        A.Affine(scale=(0.9, 1.1), translate_percent=(-0.1, 0.1), shear=(-5, 5), border_mode=refl, p=0.3),
        A.Perspective(scale=(0.02, 0.05), border_mode=refl, p=0.2),
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.0, p=0.5),
        A.RandomBrightnessContrast(brightness_limit=0.0, contrast_limit=0.2, p=0.5),
        A.RandomGamma(gamma_limit=(80, 125), p=0.3),
        A.HueSaturationValue(hue_shift_limit=10, sat_shift_limit=20, val_shift_limit=0, p=0.3),
        A.ToGray(p=0.05),
        A.CLAHE(clip_limit=(1, 4), p=0.1),
        A.GaussianBlur(sigma_limit=(0.1, 1.5), blur_limit=0, p=0.2),
        A.MotionBlur(blur_limit=(3, 9), p=0.1),
        A.GaussNoise(std_range=(0.0, 0.04), p=0.2),
        A.ImageCompression(quality_range=(50, 95), p=0.2),
        A.CoarseDropout(num_holes_range=(1, 3), hole_height_range=(0.1, 0.25), hole_width_range=(0.1, 0.25), p=0.3),
    ]


def albu_geometric(A, refl):
    return [
        A.RandomResizedCrop(size=(224, 224), scale=(0.35, 1.0), p=1.0),
        A.HorizontalFlip(p=0.5),
        A.Rotate(limit=15, border_mode=refl, p=1.0),
        A.Affine(scale=(0.9, 1.1), translate_percent=(-0.1, 0.1), shear=(-5, 5), border_mode=refl, p=1.0),
        A.Perspective(scale=(0.02, 0.05), border_mode=refl, p=0.5),
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.0, p=0.5),
    ]


# name -> (edgeaug recipe TOML or None for the shipped default, Albumentations ops)
RECIPES = {"default": (None, albu_default), "full": (FULL, albu_full), "geometric": (GEOMETRIC, albu_geometric)}


def load(name: str, variants: int):
    """The edgeaug Recipe of a benchmark recipe, with ``variants`` and no stored original."""
    from edgeaug.config.recipe import Recipe, load_recipe, parse_recipe

    text = RECIPES[name][0]
    if text is None:
        r = load_recipe()
    else:
        try:
            import tomllib
        except ModuleNotFoundError:
            import tomli as tomllib
        r = parse_recipe(tomllib.loads(text), f"bench recipe {name}")
    return Recipe(variants, False, r.resize, r.border, r.fill, r.min_visibility, r.ops)


def albumentations_pipeline(name: str, seed: int):
    """The same ops, ranges and probabilities in Albumentations."""
    import albumentations as A
    import cv2

    return A.Compose(RECIPES[name][1](A, cv2.BORDER_REFLECT_101), seed=seed)


def make_images(d: Path, n: int, w: int, h: int) -> Path:
    """Photo-like JPEGs: gradients, texture, shapes (class folders, for ``edgeaug build``)."""
    import cv2

    rng = np.random.default_rng(0)
    for i in range(n):
        c = d / f"class{i % 4}"
        c.mkdir(parents=True, exist_ok=True)
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        img = np.stack([x / w * 255, y / h * 255, (np.sin(x / 17) + np.cos(y / 23)) * 60 + 128], -1)
        img += rng.normal(0, 10, img.shape).astype(np.float32)
        for _ in range(6):
            cv2.circle(
                img,
                (int(rng.integers(w)), int(rng.integers(h))),
                int(rng.integers(20, h // 3)),
                tuple(float(v) for v in rng.integers(0, 256, 3)),
                -1,
            )
        cv2.imwrite(str(c / f"img{i:04d}.jpg"), np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return d


def decoded(src: Path):
    import cv2

    return [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in sorted(src.rglob("*.jpg"))]


def step_edgeaug(images, recipe, k: int) -> float:
    from edgeaug.builder.augment import Augmenter, Labels, record_rng
    from edgeaug.builder.render import working_image
    from edgeaug.config.targets import load_target

    aug = Augmenter(recipe, load_target("rpi4"))
    t0 = time.perf_counter()
    for i, img in enumerate(images):
        size = (img.shape[1], img.shape[0])
        work = working_image(img, aug)
        for v in range(1, k + 1):
            params = aug.sample(record_rng(0, (i,), v), size)
            out, _ = aug.render(work, Labels(), params, size)
            aug.tensor(out)
    return len(images) * k / (time.perf_counter() - t0)


def step_albumentations(images, name: str, k: int) -> float:
    pipe = albumentations_pipeline(name, 0)
    t0 = time.perf_counter()
    for img in images:
        for _ in range(k):
            pipe(image=img)["image"]
    return len(images) * k / (time.perf_counter() - t0)


_PIPES: dict = {}  # one Compose per process and recipe, as a script would build it once


def _script_one(job):
    """The custom script's work for one file: decode, K x Albumentations, K PNGs."""
    import cv2

    path, out, k, name = job
    cv2.setNumThreads(1)
    pipe = _PIPES.setdefault(name, albumentations_pipeline(name, 0))
    img = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
    stem = Path(path).stem
    for v in range(k):
        cv2.imwrite(str(Path(out) / f"{stem}_{v}.png"), cv2.cvtColor(pipe(image=img)["image"], cv2.COLOR_RGB2BGR))


def e2e_script(src: Path, out: Path, name: str, k: int, workers: int) -> float:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    jobs = [(str(f), str(out), k, name) for f in sorted(src.rglob("*.jpg"))]
    t0 = time.perf_counter()
    if workers == 1:
        for j in jobs:
            _script_one(j)
    else:
        import multiprocessing as mp

        with mp.get_context("forkserver").Pool(workers) as pool:
            pool.map(_script_one, jobs, chunksize=1)
    return len(jobs) * k / (time.perf_counter() - t0)


def e2e_edgeaug(src: Path, out: Path, recipe, workers: int) -> float:
    from edgeaug.builder.pipeline import build

    t0 = time.perf_counter()
    res = build(src, out, "rpi4", recipe, seed=0, workers=workers)
    return res.records / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--variants", type=int, default=8)
    ap.add_argument("--size", default="640x480", help="source image size WxH")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="'all cores' for scaling")
    ap.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated: " + ", ".join(RECIPES))
    ap.add_argument(
        "--ops",
        nargs="?",
        const="all",
        help="instead: time each pixel op against its Albumentations equivalent on 32 images of 224x224 "
        "(scripts/bench_ops.py has more options); optionally a comma-separated list of op names",
    )
    ap.add_argument(
        "--mosaic",
        action="store_true",
        help="instead: edgeaug's mosaic vs Albumentations' Mosaic, 2x2 to 640x640 from --size sources "
        "(scripts/bench_mosaic.py has more options)",
    )
    a = ap.parse_args(argv)
    try:
        import albumentations
    except ImportError:
        print("albumentations is not installed: pip install albumentations", file=sys.stderr)
        return 2
    if a.mosaic:
        from bench_mosaic import run as run_mosaic  # beside this script

        return run_mosaic(images=16, size=tuple(int(v) for v in a.size.lower().split("x")), repeat=a.repeat)
    if a.ops:
        from bench_ops import run  # beside this script, which is on sys.path

        return run(repeat=max(a.repeat, 5), only="" if a.ops == "all" else a.ops)  # 32 images of 224x224
    import cv2

    names = [n for n in a.recipes.split(",") if n]
    w, h = (int(v) for v in a.size.lower().split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="edgeaug-bench-"))
    best = {}

    def keep(key, value):
        best[key] = max(best.get(key, 0.0), value)

    try:
        src = make_images(tmp / "src", a.images, w, h)
        images = decoded(src)
        cv2.setNumThreads(1)
        for _ in range(a.repeat):
            for n in names:
                rcp = load(n, a.variants)
                keep((n, "step", "edgeaug"), step_edgeaug(images, rcp, a.variants))
                keep((n, "step", "albu"), step_albumentations(images, n, a.variants))
                for wk in sorted({1, a.workers}):
                    keep((n, wk, "edgeaug"), e2e_edgeaug(src, tmp / "p.lmdb", rcp, wk))
                    keep((n, wk, "albu"), e2e_script(src, tmp / "png", n, a.variants, wk))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"{a.images} source images {w}x{h} JPEG, {a.variants} variants each, output 224x224x3 uint8 (rpi4); "
        f"albumentations {albumentations.__version__}, OpenCV {cv2.__version__}, numpy {np.__version__}; "
        f"best of {a.repeat}, {os.cpu_count()} cores\n"
    )
    print("| recipe | measurement | edgeaug (img/s) | Albumentations (img/s) | ratio |")
    print("|---|---|---|---|---|")
    for n in names:
        rows = [("augment step, 1 core", "step")] + [
            (f"end to end, {wk} core{'s' if wk > 1 else ''}", wk) for wk in sorted({1, a.workers})
        ]
        for label, key in rows:
            e, t = best[(n, key, "edgeaug")], best[(n, key, "albu")]
            print(f"| {n} | {label} | {e:.0f} | {t:.0f} | {e / t:.2f}x |")
        if a.workers > 1:
            print(
                f"| {n} | scaling 1 -> {a.workers} cores | "
                f"{best[(n, a.workers, 'edgeaug')] / best[(n, 1, 'edgeaug')]:.2f}x | "
                f"{best[(n, a.workers, 'albu')] / best[(n, 1, 'albu')]:.2f}x | |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
