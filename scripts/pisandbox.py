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
import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, Mapping, Sequence

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


# --------------------------------------------------------------------------- apt


def _parse_one_line_sources(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        opts = {}
        m = re.match(r"^(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$", line)
        if not m:
            continue
        kind, optstr, uri, suite, comps = m.groups()
        for item in (optstr or "").split():
            if "=" in item:
                k, v = item.split("=", 1)
                opts[k.lower()] = v
        out.append(
            {
                "types": [kind],
                "uris": [uri],
                "suites": [suite],
                "components": comps.split(),
                "signed-by": opts.get("signed-by"),
                "enabled": True,
            }
        )
    return out


def _parse_deb822_sources(text: str) -> list[dict]:
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for raw in stanza.splitlines():
            if raw.startswith("#"):
                continue
            if raw[:1] in (" ", "\t") and key:
                fields[key] += "\n" + raw.strip()
                continue
            if ":" in raw:
                key, val = raw.split(":", 1)
                key = key.strip().lower()
                fields[key] = val.strip()
        if "uris" not in fields:
            continue
        signed = fields.get("signed-by", "").strip()
        out.append(
            {
                "types": fields.get("types", "").split(),
                "uris": fields.get("uris", "").split(),
                "suites": fields.get("suites", "").split(),
                "components": fields.get("components", "").split(),
                # An inline (multi-line) key is not a path; ignore it.
                "signed-by": signed if signed and "\n" not in signed else None,
                "enabled": fields.get("enabled", "yes").lower() not in ("no", "false", "0"),
            }
        )
    return out


def host_mirror() -> tuple[str, str | None]:
    """(mirror URI, keyring path or None) taken from the host's own apt sources.

    ``EDGEAUG_PI_MIRROR`` overrides the URI.  Prefers an entry for bookworm main;
    otherwise any Debian (non-security) entry with component main.
    """
    entries: list[dict] = []
    etc = Path("/etc/apt")
    main_list = etc / "sources.list"
    with contextlib.suppress(OSError):
        entries += _parse_one_line_sources(main_list.read_text(errors="replace"))
    parts = etc / "sources.list.d"
    for p in sorted(parts.glob("*")) if parts.is_dir() else []:
        with contextlib.suppress(OSError):
            if p.suffix == ".list":
                entries += _parse_one_line_sources(p.read_text(errors="replace"))
            elif p.suffix == ".sources":
                entries += _parse_deb822_sources(p.read_text(errors="replace"))
    entries = [
        e for e in entries if e["enabled"] and "deb" in e["types"] and COMPONENT in e["components"] and e["uris"]
    ]

    def is_debian(e: dict) -> bool:
        return any(re.search(r"/debian/?$", u) for u in e["uris"])

    chosen = None
    for pred in (
        lambda e: SUITE in e["suites"] and is_debian(e),
        lambda e: SUITE in e["suites"],
        lambda e: is_debian(e),
    ):
        chosen = next((e for e in entries if pred(e)), None)
        if chosen:
            break
    keyring = chosen["signed-by"] if chosen else None
    if keyring and not Path(keyring).is_file():
        keyring = None
    if keyring is None and _DEFAULT_KEYRING.is_file():
        keyring = str(_DEFAULT_KEYRING)
    override = os.environ.get("EDGEAUG_PI_MIRROR")
    if override:
        return override.rstrip("/"), keyring
    if chosen is None:
        raise PiSandboxUnavailable("found no Debian mirror in the host's apt sources; set EDGEAUG_PI_MIRROR")
    return chosen["uris"][0].rstrip("/"), keyring


def _write_apt_config(arch: str, aptdir: Path, mirror: str, keyring: str | None) -> Path:
    etc = aptdir / "etc" / "apt"
    for d in (
        etc / "apt.conf.d",
        etc / "preferences.d",
        etc / "sources.list.d",
        etc / "trusted.gpg.d",
        aptdir / "state" / "lists" / "partial",
        aptdir / "cache" / "archives" / "partial",
        aptdir / "log",
    ):
        d.mkdir(parents=True, exist_ok=True)
    status = aptdir / "state" / "status"
    status.write_text("")  # nothing installed: resolve everything down to libc6
    opts = [f"arch={arch}"]
    if keyring:
        opts.append(f"signed-by={keyring}")
    (etc / "sources.list").write_text(f"deb [{' '.join(opts)}] {mirror} {SUITE} {COMPONENT}\n")
    trustedparts = etc / "trusted.gpg.d" if keyring else Path("/etc/apt/trusted.gpg.d")

    def q(p: Path | str) -> str:
        return '"' + str(p).replace('"', "") + '"'

    lines = [
        f"Dir::Etc {q(etc)};",
        f"Dir::Etc::sourcelist {q(etc / 'sources.list')};",
        f"Dir::Etc::sourceparts {q(etc / 'sources.list.d')};",
        f"Dir::Etc::parts {q(etc / 'apt.conf.d')};",
        f"Dir::Etc::preferences {q(etc / 'preferences')};",
        f"Dir::Etc::preferencesparts {q(etc / 'preferences.d')};",
        f"Dir::Etc::trusted {q(etc / 'trusted.gpg')};",
        f"Dir::Etc::trustedparts {q(trustedparts)};",
        f"Dir::State {q(aptdir / 'state')};",
        f"Dir::State::status {q(status)};",
        f"Dir::Cache {q(aptdir / 'cache')};",
        f"Dir::Log {q(aptdir / 'log')};",
        f'APT::Architecture "{arch}";',
        f'APT::Architectures {{ "{arch}"; }};',
        'APT::Install-Recommends "false";',
        'APT::Install-Suggests "false";',
        'Acquire::Languages "none";',
        # Keep the cache small: compressed package lists, no on-disk binary caches.
        'Acquire::GzipIndexes "true";',
        'Dir::Cache::pkgcache "";',
        'Dir::Cache::srcpkgcache "";',
        'Debug::NoLocking "true";',
    ]
    if _is_root():
        # The private cache may sit under a 0700 home the _apt user cannot enter.
        lines.append('APT::Sandbox::User "root";')
    # Carry over a proxy the host's apt is configured with (env proxies pass anyway).
    for key in ("Acquire::http::Proxy", "Acquire::https::Proxy"):
        with contextlib.suppress(Exception):
            val = subprocess.run(
                ["apt-config", "dump", "--no-empty", "--format", "%v", key], capture_output=True, text=True, timeout=30
            ).stdout.strip()
            if val and "\n" not in val:
                lines.append(f'{key} "{val}";')
    conf = aptdir / "apt.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def _apt(conf: Path, args: Sequence[str], timeout: float = 1800) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        in ("PATH", "HOME", "TMPDIR", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
    }
    env.update(APT_CONFIG=str(conf), DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
    env.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    return subprocess.run(
        ["apt-get", "-q", *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=str(conf.parent)
    )


def _deb_filename(name: str, version: str, arch: str) -> str:
    # apt's archive naming: epoch colon quoted as %3a
    return f"{name}_{version.replace(':', '%3a')}_{arch}.deb"


def _resolve_and_download(arch: str, aptdir: Path, quiet: bool) -> list[Path]:
    """Run apt in the private state dir; return the exact .debs to unpack."""
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        raise PiSandboxUnavailable("apt-get and dpkg are needed to assemble the Pi roots")
    mirror, keyring = host_mirror()
    conf = _write_apt_config(arch, aptdir, mirror, keyring)
    _log(f"{arch}: apt-get update ({mirror} {SUITE} {COMPONENT})", quiet)
    upd = _apt(conf, ["update"])
    lists = list((aptdir / "state" / "lists").glob("*_Packages*"))
    if upd.returncode != 0 or re.search(r"^(E:|W: Failed to fetch)", upd.stdout + upd.stderr, re.M):
        if not lists:
            raise PiSandboxUnavailable(
                f"apt-get update for {arch} failed (no network?):\n" + _tail(upd.stdout + upd.stderr)
            )
        _log(f"{arch}: apt-get update failed, using the cached package lists", quiet)
    sim = _apt(conf, ["-s", "install", *PACKAGES])
    if sim.returncode != 0:
        raise PiSandboxUnavailable(f"apt cannot resolve {PACKAGES} for {arch}:\n" + _tail(sim.stdout + sim.stderr))
    wanted = []
    for m in re.finditer(r"^Inst (\S+) \((\S+) .*?\[(\S+)\]\)", sim.stdout, re.M):
        name, version, parch = m.groups()
        wanted.append(_deb_filename(name.split(":")[0], version, parch))
    if not wanted:
        raise PiSandboxUnavailable(f"apt resolved nothing for {arch}:\n" + _tail(sim.stdout))
    archives = aptdir / "cache" / "archives"
    if not all((archives / w).is_file() for w in wanted):
        _log(f"{arch}: downloading {len(wanted)} packages", quiet)
        dl = _apt(conf, ["-y", "--download-only", "install", *PACKAGES])
        if dl.returncode != 0:
            raise PiSandboxUnavailable(f"apt-get --download-only failed for {arch}:\n" + _tail(dl.stdout + dl.stderr))
    debs = [archives / w for w in wanted]
    missing = [d.name for d in debs if not d.is_file()]
    if missing:
        raise PiSandboxUnavailable(f"downloaded .debs not found for {arch}: {missing[:5]}")
    # Old versions left behind by earlier runs are of no further use.
    keep = set(wanted)
    for old in archives.glob("*.deb"):
        if old.name not in keep:
            with contextlib.suppress(OSError):
                old.unlink()
    return debs


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
