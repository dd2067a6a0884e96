"""Building and finding the Pi roots (scripts/pisandbox.py): unpack the resolved .debs, byte-compile, smoke-test.

Every .deb is unpacked with ``dpkg -x``; the ``libblas.so.3`` / ``liblapack.so.3`` links Debian's alternatives would
make are added, and an empty ``etc/ld.so.cache``.  The emulated python byte-compiles the root once, then a smoke test
records the versions seen inside in ``<cache>/<arch>/ready.json``; later calls see the marker and return at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from pisandbox_apt import _resolve_and_download
from pisandbox_base import (
    _ARCH_INFO,
    _MARKER,
    _SMOKE,
    PACKAGES,
    PYTHON,
    ROOT_FORMAT,
    SETUP,
    SUITE,
    PiSandboxUnavailable,
    _check_arch,
    _log,
    _tail,
    root_dir,
)
from pisandbox_qemu import _run_in, ensure_qemu, qemu_available

# --------------------------------------------------------------------------- root


def _post_process(arch: str, root: Path) -> None:
    triplet = _ARCH_INFO[arch]["triplet"]
    libdir = root / "usr" / "lib" / triplet
    # What update-alternatives would have done for libblas3 / liblapack3.
    for sub, lib in (("blas", "libblas.so.3"), ("lapack", "liblapack.so.3")):
        link = libdir / lib
        if (libdir / sub / lib).exists() and not link.exists() and not link.is_symlink():
            link.symlink_to(f"{sub}/{lib}")
    # Without it the guest's ld.so would open the host's /etc/ld.so.cache
    # (qemu -L falls back to host paths); an empty cache file is simply ignored.
    cache = root / "etc" / "ld.so.cache"
    cache.parent.mkdir(parents=True, exist_ok=True)
    if not cache.exists():
        cache.write_bytes(b"")


def _dir_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, f))
                total += st.st_blocks * 512 if hasattr(st, "st_blocks") else st.st_size
    return total


def _read_marker(marker: Path) -> dict | None:
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != ROOT_FORMAT:
        return None
    if list(data.get("packages", [])) != list(PACKAGES):
        return None
    return data


def root_info(arch: str, cache: Path | str | None = None) -> dict | None:
    """The marker data of a built root (versions seen inside, sizes, times), or None."""
    root = root_dir(arch, cache)
    data = _read_marker(root.parent / _MARKER)
    if data is None or not (root / PYTHON).is_file():
        return None
    return data


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ready_root(arch: str, cache: Path | str | None = None) -> Path:
    """The root for ``arch`` when qemu and a built root are there; never installs or builds (for tests).

    Raises PiSandboxUnavailable naming the set-up command otherwise.
    """
    if os.environ.get("EDGEAUG_SKIP_PI") == "1":
        raise PiSandboxUnavailable("EDGEAUG_SKIP_PI=1 is set")
    ensure_qemu(install=False)
    if root_info(arch, cache) is None:
        raise PiSandboxUnavailable(f"no {arch} root in {root_dir(arch, cache).parent}: run `{SETUP}` first")
    return root_dir(arch, cache)


def ensure_root(
    arch: str, cache: Path | str | None = None, quiet: bool = True, force: bool = False, install_qemu: bool = False
) -> Path:
    """Return the root dir for ``arch``, building it first unless a valid one is cached.

    Raises PiSandboxUnavailable when it cannot be built here (no qemu and no
    way to install it, no apt-get/dpkg, no network and nothing cached...).
    """
    _check_arch(arch)
    root = root_dir(arch, cache)
    adir = root.parent
    marker = adir / _MARKER
    if not force and root_info(arch, cache) is not None and qemu_available(arch):
        return root
    if os.environ.get("EDGEAUG_SKIP_PI") == "1":
        raise PiSandboxUnavailable("EDGEAUG_SKIP_PI=1 is set")
    ensure_qemu(install=install_qemu, quiet=quiet)
    with _locked(adir.parent / f".{arch}.lock"):
        if not force and root_info(arch, cache) is not None:
            return root  # built by someone else while we waited
        t0 = time.monotonic()
        with contextlib.suppress(FileNotFoundError):
            marker.unlink()
        debs = _resolve_and_download(arch, adir / "apt", quiet)
        t_dl = time.monotonic() - t0
        tmp = adir / "root.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _log(f"{arch}: unpacking {len(debs)} packages", quiet)
        for deb in debs:
            proc = subprocess.run(["dpkg", "-x", str(deb), str(tmp)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"dpkg -x {deb.name} failed: {_tail(proc.stderr)}")
        _post_process(arch, tmp)
        # Byte-compile as Debian's postinst (py3compile) would; keeps later runs fast.
        _log(f"{arch}: byte-compiling under emulation", quiet)
        comp = _run_in(
            arch,
            tmp,
            [
                "-m",
                "compileall",
                "-q",
                "-j0",
                str(tmp / "usr/lib/python3.11"),
                str(tmp / "usr/lib/python3/dist-packages"),
            ],
            write_bytecode=True,
            timeout=1800,
        )
        if comp.returncode != 0:
            _log(f"{arch}: compileall reported problems (ignored):\n{_tail(comp.stdout + comp.stderr, 5)}", quiet)
        smoke = _run_in(arch, tmp, ["-c", _SMOKE], timeout=600)
        if smoke.returncode != 0:
            raise RuntimeError(f"{arch} root does not run python/numpy/lmdb:\n" + _tail(smoke.stdout + smoke.stderr))
        seen = json.loads(smoke.stdout.strip().splitlines()[-1])
        seen.pop("prefix", None)
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
        info = {
            "format": ROOT_FORMAT,
            "arch": arch,
            "suite": SUITE,
            "packages": list(PACKAGES),
            "debs": [d.name for d in debs],
            "seen": seen,
            "download_seconds": round(t_dl, 1),
            "build_seconds": round(time.monotonic() - t0, 1),
            "root_bytes": _dir_size(root),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        tmpm = marker.with_suffix(".tmp")
        tmpm.write_text(json.dumps(info, indent=1) + "\n")
        tmpm.replace(marker)
        _log(f"{arch}: ready in {info['build_seconds']}s, {info['root_bytes'] / 2**20:.0f} MiB: {seen}", quiet)
        return root
