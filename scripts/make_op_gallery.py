#!/usr/bin/env python3
"""Render every registered op on one procedural scene: docs/images/ops/<op>.jpg and docs/op-gallery.md.

The scene (drawn here, no licensed image) has two labelled boxes and five
keypoints; the labels are drawn on each output *after* the op ran, from the
labels edgeaug returns, so the images show geometric ops carrying their
labels along.  Each op runs alone with ``p = 1`` at a fixed seed, with the
parameters in :data:`PARAMS` (else its defaults), rendered to 160x120 and
saved as JPEG quality 80.  Composite and multi-image ops are illustrated
elsewhere.  The domain ops read a folder of two procedural "device captures"
(dim, bluish, noisy); the ``onnx`` op runs a 1 - x model written with onnx.

    python scripts/make_op_gallery.py [--out docs]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

W, H = 160, 120
SEED = 7
QUALITY = 80
# Visible but typical settings; an op not listed runs with its default ranges.
PARAMS = {
    "rotate": {"degrees": 25},
    "rot90": {"k": 1},
    "affine": {"scale": 0.85, "translate": 0.08, "shear": 12},
    "perspective": {"distortion": 0.15},
    "random_resized_crop": {"scale": 0.4},
    "brightness": {"delta": 0.25},
    "contrast": {"factor": 1.5},
    "gamma": {"gamma": 1.8},
    "hue_saturation": {"hue": 40, "saturation": 1.5},
    "gaussian_blur": {"sigma": 1.5},
    "motion_blur": {"length": 9},
    "gaussian_noise": {"sigma": 0.08},
    "jpeg": {"quality": 10},
    "cutout": {"count": 2, "size": 0.25},
    "elastic": {"alpha": 0.02, "sigma": 0.2},
    "grid_distortion": {"distort": [-0.5, 0.5]},
    "lens_distortion": {"k1": -0.3, "k2": 0.05},
    "chromatic_aberration": {"red": 0.03, "blue": -0.03},
    "vignette": {"strength": 0.7},
    "camera": {"profile": "rpi_camera_module_3_wide"},
    "fog": {"fog_coef": 0.6},
    "rain": {"density": 0.03},
    "solarize": {"threshold": 128},
    "posterize": {"bits": 3},
    "salt_pepper": {"amount": 0.03},
    "histogram_match": {"reference": "captures", "strength": 1.0},
    "fda": {"reference": "captures", "beta": 0.08, "strength": 1.0},
    "onnx": {"model": "invert.onnx"},
    "augmix": {"geometric": False},  # its warped copies cannot carry labels
}


def gallery_ops():
    """Every registered op the gallery shows: all but composites and multi-image ops."""
    from edgeaug.ops.registry import OPS

    return sorted(n for n, c in OPS.items() if not getattr(c, "composite", False) and not getattr(c, "multi", False))


def scene():
    """A 320x240 RGB street-ish scene, its boxes (class, x0, y0, x1, y1) and keypoints (x, y, visible)."""
    import cv2

    y, x = np.mgrid[0:240, 0:320].astype(np.float32)
    img = np.zeros((240, 320, 3), np.float32)
    img[:150] = np.stack([110 + 0 * x[:150], 170 + 40 * y[:150] / 150, 235 + 0 * x[:150]], -1)  # sky
    img[150:] = np.stack([90 + 20 * np.sin(x[150:] / 7), 120 + 0 * x[150:], 70 + 0 * x[150:]], -1)  # grass
    img = np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8))
    cv2.rectangle(img, (40, 70), (140, 200), (200, 60, 50), -1)  # a red house
    cv2.fillPoly(img, [np.array([[30, 70], [90, 25], [150, 70]], np.int32)], (120, 60, 40))
    cv2.rectangle(img, (75, 140), (105, 200), (60, 40, 30), -1)
    cv2.circle(img, (230, 150), 45, (240, 200, 40), -1)  # a yellow ball
    cv2.circle(img, (280, 40), 18, (255, 250, 210), -1)  # the sun
    for i in range(0, 320, 20):
        cv2.line(img, (i, 215), (i + 10, 240), (60, 90, 50), 2)
    boxes = np.array([[0, 30, 25, 150, 200], [1, 185, 105, 275, 195]], np.float32)
    kps = np.array([[90, 25, 2], [40, 70, 2], [140, 70, 2], [230, 150, 2], [280, 40, 2]], np.float32)
    return img, boxes, kps


def write_references(folder: Path) -> None:
    """Two dim, bluish, noisy "device captures" for histogram_match and fda."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    for i in range(2):
        img = rng.normal(0, 12, (120, 160, 3)) + np.array([150, 90, 60]) * (0.6 + 0.2 * i)  # BGR
        cv2.imwrite(str(folder / f"capture{i}.png"), np.clip(img, 0, 255).astype(np.uint8))


