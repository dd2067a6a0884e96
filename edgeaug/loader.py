"""The device loader's public name: ``from edgeaug.loader import Pack`` and
``python -m edgeaug.loader info|verify|bench PACK``.

The code lives in :mod:`edgeaug.device` (numpy, lmdb and the standard library
only); this module re-exports it so user code and scripts keep one stable name.
"""

from __future__ import annotations

import sys

from edgeaug.device.loader import Pack, PackError, bench, bench_model, main  # noqa: F401

__all__ = ["Pack", "PackError", "bench", "bench_model", "main"]

if __name__ == "__main__":
    sys.exit(main())
