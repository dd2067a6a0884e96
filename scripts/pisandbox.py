#!/usr/bin/env python3
"""Emulated Raspberry Pi OS (bookworm) Python sandboxes, without Docker or chroot.

Assembles Debian *bookworm* user spaces for ``arm64`` and ``armhf`` -- the same
python3 3.11 / python3-numpy 1.24.2 / python3-lmdb 1.4.0 (liblmdb 0.9.24) / python3-zstandard 0.20 that
Raspberry Pi OS bookworm ships -- from Debian's own packages, and runs the
emulated python3.11 in them with qemu-user-static (``qemu-aarch64-static`` /
``qemu-arm-static`` with ``-L ROOT``).

How a root is built (stdlib only, nothing on the host's apt state is touched):

* ``apt-get update`` + ``apt-get --download-only install python3 python3-numpy
  python3-lmdb python3-zstandard`` run with a private ``APT_CONFIG``: its own ``Dir::Etc`` (a
  sources.list naming bookworm main for that one architecture, empty
  apt.conf.d so the host's hooks do not run), ``Dir::State`` with an empty
  ``status`` file (so every dependency down to libc6 is resolved),
  ``Dir::Cache`` (the downloaded .debs stay cached there), ``APT::Architecture``
  and ``APT::Architectures``.  The mirror and keyring are the ones the host's
  own apt sources use (override with ``EDGEAUG_PI_MIRROR``).
* every resolved .deb is unpacked with ``dpkg -x`` into the root; the
  ``libblas.so.3`` / ``liblapack.so.3`` links that Debian's alternatives would
  have made are created (relative) in ``usr/lib/<triplet>/``; an empty
  ``etc/ld.so.cache`` keeps the guest's dynamic loader away from the host's.
* the emulated python byte-compiles the root once (as Debian's postinst
  would), then a smoke test records the versions in a marker file
  ``<cache>/<arch>/ready.json``; later calls see the marker and return at once.

Cache: ``$EDGEAUG_PI_CACHE/<arch>`` or ``~/.cache/edgeaug/pi/<arch>``.

Set-up is explicit: only ``setup --install-qemu`` installs a system package
(qemu-user-static, with apt-get, as root); ``setup`` builds the roots into
the cache.  ``.ci/run`` runs it before the tests.  Tests never install or
build anything: :func:`ready_root` gives a root that is ready, or raises
:class:`PiSandboxUnavailable` naming the set-up command (a skip).

CLI::

    sudo python3 scripts/pisandbox.py setup --install-qemu   # once per machine: apt-get install qemu-user-static
    python scripts/pisandbox.py setup [--arch arm64|armhf|all] [--force] [--install-qemu]
    python scripts/pisandbox.py run --arch armhf [--path DIR] -- -c "import numpy"
    python scripts/pisandbox.py check [--arch all]     # print versions seen inside
    python scripts/pisandbox.py clean [--arch all]

Module API: ``ARCHES``, ``qemu_available()``, ``ensure_qemu()``,
``ensure_root()``, ``ready_root()``, ``run_python()``, ``python_command()``, and
``PiSandboxUnavailable`` (raised when the sandbox cannot be had on this host:
tests turn it into a skip).

Caveats worth knowing when reading results:

* ``sys.executable`` inside is the *host* path of the guest binary
  (``ROOT/usr/bin/python3.11``); the host kernel cannot exec it (no binfmt), so
  code under test must not spawn ``sys.executable`` subprocesses.
* ``platform.machine()`` reports what qemu emulates (``aarch64`` / ``armv7l``);
  a real 32-bit Pi OS on a 64-bit kernel reports ``aarch64`` with 4-byte
  pointers, so decide on ``struct.calcsize("P")``, never on the machine name.
* qemu-user does not fault on unaligned accesses the way some real ARM cores
  can; alignment bugs are not guaranteed to show up here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, Mapping, Sequence

# The parts, by concern (scripts/ is sys.path[0] when this runs as a script; tests put it on sys.path).
# Their names are re-exported: callers use pisandbox.NAME.
from pisandbox_apt import _parse_deb822_sources, _parse_one_line_sources, host_mirror  # noqa: F401
from pisandbox_base import (  # noqa: F401
    _ARCH_INFO,
    _SMOKE,
    ARCHES,
    COMPONENT,
    PACKAGES,
    PYTHON,
    ROOT_FORMAT,
    SETUP,
    SUITE,
    PiSandboxUnavailable,
    _is_root,
    _tail,
    cache_base,
    root_dir,
)
from pisandbox_qemu import _command, _guest_env, _run_in, ensure_qemu, qemu_available, qemu_binary  # noqa: F401
from pisandbox_roots import ensure_root, ready_root, root_info  # noqa: F401

# --------------------------------------------------------------------------- running


def python_command(
    arch: str,
    args: Sequence[str],
    extra_path: Iterable[Path | str] = (),
    env: Mapping[str, str] | None = None,
    cache: Path | str | None = None,
) -> tuple[list[str], dict]:
    """(argv, env) that run the emulated python3.11 with ``args`` (root built if needed)."""
    root = ensure_root(arch, cache)
    return _command(arch, root, args), _guest_env(extra_path, env)


def run_python(
    arch: str,
    args: list[str],
    cwd: Path | None = None,
    extra_path: Sequence[Path] = (),
    timeout: float = 600,
    *,
    env: Mapping[str, str] | None = None,
    cache: Path | str | None = None,
    check: bool = False,
) -> subprocess.CompletedProcess:
    """Run Debian bookworm's python3.11 for ``arch`` under qemu; capture text output.

    ``extra_path`` dirs (host paths) go on PYTHONPATH, so e.g.
    ``run_python("armhf", ["-m", "edgeaug.loader", ...], extra_path=[repo_root])``
    imports the package from the host checkout.  ``env`` adds variables to the
    otherwise minimal environment.
    """
    root = ensure_root(arch, cache)
    proc = _run_in(arch, root, args, cwd=cwd, extra_path=extra_path, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout, proc.stderr)
    return proc


# --------------------------------------------------------------------------- CLI


def _arches(value: str) -> tuple[str, ...]:
    return ARCHES if value == "all" else (value,)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--cache", type=Path, default=None, help="cache base dir (default: $EDGEAUG_PI_CACHE or ~/.cache/edgeaug/pi)"
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("setup", help="build the roots (and, with --install-qemu, install qemu-user-static)")
    p.add_argument("--arch", choices=(*ARCHES, "all"), default="all")
    p.add_argument("--force", action="store_true", help="rebuild even if a root is cached")
    p.add_argument(
        "--install-qemu",
        action="store_true",
        help="install Debian's qemu-user-static with apt-get when it is missing (needs root; changes the host)",
    )
    p = sub.add_parser("run", help="run the emulated python: run --arch A -- ARGS...")
    p.add_argument("--arch", choices=ARCHES, required=True)
    p.add_argument("--path", action="append", default=[], type=Path, help="host dir to put on PYTHONPATH (repeatable)")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p = sub.add_parser("check", help="print the versions seen inside each root")
    p.add_argument("--arch", choices=(*ARCHES, "all"), default="all")
    p = sub.add_parser("clean", help="delete the cached roots and .debs")
    p.add_argument("--arch", choices=(*ARCHES, "all"), default="all")
    ns = ap.parse_args(argv)

    try:
        if ns.cmd == "setup":
            for arch in _arches(ns.arch):
                t0 = time.monotonic()
                root = ensure_root(arch, ns.cache, quiet=False, force=ns.force, install_qemu=ns.install_qemu)
                info = root_info(arch, ns.cache) or {}
                print(
                    f"{arch}: {root} ({time.monotonic() - t0:.1f}s; "
                    f"{info.get('root_bytes', 0) / 2**20:.0f} MiB) {json.dumps(info.get('seen'))}"
                )
            return 0
        if ns.cmd == "run":
            args = list(ns.args)
            if args[:1] == ["--"]:
                args = args[1:]
            root = ensure_root(ns.arch, ns.cache, quiet=False)
            cmd = _command(ns.arch, root, args)
            return subprocess.run(cmd, env=_guest_env(ns.path)).returncode
        if ns.cmd == "check":
            rc = 0
            for arch in _arches(ns.arch):
                root = ensure_root(arch, ns.cache, quiet=False)
                proc = _run_in(arch, root, ["-c", _SMOKE])
                print(f"{arch}: {proc.stdout.strip() or _tail(proc.stderr)}")
                rc |= proc.returncode
            return rc
        if ns.cmd == "clean":
            for arch in _arches(ns.arch):
                d = cache_base(ns.cache) / arch
                shutil.rmtree(d, ignore_errors=True)
                print(f"removed {d}")
            return 0
    except PiSandboxUnavailable as exc:
        print(f"pisandbox: unavailable: {exc}", file=sys.stderr)
        return 3
    return 2


if __name__ == "__main__":
    sys.exit(main())
