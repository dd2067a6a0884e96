"""Fixtures shared by the device tests."""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Callable

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


def _flip_tensor_byte(path: Path, r: int) -> int:
    """Flip one tensor byte of record ``r`` in the file itself (no LMDB rewrite); returns ``r``."""
    from edgeaug.device.format import HEADER_SIZE, record_key
    from edgeaug.device.loader import Pack

    with Pack(str(path)) as p:
        value = bytes(p._db.get(record_key(r)))
    data = bytearray(path.read_bytes())
    at = data.find(value)
    assert at >= 0 and data.find(value, at + 1) < 0, "record value not found once in the file"
    data[at + HEADER_SIZE + 1000] ^= 0x01
    path.write_bytes(bytes(data))
    return r


@pytest.fixture
def flip_tensor_byte() -> Callable[[Path, int], int]:
    """``flip_tensor_byte(path, r)``: damage record ``r``'s tensor in place, so only its digest check fails."""
    return _flip_tensor_byte


@pytest.fixture
def no_zstd(monkeypatch) -> None:
    """The zstd package cannot be imported (neither ``zstandard`` nor ``compression``), as on a Pi without it."""
    real = builtins.__import__

    def no_zstd_import(name, *args, **kw):
        if name in ("zstandard", "compression"):
            raise ImportError(name)
        return real(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_zstd_import)


@pytest.fixture(scope="session")
def packs(tmp_path_factory, shapes_dir, tiny_target):
    """The packs tests/device/test_untrusted_*.py damage and craft (built once for all of them).

    "big": 9 KB records (overflow pages), "tiny": ~0.5 KB records (inline in leaves), and compressed twins
    of "big" under their codec's name ("zlib", and "zstd" when zstandard is installed).
    """
    from edgeaug.builder.pipeline import build

    d = tmp_path_factory.mktemp("untrusted")
    big = d / "z2.lmdb"
    build(shapes_dir, big, "rpi-zero2w", variants=1, seed=3, workers=1, val=0.25)
    rows = []
    for i, f in enumerate(sorted(shapes_dir.rglob("*.png"))[:6]):
        rows.append(
            {
                "path": str(f.relative_to(shapes_dir)),
                "label": f.parent.name,
                "boxes": [[0, 10, 10, 60 + i, 50]],
                "keypoints": [[20, 30, 1], [40, 40, 1]],
            }
        )
    (shapes_dir / "tiny.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tiny = d / "tiny.lmdb"
    build(shapes_dir / "tiny.jsonl", tiny, tiny_target, variants=2, seed=3, workers=1, val=0.3)
    (shapes_dir / "tiny.jsonl").unlink()
    out = {"big": big, "tiny": tiny}
    # Compressed twins of "big" (the same records): the sweeps below damage their compressed tensors too.
    for codec in ("zlib", "zstd") if _has_zstd() else ("zlib",):
        out[codec] = d / f"z2-{codec}.lmdb"
        build(shapes_dir, out[codec], "rpi-zero2w", variants=1, seed=3, workers=1, val=0.25, compress=codec)
    return out


def _has_zstd() -> bool:
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return False
    return True
