"""The ``edgeaug`` console script: standard library only, so a loader-only install can say what is missing.

``pip install edgeaug`` installs the device loader (numpy + lmdb) and this
command; the command itself needs the ``build`` extra (typer, rich, OpenCV...).
"""

from __future__ import annotations

import sys
from typing import Optional

#: Top-level modules of the ``build`` extra the command imports.
BUILD_EXTRA = ("typer", "click", "rich", "cv2", "yaml", "tomli", "tomli_w", "shellingham")


def main(argv: Optional[list] = None) -> int:
    """Run the typer app; without the build extra, one line saying how to install it (exit 1)."""
    try:
        from edgeaug.cli import app
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        if top not in BUILD_EXTRA:
            raise
        print(
            f"edgeaug: no module named {top!r}: the command needs more than the device loader: "
            "install the build extra: pip install 'edgeaug[build]'\n"
            "(the device loader alone needs no extra: python -m edgeaug.loader --help)",
            file=sys.stderr,
        )
        return 1
    return app(args=argv, prog_name="edgeaug")


if __name__ == "__main__":
    sys.exit(main())
