"""What the study scripts share: the study's target profile, pack builds, sizes and the digits split.

``study_augment.py`` (classification, the CLI), ``study_detect.py`` (detection) and ``study_cuts.py`` (how the
mosaics cut objects) import it; it imports none of them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from study_variety import TARGET  # noqa: E402  (the study's profile: same as the variety study's)

VAL = 0.2  # the digits' held-out share


def write_target(work: Path, size: int, color: str) -> Path:
    path = work / f"target_{color.lower()}{size}.toml"
    path.write_text(TARGET.format(size=size, channels=1 if color == "GRAY" else 3, color=color))
    return path


def build_pack(work: Path, data: Path, name: str, rcp: dict, target: Path, seed: int = 0) -> Tuple[Path, float]:
    """Build (or reuse, with ``--work``) a pack; returns its path and the build's wall seconds (0 if reused)."""
    from edgeaug.builder.pipeline import build
    from edgeaug.config.recipe import parse_recipe

    out = work / f"{name}.lmdb"
    if out.exists():
        return out, 0.0
    t0 = time.monotonic()
    r = build(data, out, target, parse_recipe(rcp, name), seed=seed, workers=2, val=0.0)
    dt = time.monotonic() - t0
    print(f"  built {out.name}: {r.records} records in {dt:.1f}s", file=sys.stderr, flush=True)
    return out, dt


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def digits_split(
    limit: Optional[int] = None,
) -> Tuple[List[Tuple[str, np.ndarray, int]], List[Tuple[str, np.ndarray, int]]]:
    """(train, val) lists of (rel path, 8x8 uint8 image, label); a seeded 20% is val."""
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs, ys = np.rint(d.images * 255 / 16).astype(np.uint8), d.target
    order = np.random.default_rng(7).permutation(len(ys))[:limit]
    n_val = int(round(len(order) * VAL))
    rows = [(f"{ys[i]}/{i:04d}.png", imgs[i], int(ys[i])) for i in order]
    return rows[n_val:], rows[:n_val]