def write_onnx_invert(path: Path) -> bool:
    """A 1 - x image model; False when the onnx package is missing."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return False
    shape = ["N", 3, "H", "W"]
    graph = helper.make_graph(
        [helper.make_node("Sub", ["one", "image"], ["out"])],
        "invert",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(np.array(1.0, np.float32), "one")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return True


def render(name: str, base: Path):
    """One op alone on the scene at 160x120, labels drawn: (image RGB, the recipe's op table)."""
    import cv2

    from edgeaug.builder.augment import Augmenter, Labels, record_rng
    from edgeaug.config.recipe import parse_recipe
    from edgeaug.config.targets import Device, Target

    table = {"op": name, "p": 1.0, **PARAMS.get(name, {})}
    tgt = Target("gallery", Device("g", "any", 64), "input", H, W, 3, "NHWC", "RGB", "uint8", (0.0,) * 3, (1.0,) * 3, 1)
    aug = Augmenter(parse_recipe({"resize": "squash", "min_visibility": 0.0, "ops": [table]}, "gallery", base), tgt)
    img, boxes, kps = scene()
    params = aug.sample(record_rng(SEED, (1,), 1), (img.shape[1], img.shape[0]))
    out, lab = aug.render(img, Labels(boxes=boxes, keypoints=kps), params, (img.shape[1], img.shape[0]))
    out = np.ascontiguousarray(out)
    for _, x0, y0, x1, y1 in lab.boxes:
        cv2.rectangle(out, (int(round(x0)), int(round(y0))), (int(round(x1)) - 1, int(round(y1)) - 1), (0, 255, 0), 1)
    for x, y, v in lab.keypoints:
        if v > 0:
            cv2.circle(out, (int(x), int(y)), 2, (255, 0, 255), -1)
    return out, table


def main(argv=None) -> int:
    import cv2

    from edgeaug.ops.catalog import kind, summary
    from edgeaug.ops.registry import OPS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs"), help="the docs folder")
    a = ap.parse_args(argv)
    cv2.setNumThreads(1)
    docs = Path(a.out)
    (docs / "images" / "ops").mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        write_references(base / "captures")
        has_onnx = write_onnx_invert(base / "invert.onnx")
        original, boxes, kps = scene()
        small = cv2.resize(original, (W, H), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(docs / "images" / "ops" / "_original.jpg"), cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
        for name in gallery_ops():
            if name == "onnx" and not has_onnx:
                print("onnx: skipped (pip install onnx onnxruntime)", file=sys.stderr)
                continue
            out, table = render(name, base)
            path = docs / "images" / "ops" / f"{name}.jpg"
            cv2.imwrite(str(path), cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
            shown = {k: v for k, v in table.items() if k not in ("op", "p")}
            rows.append(f"| ![{name}](images/ops/{name}.jpg) | `{name}` | {kind(OPS[name])} | `{json.dumps(shown)}` |")
            rows[-1] += f" {summary(OPS[name])} |"
    (docs / "op-gallery.md").write_text(page(rows), encoding="utf-8")
    print(f"{len(rows)} ops -> {docs / 'images' / 'ops'}, {docs / 'op-gallery.md'}")
    return 0


def page(rows) -> str:
    head = [
        "# Op gallery",
        "",
        "Every op on one procedural scene, alone, at a fixed seed, rendered to 160x120 (generated by",
        "`python scripts/make_op_gallery.py`; do not edit by hand).  Green boxes and magenta keypoints are the",
        "labels *after* the op, as edgeaug returns them: geometric ops carry them along.  Parameters not shown",
        "are the op's defaults (`edgeaug ops`).  Composite (`one_of`, `some_of`) and multi-image ops are",
        'illustrated with the multi-image ops.  The domain ops read two procedural dim, bluish "device',
        'captures"; `onnx` runs a 1 - x model.',
        "",
        "![original](images/ops/_original.jpg) the scene, before any op",
        "",
        "| preview | op | kind | parameters | what it does |",
        "|---|---|---|---|---|",
    ]
    return "\n".join(head + list(rows)) + "\n"


if __name__ == "__main__":
    sys.exit(main())
