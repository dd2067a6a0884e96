"""The demo: a procedural labelled dataset, a pack for rpi4, verified and loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from edgeaug.builder.pipeline import build
from edgeaug.device.loader import Pack
from edgeaug.verify import verify_pack

CLASSES = ("circle", "square", "triangle", "stripes")


def make_dataset(out: Path, per_class: int = 24, seed: int = 0) -> Path:
    """Write ``per_class`` procedural images per class (JPEG and PNG) under ``out``.

    Shapes of random colour, size and position on a noisy gradient background;
    the same seed always writes the same files.
    """
    import cv2

    rng = np.random.default_rng(seed)
    for _c, name in enumerate(CLASSES):
        (out / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = int(rng.integers(180, 320)), int(rng.integers(180, 320))
            img = _background(rng, h, w)
            _draw(img, name, rng)
            ext = ".jpg" if i % 2 else ".png"
            ok, buf = cv2.imencode(ext, cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            (out / name / f"{name} {i:03d}{ext}").write_bytes(buf.tobytes())
    return out


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, w)[None, :, None]
    img = a * (1 - t) + b * t + rng.normal(0, 8, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _draw(img: np.ndarray, name: str, rng: np.random.Generator) -> None:
    import cv2

    h, w = img.shape[:2]
    color = tuple(int(v) for v in rng.integers(0, 256, 3))
    r = int(rng.integers(min(h, w) // 6, min(h, w) // 3))
    cx, cy = int(rng.integers(r, w - r)), int(rng.integers(r, h - r))
    if name == "circle":
        cv2.circle(img, (cx, cy), r, color, -1)
    elif name == "square":
        cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), color, -1)
    elif name == "triangle":
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
        cv2.fillPoly(img, [pts], color)
    else:
        for x in range(0, w, max(4, r // 3) * 2):
            cv2.rectangle(img, (x, 0), (x + max(4, r // 3), h), color, -1)


def run_demo(
    out: Path,
    workers: Optional[int] = None,
    progress: Optional[Callable[[int, int], None]] = None,
    say: Callable[[str], None] = print,
) -> Dict[str, object]:
    """Generate data, build ``demo-rpi4.lmdb``, verify it, load batches; return a summary."""

    out.mkdir(parents=True, exist_ok=True)
    data = make_dataset(out / "shapes")
    say(f"dataset: {sum(1 for _ in data.rglob('*.*'))} images in {len(CLASSES)} classes at {data}")
    pack_path = out / "demo-rpi4.lmdb"
    res = build(data, pack_path, "rpi4", variants=4, seed=7, workers=workers, val=0.2, progress=progress)
    say(
        f"built {res.path}: {res.records} records {res.splits} in {res.seconds:.1f}s, "
        f"fingerprint {res.fingerprint[:16]}"
    )
    report = verify_pack(pack_path, source=data, sample=8)
    say(f"verify: {report.summary()}")
    with Pack(str(pack_path)) as pack:
        shapes: List[str] = []
        for e in range(2):
            for x, _y in pack.batches(32, epoch=e):
                shapes.append(f"{x.dtype}{list(x.shape)}")
        say(
            f"loaded train split: {len(pack)} records from {pack.sources} sources; "
            f"epoch batches {shapes[:2]}...; classes {pack.classes}"
        )
    return {"pack": str(pack_path), "records": res.records, "verified": report.ok}
