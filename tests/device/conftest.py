"""Fixtures shared by the device tests."""

from __future__ import annotations

from pathlib import Path

import pytest

#: 8x8 gray uint8: records of ~0.5 KB, stored inside their LMDB leaf pages (not in overflow pages).
TINY_TARGET = """[device]
name = "tiny"
arch = "any"
word_size = 64
[input]
height = 8
width = 8
channels = 1
layout = "NHWC"
color = "GRAY"
dtype = "uint8"
scale = 0.00392156862745098
"""


@pytest.fixture(scope="session")
def tiny_target(tmp_path_factory) -> Path:
    """The path of a target profile with tiny records (see :data:`TINY_TARGET`)."""
    path = tmp_path_factory.mktemp("tinytarget") / "tiny.toml"
    path.write_text(TINY_TARGET)
    return path
