"""The host's qemu-user-static for the Pi sandbox (scripts/pisandbox.py): finding or installing it, and running
the guest python3.11 of a root under it (``qemu-aarch64-static`` / ``qemu-arm-static`` with ``-L ROOT``).

Only ``ensure_qemu(install=True)`` (``pisandbox.py setup --install-qemu``) changes the host: it runs apt-get.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from pisandbox_base import _ARCH_INFO, ARCHES, PYTHON, SETUP, PiSandboxUnavailable, _check_arch, _is_root, _log, _tail

# --------------------------------------------------------------------------- qemu


def qemu_binary(arch: str) -> str | None:
    return shutil.which(_check_arch(arch)["qemu"])


def qemu_available(arch: str | None = None) -> bool:
    """True when the qemu-user-static binary for ``arch`` (default: all) is on PATH."""
    arches = ARCHES if arch is None else (arch,)
    return all(qemu_binary(a) for a in arches)


def ensure_qemu(install: bool = False, quiet: bool = True) -> None:
    """Make sure qemu-user-static is installed; ``install=True`` (``setup --install-qemu`` only) runs apt-get.

    Raises PiSandboxUnavailable with a human-readable reason otherwise.
    """
    if qemu_available():
        return
    missing = ", ".join(_ARCH_INFO[a]["qemu"] for a in ARCHES if not qemu_binary(a))
    if not install:
        raise PiSandboxUnavailable(
            f"{missing} not found: run `sudo {SETUP}` (installs Debian's qemu-user-static with apt-get)"
        )
    if not sys.platform.startswith("linux"):
        raise PiSandboxUnavailable(f"{missing} not found and this is not Linux")
    if not shutil.which("apt-get"):
        raise PiSandboxUnavailable(f"{missing} not found and there is no apt-get to install qemu-user-static")
    if not _is_root():
        raise PiSandboxUnavailable(
            f"{missing} not found; run 'apt-get install -y qemu-user-static' as root (we are not root)"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "qemu-user-static"]
    _log("installing qemu-user-static with apt-get", quiet)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        # Maybe the host's package lists are stale or missing: refresh once and retry.
        _log("apt-get install failed; running apt-get update and retrying", quiet)
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not qemu_available():
        raise PiSandboxUnavailable("could not install qemu-user-static:\n" + _tail(proc.stdout + proc.stderr))


# --------------------------------------------------------------------------- running


def _guest_env(
    extra_path: Iterable[Path | str] = (), env: Mapping[str, str] | None = None, write_bytecode: bool = False
) -> dict:
    """A minimal environment: nothing of the host's PYTHONPATH, virtualenv or QEMU_*."""
    out = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONNOUSERSITE": "1",
    }
    if not write_bytecode:
        # Keep both the root and host project dirs free of guest-written .pyc files.
        out["PYTHONDONTWRITEBYTECODE"] = "1"
    if os.environ.get("TMPDIR"):
        out["TMPDIR"] = os.environ["TMPDIR"]
    paths = [str(Path(p).resolve()) for p in extra_path]
    if paths:
        out["PYTHONPATH"] = os.pathsep.join(paths)
    if env:
        out.update(env)
    return out


def _command(arch: str, root: Path, args: Sequence[str]) -> list[str]:
    qemu = qemu_binary(arch)
    if not qemu:
        raise PiSandboxUnavailable(f"{_ARCH_INFO[arch]['qemu']} not found")
    return [qemu, "-L", str(root), str(root / PYTHON), *map(str, args)]


def _run_in(
    arch: str,
    root: Path,
    args: Sequence[str],
    *,
    cwd: Path | str | None = None,
    extra_path: Iterable[Path | str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
    write_bytecode: bool = False,
) -> subprocess.CompletedProcess:
    return subprocess.run(
        _command(arch, root, args),
        cwd=None if cwd is None else str(cwd),
        env=_guest_env(extra_path, env, write_bytecode),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
