"""Tests of scripts/pisandbox.py: emulated Debian bookworm (Pi OS-equivalent) pythons.

The emulated tests need qemu-user-static plus the two roots, made by the
explicit set-up step ``python3 scripts/pisandbox.py setup --install-qemu``
(``.ci/run`` runs it); without them they skip, naming that command.  A test
never installs or builds anything.  Set EDGEAUG_SKIP_PI=1 to skip them outright.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
from scripts_under_test import load  # noqa: E402

pisandbox = load("pisandbox")
# The parts that hold the names the tests below patch (pisandbox.py re-exports them; a patch must reach the caller).
pisandbox_qemu, pisandbox_roots = load("pisandbox_qemu"), load("pisandbox_roots")

EXPECTED = {
    "arm64": {"pointer_size": 8, "machines": {"aarch64"}},
    # qemu-arm's default CPU reports armv7l; armv8l is what an ARMv8 core in
    # AArch32 mode would say.  (A real Pi running 32-bit Pi OS on a 64-bit
    # kernel says aarch64: only the pointer size is a reliable test.)
    "armhf": {"pointer_size": 4, "machines": {"armv7l", "armv8l"}},
}


@pytest.fixture(scope="module")
def roots() -> dict:
    if os.environ.get("EDGEAUG_SKIP_PI") == "1":
        pytest.skip("EDGEAUG_SKIP_PI=1: emulated Pi sandbox tests skipped")
    try:  # never installs or builds anything: that is `scripts/pisandbox.py setup` (.ci/run runs it)
        return {arch: pisandbox.ready_root(arch) for arch in pisandbox.ARCHES}
    except pisandbox.PiSandboxUnavailable as exc:
        pytest.skip(f"emulated Pi sandbox unavailable: {exc}")


def _last_json(proc) -> dict:
    assert proc.returncode == 0, f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------- no emulation needed


def test_parse_host_sources_formats():
    one = pisandbox._parse_one_line_sources(
        "# comment\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.invalid/debian bookworm main contrib\n"
        "deb-src http://mirror.invalid/debian bookworm main\n"
    )
    assert one[0]["uris"] == ["http://mirror.invalid/debian"]
    assert one[0]["suites"] == ["bookworm"] and "main" in one[0]["components"]
    assert one[0]["signed-by"] == "/k.gpg"
    assert one[1]["types"] == ["deb-src"]
    d822 = pisandbox._parse_deb822_sources(
        "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: http://other.invalid/x\nSuites: y\nComponents: main\nEnabled: no\n"
    )
    assert d822[0]["suites"] == ["bookworm", "bookworm-updates"]
    assert d822[0]["signed-by"].endswith("debian-archive-keyring.gpg")
    assert d822[1]["enabled"] is False


def test_guest_env_is_minimal(monkeypatch, tmp_path):
    monkeypatch.setenv("PYTHONPATH", "/host/leak")
    monkeypatch.setenv("VIRTUAL_ENV", "/host/venv")
    monkeypatch.setenv("QEMU_LD_PREFIX", "/wrong")
    env = pisandbox._guest_env([tmp_path])
    assert env["PYTHONPATH"] == str(tmp_path.resolve())
    assert "VIRTUAL_ENV" not in env and not any(k.startswith("QEMU_") for k in env)
    assert env["PYTHONNOUSERSITE"] == "1"


def test_unknown_arch_rejected():
    with pytest.raises(ValueError):
        pisandbox.root_dir("mips")


# --------------------------------------------------------------- emulated


@pytest.mark.parametrize("arch", pisandbox.ARCHES)
def test_root_runs_python_numpy_lmdb(roots, arch):
    proc = pisandbox.run_python(arch, ["-c", pisandbox._SMOKE])
    seen = _last_json(proc)
    assert seen["python"].startswith("3.11."), seen
    assert seen["numpy"].startswith("1.24"), seen
    assert seen["lmdb"].startswith("1.4"), seen
    assert seen["liblmdb"].startswith("0.9."), seen
    assert seen["pointer_size"] == EXPECTED[arch]["pointer_size"], seen
    assert seen["machine"] in EXPECTED[arch]["machines"], seen
    assert seen["byteorder"] == "little"
    # the interpreter really is the one inside the root, not the host's
    assert Path(seen["prefix"]) == roots[arch] / "usr"


@pytest.mark.parametrize("arch", pisandbox.ARCHES)
def test_numpy_linear_algebra_works(roots, arch):
    # needs the libblas.so.3 / liblapack.so.3 alternatives links
    code = (
        "import json, numpy as np\n"
        "a = np.arange(16, dtype=np.float64).reshape(4, 4) + np.eye(4) * 10\n"
        "x = np.linalg.solve(a, np.ones(4))\n"
        "print(json.dumps({'ok': bool(np.allclose(a @ x, 1.0)),"
        " 'intp': np.dtype(np.intp).itemsize}))\n"
    )
    seen = _last_json(pisandbox.run_python(arch, ["-c", code]))
    assert seen == {"ok": True, "intp": EXPECTED[arch]["pointer_size"]}


@pytest.mark.parametrize("arch", pisandbox.ARCHES)
def test_extra_path_and_dash_m_import_host_package(roots, arch, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/host/leak")
    monkeypatch.setenv("VIRTUAL_ENV", "/host/venv")
    pkg = tmp_path / "src" / "hostpkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("VALUE = 42\n")
    (pkg / "tool.py").write_text(
        "import json, os, struct, sys\n"
        "import hostpkg\n"
        "if __name__ == '__main__':\n"
        "    print(json.dumps({'argv': sys.argv[1:], 'value': hostpkg.VALUE,\n"
        "        'file': hostpkg.__file__, 'cwd': os.getcwd(), 'path': sys.path,\n"
        "        'venv': os.environ.get('VIRTUAL_ENV'), 'P': struct.calcsize('P')}))\n"
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    proc = pisandbox.run_python(
        arch, ["-m", "hostpkg.tool", "verify", "some pack.lmdb"], cwd=workdir, extra_path=[tmp_path / "src"]
    )
    seen = _last_json(proc)
    assert seen["argv"] == ["verify", "some pack.lmdb"]
    assert seen["value"] == 42
    assert Path(seen["file"]) == pkg / "__init__.py"
    assert Path(seen["cwd"]) == workdir
    assert "/host/leak" not in seen["path"] and seen["venv"] is None
    assert seen["P"] == EXPECTED[arch]["pointer_size"]
    assert not list(pkg.rglob("*.pyc")), "the guest must not write bytecode into host dirs"


@pytest.mark.parametrize("arch", pisandbox.ARCHES)
def test_x86_64_lmdb_file_across_arches(roots, arch, tmp_path):
    """py-lmdb files are not portable to 32-bit: why edgeaug needs its own reader."""
    lmdb = pytest.importorskip("lmdb")
    path = tmp_path / "x86.lmdb"
    items = {b"key-%03d" % i: bytes((i * 7 + j) % 256 for j in range(i * 13)) for i in range(40)}
    env = lmdb.open(str(path), subdir=False, map_size=1 << 22)
    with env.begin(write=True) as txn:
        for k, v in items.items():
            txn.put(k, v)
    env.close()
    expected = {k.decode(): v.hex() for k, v in items.items()}

    code = (
        "import json, sys, lmdb\n"
        "try:\n"
        "    env = lmdb.open(sys.argv[1], subdir=False, readonly=True, lock=False)\n"
        "except lmdb.Error as exc:\n"
        "    print(json.dumps({'error': type(exc).__name__, 'msg': str(exc)}))\n"
        "else:\n"
        "    with env.begin() as txn:\n"
        "        print(json.dumps({k.decode(): bytes(v).hex() for k, v in txn.cursor()}))\n"
    )
    seen = _last_json(pisandbox.run_python(arch, ["-c", code, str(path)]))
    if arch == "arm64":
        assert seen == expected
    else:
        # Known: LMDB's on-disk meta layout depends on the pointer size, so a
        # file written by 64-bit x86_64 is rejected by 32-bit armhf liblmdb.
        assert seen.get("error") == "InvalidError", seen
        assert "MDB_INVALID" in seen["msg"], seen


def test_warm_ensure_root_downloads_and_unpacks_nothing(roots, monkeypatch):
    def must_not_run(*a, **k):
        raise AssertionError("a warm root was rebuilt")

    for name in ("_resolve_and_download", "_locked", "ensure_qemu"):
        monkeypatch.setattr(pisandbox_roots, name, must_not_run)
    for arch in pisandbox.ARCHES:
        assert pisandbox.ensure_root(arch) == roots[arch]
    info = pisandbox.root_info("armhf")
    assert info and info["seen"]["pointer_size"] == 4


# --- the set-up step is the only place that changes the host (these run without qemu) -----------


@pytest.fixture
def no_qemu(monkeypatch):
    """qemu-user-static missing on a Debian host where we are root: every subprocess call recorded, none run."""
    calls = []

    def record(cmd, *a, **k):
        calls.append(list(cmd))
        return subprocess.CompletedProcess(cmd, 1, "", "refused by the test")

    monkeypatch.delenv("EDGEAUG_SKIP_PI", raising=False)
    monkeypatch.setattr(pisandbox_qemu, "qemu_binary", lambda arch: None)
    monkeypatch.setattr(pisandbox_qemu, "_is_root", lambda: True)
    monkeypatch.setattr(pisandbox.shutil, "which", lambda name: f"/usr/bin/{name}" if name == "apt-get" else None)
    monkeypatch.setattr(pisandbox.subprocess, "run", record)
    return calls


def test_tests_never_install_qemu_they_name_the_set_up_command(no_qemu, tmp_path):
    with pytest.raises(pisandbox.PiSandboxUnavailable, match=re.escape(pisandbox.SETUP)):
        pisandbox.ready_root("arm64", tmp_path)
    with pytest.raises(pisandbox.PiSandboxUnavailable, match="--install-qemu"):
        pisandbox.ensure_qemu()
    with pytest.raises(pisandbox.PiSandboxUnavailable, match="--install-qemu"):
        pisandbox.ensure_root("arm64", tmp_path)
    assert no_qemu == [] and list(tmp_path.iterdir()) == []


def test_only_setup_with_install_qemu_runs_apt_get(no_qemu, tmp_path, capsys):
    assert pisandbox.main(["--cache", str(tmp_path), "setup", "--arch", "arm64"]) == 3
    assert "--install-qemu" in capsys.readouterr().err and no_qemu == []
    assert pisandbox.main(["--cache", str(tmp_path), "setup", "--arch", "arm64", "--install-qemu"]) == 3
    assert no_qemu[0][:2] == ["apt-get", "install"] and "qemu-user-static" in no_qemu[0]
