"""Shared fixtures: a small procedural dataset and packs built from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeaug.builder.pipeline import build
from edgeaug.demo import make_dataset


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """4 classes x 6 images (JPEG and PNG), names with spaces."""
    return make_dataset(tmp_path_factory.mktemp("data") / "shapes", per_class=6, seed=3)


@pytest.fixture(scope="session")
def small_pack(shapes_dir, tmp_path_factory) -> Path:
    """An rpi4 pack: 3 variants + original, 25% val."""
    out = tmp_path_factory.mktemp("packs") / "small.lmdb"
    build(shapes_dir, out, "rpi4", variants=3, seed=11, workers=1, val=0.25)
    return out
