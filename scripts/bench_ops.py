#!/usr/bin/env python3
"""Per-op speed: each issue-24 op (pixel, field, camera, domain) against its Albumentations equivalent.

Both sides get the same fixed parameters (ranges collapsed to one value), so
each call draws only what is random by nature (noise fields, positions) and
renders.  Timed per call: edgeaug ``op.sample`` + ``op.apply``; Albumentations
``get_params`` + ``get_params_dependent_on_data`` + ``apply`` (the work of a
transform call without Compose's bookkeeping).  CPU time (``time.process_time``),
OpenCV on one thread, best of ``--repeat`` rounds with the two sides interleaved.
Ratios > 1 mean edgeaug is faster.  Run through ``bench_augment.py --ops`` or directly:

    python scripts/bench_ops.py [--images 32] [--size 224x224] [--repeat 5] [--only fog,rain]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
REFS: list = []  # the domain ops' reference images (RGB), filled by run()


def cases(A, cv2, w: int):
    """name -> (edgeaug recipe fields with every range collapsed, Albumentations transform or None)."""
    return {
        "iso_noise": ({"color_shift": 0.03, "intensity": 0.3}, A.ISONoise((0.03, 0.03), (0.3, 0.3), p=1)),
        "shot_noise": ({"scale": 0.005, "read_noise": 0}, A.ShotNoise(scale_range=(0.005, 0.005), p=1)),
        "salt_pepper": ({"amount": 0.035, "salt_vs_pepper": 0.5}, A.SaltAndPepper((0.035, 0.035), (0.5, 0.5), p=1)),
        "multiplicative_noise": ({"multiplier": [0.9, 1.1]}, A.MultiplicativeNoise((0.9, 1.1), elementwise=True, p=1)),
        "median_blur": ({"ksize": 5}, A.MedianBlur(blur_limit=(5, 5), p=1)),
        "box_blur": ({"ksize": 5}, A.Blur(blur_limit=(5, 5), p=1)),
        "defocus": ({"radius": 2, "alias_blur": 0.3}, A.Defocus(radius=(2, 2), alias_blur=(0.3, 0.3), p=1)),
        "zoom_blur": (
            {"max_factor": 1.15, "step_factor": 0.02},
            A.ZoomBlur(max_factor=(1.15, 1.15), step_factor=(0.02, 0.02), p=1),
        ),
        "sharpen": ({"alpha": 0.35, "lightness": 0.75}, A.Sharpen(alpha=(0.35, 0.35), lightness=(0.75, 0.75), p=1)),
        "unsharp_mask": (
            {"sigma": 1.0, "alpha": 0.35, "threshold": 10},
            A.UnsharpMask(blur_limit=(7, 7), sigma_limit=(1.0, 1.0), alpha=(0.35, 0.35), threshold=10, p=1),
        ),
        "downscale": (
            {"scale": 0.375},
            A.Downscale(
                scale_range=(0.375, 0.375),
                interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR},
                p=1,
            ),
        ),
        "channel_shuffle": ({}, A.ChannelShuffle(p=1)),
        "rgb_shift": ({"r_shift": 10, "g_shift": -10, "b_shift": 5}, A.RGBShift((10, 10), (-10, -10), (5, 5), p=1)),
        # Albumentations needs its range to contain 6000 K; the work does not depend on the value.
        "white_balance": ({"temperature": 8000}, A.PlanckianJitter(temperature_limit=(6000, 10000), p=1)),
        "posterize": ({"bits": 5}, A.Posterize(num_bits=5, p=1)),
        "solarize": ({"threshold": 191.25}, A.Solarize(threshold_range=(0.75, 0.75), p=1)),
        "invert": ({}, A.InvertImg(p=1)),
        "autocontrast": ({"cutoff": 0}, A.AutoContrast(cutoff=0, p=1)),
        "tone_curve": ({"scale": 0.1}, A.RandomToneCurve(scale=0.1, p=1)),
        "shadow": (
            {"count": 2, "vertices": 5, "intensity": 0.5},
            A.RandomShadow(num_shadows_limit=(2, 2), shadow_dimension=5, p=1),
        ),
        "fog": ({"fog_coef": 0.45}, A.RandomFog(fog_coef_range=(0.45, 0.45), p=1)),
        "sun_flare": (
            {"circles": 8, "src_radius": 0.3},
            A.RandomSunFlare(src_radius=round(0.3 * w), num_flare_circles_range=(8, 8), p=1),
        ),
        "rain": (
            {"density": 1 / 600, "drop_length": 0.08},
            A.RandomRain(drop_length=round(0.08 * w), blur_value=3, p=1),
        ),
        # Geometry (field ops: edgeaug times sample + render of a one-op recipe, 224x224 -> 224x224).
        "elastic": ({"alpha": 0.01, "sigma": 0.15}, A.ElasticTransform(alpha=40, sigma=0.15 * w / 2, p=1)),
        "grid_distortion": ({"distort": 0.3, "steps": 5}, A.GridDistortion(num_steps=5, distort_limit=(0.3, 0.3), p=1)),
        "lens_distortion": ({"k1": -0.1}, A.OpticalDistortion(distort_limit=(-0.1, -0.1), mode="camera", p=1)),
        "chromatic_aberration": (
            {"red": 0.01, "blue": -0.01},
            A.ChromaticAberration((0.02, 0.02), (0.05, 0.05), mode="red_blue", p=1),
        ),
        "vignette": ({"strength": 0.4}, None),
        "camera": (
            {"profile": "rpi_camera_module_3_wide"},
            A.Compose(
                [
                    A.OpticalDistortion(distort_limit=(-0.15, -0.15), mode="camera", p=1),
                    A.ShotNoise(scale_range=(0.005, 0.005), p=1),
                    A.PlanckianJitter(temperature_limit=(6000, 10000), p=1),
                    A.ImageCompression(quality_range=(85, 85), p=1),
                ]
            ),
        ),
        # Domain ops from a folder of 4 reference images (640x480).
        "histogram_match": (
            {"reference": "refs", "strength": 0.8},
            A.HistogramMatching(REFS, blend_ratio=(0.8, 0.8), read_fn=_same, p=1),
        ),
        "fda": ({"reference": "refs", "beta": 0.05}, A.FDA(REFS, beta_limit=(0.05, 0.05), read_fn=_same, p=1)),
        "randaugment": ({}, None),
        "trivial_augment": ({}, None),
        "augmix": ({}, None),
    }


def _same(x):
    return x


def _target(w: int, h: int):
    """An RGB uint8 target of the images' own size: the field op's warp is the only resampling."""
    from edgeaug.config.targets import Device, Target

    return Target(
        "bench", Device("bench", "any", 64), "input", h, w, 3, "NHWC", "RGB", "uint8", (0.0,) * 3, (1.0,) * 3, 1 / 255
    )


def images(n: int, w: int, h: int, seed: int = 0):
    """Photo-like RGB frames at the output size: gradients, texture and discs."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        img = np.stack([x / w * 255, y / h * 255, (np.sin(x / 9) + np.cos(y / 13)) * 60 + 128], -1)
        img += rng.normal(0, 10, img.shape).astype(np.float32)
        for _ in range(4):
            c = tuple(float(v) for v in rng.integers(0, 256, 3))
            cv2.circle(img, (int(rng.integers(w)), int(rng.integers(h))), int(rng.integers(8, h // 3)), c, -1)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def time_edgeaug(op, imgs) -> float:
    rng = np.random.default_rng(0)
    t0 = time.process_time()
    for img in imgs:
        op.apply(img, None, op.sample(rng, (float(img.shape[1]), float(img.shape[0]))))
    return (time.process_time() - t0) / len(imgs)


def time_field(aug, imgs) -> float:
    """A field op renders with the geometry (the RGBA copy is made once per source in a build: not timed)."""
    from edgeaug.builder.augment import Labels

    rng = np.random.default_rng(0)
    prepared = [aug.prepare(img) for img in imgs]
    t0 = time.process_time()
    for img in prepared:
        size = (img.shape[1], img.shape[0])
        aug.render(img, Labels(), aug.sample(rng, size), size)
    return (time.process_time() - t0) / len(imgs)


def time_albumentations(t, imgs) -> float:
    t.set_random_seed(0)
    if hasattr(t, "transforms"):  # a Compose: the camera's pieces together
        t0 = time.process_time()
        for img in imgs:
            t(image=img)
        return (time.process_time() - t0) / len(imgs)
    t0 = time.process_time()
    for img in imgs:
        params = t.get_params()
        params["shape"] = img.shape
        params.update(t.get_params_dependent_on_data(params, {"image": img}))
        t.apply(img, **params)
    return (time.process_time() - t0) / len(imgs)


def run(n_images: int = 32, size: str = "224x224", repeat: int = 5, only: str = "") -> int:
    import albumentations as A
    import cv2

    from edgeaug.builder.augment import Augmenter
    from edgeaug.config.recipe import parse_recipe
    from edgeaug.ops.registry import OPS

    cv2.setNumThreads(1)
    w, h = (int(v) for v in size.lower().split("x"))
    imgs = images(n_images, w, h)
    REFS[:] = images(4, 640, 480, seed=1)
    refdir = Path(tempfile.mkdtemp(prefix="edgeaug-refs-"))
    (refdir / "refs").mkdir()
    for i, ref in enumerate(REFS):
        cv2.imwrite(str(refdir / "refs" / f"ref{i}.png"), cv2.cvtColor(ref, cv2.COLOR_RGB2BGR))
    table = cases(A, cv2, w)
    names = [n for n in (only.split(",") if only else table) if n]
    best = {}
    for _ in range(repeat):
        for n in names:
            fields, albu = table[n]
            rcp = parse_recipe({"resize": "squash", "ops": [{"op": n, **fields}]}, "bench", base=refdir)
            if getattr(OPS[n], "geometric", False):
                took = time_field(Augmenter(rcp, _target(w, h)), imgs)
            else:
                took = time_edgeaug(rcp.ops[0].build(), imgs)
            best[(n, "e")] = min(best.get((n, "e"), 1e9), took)
            if albu is not None:
                best[(n, "a")] = min(best.get((n, "a"), 1e9), time_albumentations(albu, imgs))
    print(
        f"{n_images} images {w}x{h} RGB uint8; albumentations {A.__version__}, OpenCV {cv2.__version__}, "
        f"numpy {np.__version__}; CPU ms per image, best of {repeat}, one thread\n"
    )
    print("| op | edgeaug (ms) | Albumentations equivalent | Albumentations (ms) | ratio |")
    print("|---|---|---|---|---|")
    for n in names:
        e, albu = best[(n, "e")], table[n][1]
        if albu is None:
            print(f"| {n} | {e * 1e3:.3f} | none | | |")
        else:
            a = best[(n, "a")]
            print(f"| {n} | {e * 1e3:.3f} | {type(albu).__name__} | {a * 1e3:.3f} | {a / e:.2f}x |")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--size", default="224x224", help="image size WxH (the ops run on the output image)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", default="", help="comma-separated op names (default: all)")
    a = ap.parse_args(argv)
    return run(a.images, a.size, a.repeat, a.only)


if __name__ == "__main__":
    sys.exit(main())
