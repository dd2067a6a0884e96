"""Resolving and downloading a Pi root's Debian packages (scripts/pisandbox.py), with a private apt state.

``apt-get update`` + ``apt-get --download-only install`` run with their own ``APT_CONFIG`` (own ``Dir::Etc``,
``Dir::State`` with an empty ``status``, ``Dir::Cache``, one architecture), so nothing of the host's apt state is
touched; the mirror and keyring are those of the host's own apt sources (``EDGEAUG_PI_MIRROR`` overrides the URI).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

from pisandbox_base import (
    _DEFAULT_KEYRING,
    COMPONENT,
    PACKAGES,
    SUITE,
    PiSandboxUnavailable,
    _is_root,
    _log,
    _tail,
)

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
