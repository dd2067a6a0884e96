"""Random LMDB contents for the tests of edgeaug.device.lmdbpure (tests/device/test_lmdbpure_*.py)."""

from __future__ import annotations

import random
from pathlib import Path

#: Names of the named sub-databases the test databases create (never used as keys of the main DB).
SUB_NAMES = (b"db_alpha", b"db_beta", b"db_gamma")


def random_value(rng: random.Random, profile: str, psize: int = 4096) -> bytes:
    """A value whose size exercises one region: inline, near the overflow cut, page-sized."""
    if profile == "tiny":
        n = rng.randint(0, 16)
    elif profile == "small":
        n = rng.choice([0, rng.randint(1, 300)])
    elif profile == "boundary":  # node max is ~2038 bytes for 4 KB pages
        n = rng.randint(1850, 2150)
    else:  # "mixed"
        n = rng.choice(
            [
                0,
                rng.randint(1, 100),
                rng.randint(1900, 2100),
                psize + rng.randint(-40, 40),
                2 * psize + rng.randint(-40, 40),
            ]
        )
    return rng.randbytes(n)


def random_key(rng: random.Random, kmax: int, avoid=()) -> bytes:
    """A random key of 1..``kmax`` bytes, none of ``avoid``."""
    while True:
        key = rng.randbytes(rng.randint(1, kmax))
        if key not in avoid:
            return key


def write_file(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path``; return the path as a string."""
    path.write_bytes(data)
    return str(path)
