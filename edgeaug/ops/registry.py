"""Every op by name: importing this module registers all op modules into :data:`OPS`.

The op modules import only :mod:`edgeaug.ops.base` (the pixel-op families also the
:class:`~edgeaug.ops.photometric.ToneOp` base and each other's small helpers); this is
the one module that imports them all.
"""

from __future__ import annotations

from edgeaug.ops import (  # noqa: F401  (registration)
    auto,
    blur,
    color,
    composite,
    distort,
    geometric,
    lens,
    multi,
    multi_paste,
    noise,
    onnx_model,
    photometric,
    reference,
    scene,
)
from edgeaug.ops.base import OPS, Op

__all__ = ["OPS", "Op"]
