"""What every part of the Pi sandbox (scripts/pisandbox.py) shares: the arches and packages, the error, the cache paths.

The roots hold Debian bookworm's python3, numpy, lmdb and zstandard for ``arm64`` and ``armhf``; a root lives in
``$EDGEAUG_PI_CACHE/<arch>/root`` or ``~/.cache/edgeaug/pi/<arch>/root``, beside its ``ready.json`` marker.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ARCHES = ("arm64", "armhf")

_ARCH_INFO = {
    "arm64": {"qemu": "qemu-aarch64-static", "triplet": "aarch64-linux-gnu", "bits": 64},
    "armhf": {"qemu": "qemu-arm-static", "triplet": "arm-linux-gnueabihf", "bits": 32},
}

SUITE = "bookworm"
COMPONENT = "main"
# python3-zstandard: zstd-compressed packs (Pi OS bookworm ships 0.20; zlib is in the stdlib).
PACKAGES = ("python3", "python3-numpy", "python3-lmdb", "python3-zstandard")
PYTHON = "usr/bin/python3.11"
# Bump whenever the way a root is assembled changes: old roots get rebuilt.
ROOT_FORMAT = 2

_DEFAULT_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
_MARKER = "ready.json"

_SMOKE = (
    "import json, platform, struct, sys, numpy, lmdb, zstandard\n"
    "print(json.dumps({'python': platform.python_version(), 'numpy': numpy.__version__,"
    " 'zstandard': zstandard.__version__,"
    " 'lmdb': lmdb.__version__, 'liblmdb': '.'.join(map(str, lmdb.version())),"
    " 'machine': platform.machine(), 'pointer_size': struct.calcsize('P'),"
    " 'byteorder': sys.byteorder, 'prefix': sys.prefix}))\n"
)


SETUP = "python3 scripts/pisandbox.py setup --install-qemu"  # the set-up command, as tests name it


class PiSandboxUnavailable(RuntimeError):
    """The emulated Pi sandbox cannot be provided on this host (reason in str())."""


# --------------------------------------------------------------------------- helpers


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"[pisandbox] {msg}", file=sys.stderr, flush=True)


def _check_arch(arch: str) -> dict:
    try:
        return _ARCH_INFO[arch]
    except KeyError:
        raise ValueError(f"unknown arch {arch!r}; expected one of {ARCHES}") from None


def cache_base(cache: Path | str | None = None) -> Path:
    """The directory holding one sub-directory per arch."""
    if cache is not None:
        return Path(cache).expanduser().resolve()
    env = os.environ.get("EDGEAUG_PI_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    return (Path.home() / ".cache" / "edgeaug" / "pi").resolve()


def root_dir(arch: str, cache: Path | str | None = None) -> Path:
    _check_arch(arch)
    return cache_base(cache) / arch / "root"


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join((text or "").strip().splitlines()[-lines:])


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0
