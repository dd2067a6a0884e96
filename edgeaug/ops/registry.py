"""Every op by name: importing this module registers all op modules into :data:`OPS`.

The op modules import only :mod:`edgeaug.ops.base`; this is the one module that imports them all.
"""

from __future__ import annotations

from edgeaug.ops import composite, distort, geometric, lens, onnx_model, photometric  # noqa: F401  (registration)
from edgeaug.ops.base import OPS, Op

__all__ = ["OPS", "Op"]
