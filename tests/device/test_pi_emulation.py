"""Packs built here (x86_64) load byte-identically on emulated Raspberry Pi OS.

Debian bookworm's own python3.11 / numpy 1.24 / python3-lmdb 1.4 (what Pi OS
bookworm ships) run under qemu-user-static for arm64 and armhf (32-bit), from
the package folder (PYTHONPATH) and from the single bundled file.  Every
record's bytes are compared with this host's read.  The roots come from the
set-up step ``python3 scripts/pisandbox.py setup --install-qemu`` (``.ci/run``
runs it); when qemu or the roots are missing, or EDGEAUG_SKIP_PI=1, these
tests skip, naming that command.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeaug.builder.pipeline import build
from edgeaug.bundle import SOURCES, write_bundle
from edgeaug.device.format import HEADER_SIZE, record_key
from edgeaug.device.loader import Pack

REPO = Path(__file__).resolve().parents[2]
from scripts_under_test import load  # noqa: E402

pisandbox = load("pisandbox")

TARGETS = ("rpi4", "rpi-zero2w")
BITS = {"arm64": 64, "armhf": 32}

# Run by the host python and by the emulated one alike:
#   probe.py MODULE BACKEND PACK...   (MODULE edgeaug.loader or edgeaug_loader;
#                                      BACKEND auto, pure, or nolmdb = lmdb hidden)
# prints sha256 digests of every record (tensor, labels, params, ids), the shuffled
# batches of two epochs, and the device warnings, as JSON.
PROBE = r"""
import hashlib, importlib, json, platform, struct, sys
module, backend, packs = sys.argv[1], sys.argv[2], sys.argv[3:]
if backend == "nolmdb":
    sys.modules["lmdb"] = None  # as if python3-lmdb were not installed
    backend = "auto"
L = importlib.import_module(module)
import numpy as np

def h(*parts):
    d = hashlib.sha256()
    for p in parts:
        d.update(p if isinstance(p, bytes) else json.dumps(p, sort_keys=True).encode())
    return d.hexdigest()

out = {"machine": platform.machine(), "pointer": struct.calcsize("P"), "numpy": np.__version__,
       "edgeaug_loaded": sorted(m for m in sys.modules if m.split(".")[0] == "edgeaug"), "packs": {}}
for path in packs:
    r = out["packs"][path] = {}
    with L.Pack(path, "train", backend=backend) as p:
        r["backend"] = p.backend_name()
        r["records"] = []
        for i in range(p.records):
            rec = p.record_at(i)
            mask = b"" if rec["mask"] is None else rec["mask"].tobytes()
            r["records"].append(h(rec["x"].tobytes(), rec["boxes"].tobytes(), rec["keypoints"].tobytes(),
                                  mask, [rec[k] for k in ("label", "source", "variant", "split", "digest", "params")]))
        r["train"] = [h(p[i][0].tobytes(), p[i][1]) for i in range(len(p))]
        r["batches"] = [h(X.tobytes(), Y.astype("<i8").tobytes()) for e in (0, 1) for X, Y in p.batches(8, epoch=e)]
        mix = dict(mosaic=1.0, mixup=0.5, cutmix=0.5, hflip=0.5, shift=4, soft_labels=True)
        r["mixed"] = [h(X.tobytes(), Y.tobytes()) for e in (0, 1) for X, Y in p.batches(8, epoch=e, **mix)]
        r["mixed_labels"] = [  # the label path too (these records have no boxes: empty, but through numpy)
            h(X.tobytes(), [[lab["boxes"].tolist(), lab["keypoints"].tolist()] for lab in L])
            for X, _, L in p.batches(8, epoch=1, with_labels=True, **mix)
        ]
        r["reader"] = p.reader
        r["hybrid"] = [h(X.tobytes(), Y.astype("<i8").tobytes()) for X, Y in p.batches(8, epoch=1, hflip=0.5, shift=4)]
        r["record_online"] = h(p.record(3, epoch=1, hflip=1.0, shift=5)["x"].tobytes())
        r["verify"] = p.verify()
        r["warnings"] = p.device_warnings()
        real, platform.machine = platform.machine, lambda: "aarch64"  # what 32-bit Pi OS on a 64-bit kernel says
        r["warnings_on_aarch64_kernel"] = p.device_warnings()
        platform.machine = real
    with L.Pack(path, "val", backend=backend) as p:
        r["val"] = [h(p[i][0].tobytes(), p[i][1]) for i in range(len(p))]
    with L.Pack(path, "train", backend=backend, reader="pread") as p:  # the other batch reader
        r["batches_pread"] = [
            h(X.tobytes(), Y.astype("<i8").tobytes()) for e in (0, 1) for X, Y in p.batches(8, epoch=e)
        ]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def roots() -> dict:
    if os.environ.get("EDGEAUG_SKIP_PI") == "1":
        pytest.skip("EDGEAUG_SKIP_PI=1: emulated Pi tests skipped")
    try:  # never installs or builds anything: that is `scripts/pisandbox.py setup` (.ci/run runs it)
        return {arch: pisandbox.ready_root(arch) for arch in pisandbox.ARCHES}
    except pisandbox.PiSandboxUnavailable as exc:
        pytest.skip(f"emulated Pi sandbox unavailable: {exc}")


@pytest.fixture(scope="module")
def packs(shapes_dir, tmp_path_factory) -> dict:
    """One small pack per target, built on this host; 40 records each."""
    d = tmp_path_factory.mktemp("pi-packs")
    out = {}
    for t in TARGETS:
        out[t] = d / f"{t}.lmdb"
        build(shapes_dir, out[t], t, variants=1, seed=7, workers=1, val=0.25)
    return out


@pytest.fixture(scope="module")
def device_dir(tmp_path_factory) -> Path:
    """What one would copy to the device: the bundled loader and the probe, no edgeaug."""
    d = tmp_path_factory.mktemp("device")
    write_bundle(d / "edgeaug_loader.py")
    (d / "probe.py").write_text(PROBE)
    return d


@pytest.fixture(scope="module")
def host_read(packs, device_dir) -> dict:
    """The probe run by this host's python through the package loader."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run(
        [sys.executable, str(device_dir / "probe.py"), "edgeaug.loader", "auto", *map(str, packs.values())],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _json(proc) -> dict:
    assert proc.returncode == 0, f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _probe(arch: str, mode: str, backend: str, packs: dict, device_dir: Path) -> dict:
    paths = [str(p) for p in packs.values()]
    if mode == "package":  # the edgeaug folder on PYTHONPATH
        proc = pisandbox.run_python(
            arch, [str(device_dir / "probe.py"), "edgeaug.loader", backend, *paths], extra_path=[REPO]
        )
    else:  # only edgeaug_loader.py next to the script
        proc = pisandbox.run_python(arch, ["probe.py", "edgeaug_loader", backend, *paths], cwd=device_dir)
    return _json(proc)


def _expected_warnings(target: str, bits: int) -> list:
    want = 64 if target == "rpi4" else 32
    return [] if want == bits else [f"pack targets a {want}-bit OS but this process is {bits}-bit"]


@pytest.mark.parametrize("mode", ["package", "bundle"])
@pytest.mark.parametrize("arch", pisandbox.ARCHES)
def test_every_record_byte_identical_to_x86(roots, packs, device_dir, host_read, arch, mode):
    seen = _probe(arch, mode, "auto", packs, device_dir)
    assert seen["pointer"] * 8 == BITS[arch] and seen["numpy"].startswith("1.24."), seen
    if mode == "bundle":
        assert seen["edgeaug_loaded"] == []
    else:
        assert "edgeaug.loader" in seen["edgeaug_loaded"]
        device = {f"edgeaug.device.{name[:-3]}" for name in SOURCES}  # the modules the bundle holds
        assert set(seen["edgeaug_loaded"]) <= {"edgeaug", "edgeaug.loader", "edgeaug.device"} | device
    for target, path in packs.items():
        got, ref = seen["packs"][str(path)], host_read["packs"][str(path)]
        # 32-bit liblmdb cannot read the 64-bit file: the loader must pick the pure reader.
        assert got["backend"] == ("lmdb" if arch == "arm64" else "pure"), target
        assert len(set(ref["records"])) == 40 and len(got["train"]) + len(got["val"]) == 40
        for key in ("records", "train", "val", "batches", "mixed", "mixed_labels", "hybrid", "record_online"):
            assert got[key] == ref[key], f"{target} on {arch} ({mode}): {key} differ from the x86 read"
        # A small pack that fits in memory is mapped, 32-bit processes included; pread gives the same batches.
        assert got["reader"] == "mmap" and got["batches_pread"] == ref["batches"], target
        assert got["verify"] == []
        assert got["warnings"] == _expected_warnings(target, BITS[arch])
        # the word size comes from the pointer size, so an aarch64 kernel name changes nothing
        assert got["warnings_on_aarch64_kernel"] == _expected_warnings(target, BITS[arch])


@pytest.fixture(scope="module")
def compressed(shapes_dir, tmp_path_factory) -> dict:
    """Compressed twins of packs["rpi-zero2w"] (same inputs, seed and variants)."""
    pytest.importorskip("zstandard")
    d = tmp_path_factory.mktemp("pi-cpacks")
    out = {}
    for codec in ("zlib", "zstd"):
        out[codec] = d / f"rpi-zero2w-{codec}.lmdb"
        build(shapes_dir, out[codec], "rpi-zero2w", variants=1, seed=7, workers=1, val=0.25, compress=codec)
    return out


@pytest.mark.parametrize(("codec", "mode"), [("zlib", "bundle"), ("zstd", "package"), ("zstd", "bundle")])
@pytest.mark.parametrize("arch", pisandbox.ARCHES)
def test_compressed_pack_reads_like_the_raw_pack_on_x86(
    roots, packs, compressed, device_dir, host_read, arch, codec, mode
):
    # Pi OS's python3-zstandard (0.20) and zlib decode on armv7l and aarch64 exactly what x86 reads from the raw pack.
    path = compressed[codec]
    got = _probe(arch, mode, "auto", {"c": path}, device_dir)["packs"][str(path)]
    ref = host_read["packs"][str(packs["rpi-zero2w"])]
    assert got["backend"] == ("lmdb" if arch == "arm64" else "pure")
    for key in ("records", "train", "val", "batches", "hybrid", "record_online"):
        assert got[key] == ref[key], f"{codec} pack on {arch} ({mode}): {key} differ from the x86 read of the raw pack"
    assert got["reader"] == "mmap" and got["batches_pread"] == ref["batches"] and got["verify"] == []
    r = _loader_cli(arch, mode, ["verify", str(path)], device_dir)
    assert r.returncode == 0 and "40/40 records ok" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("arch", pisandbox.ARCHES)
def test_without_python3_lmdb_the_pure_reader_serves_identical_bytes(roots, packs, device_dir, host_read, arch):
    seen = _probe(arch, "package", "nolmdb", packs, device_dir)
    for path in map(str, packs.values()):
        assert seen["packs"][path]["backend"] == "pure"
        for key in ("records", "train", "val", "batches", "mixed", "mixed_labels"):
            assert seen["packs"][path][key] == host_read["packs"][path][key], key


def _loader_cli(arch: str, mode: str, args: list, device_dir: Path) -> subprocess.CompletedProcess:
    if mode == "package":
        return pisandbox.run_python(arch, ["-m", "edgeaug.loader", *args], extra_path=[REPO])
    return pisandbox.run_python(arch, ["edgeaug_loader.py", *args], cwd=device_dir)


@pytest.mark.parametrize("mode", ["package", "bundle"])
@pytest.mark.parametrize("arch", pisandbox.ARCHES)
@pytest.mark.parametrize("target", TARGETS)
def test_verify_on_device(roots, packs, device_dir, target, arch, mode):
    r = _loader_cli(arch, mode, ["verify", str(packs[target])], device_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "40/40 records ok" in r.stdout
    warn = _expected_warnings(target, BITS[arch])
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")] == [f"warning: {w}" for w in warn]


@pytest.mark.parametrize("mode", ["package", "bundle"])
@pytest.mark.parametrize("arch", pisandbox.ARCHES)
def test_tampered_pack_fails_verify_on_device(roots, packs, device_dir, tmp_path, arch, mode):
    bad = tmp_path / "tampered.lmdb"
    shutil.copyfile(packs["rpi-zero2w"], bad)
    with Pack(str(bad)) as p:
        value = bytes(p._db.get(record_key(6)))
    data = bytearray(bad.read_bytes())
    at = data.find(value)
    assert at >= 0 and data.find(value, at + 1) < 0
    data[at + HEADER_SIZE + 500] ^= 0x40  # one tensor bit, in the file itself
    bad.write_bytes(bytes(data))
    r = _loader_cli(arch, mode, ["verify", str(bad)], device_dir)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "record 6: digest mismatch (payload altered)" in r.stdout
    assert "39/40 records ok" in r.stdout


@pytest.mark.parametrize("arch", pisandbox.ARCHES)
def test_bench_and_forced_native_backend_on_device(roots, packs, device_dir, arch):
    r = _loader_cli(arch, "package", ["bench", str(packs["rpi4"]), "--seconds", "0.5"], device_dir)
    backend = "lmdb" if arch == "arm64" else "pure"
    assert r.returncode == 0 and f"{backend} backend" in r.stdout and "records/s" in r.stdout, r.stdout + r.stderr
    # Debian's python3-lmdb 1.4.0 takes every lmdb.open() argument the loader passes
    # (readonly, lock, readahead, max_readers, max_spare_txns) on arm64; on armhf
    # forcing it is a clear error, never a crash.
    r = _loader_cli(arch, "package", ["info", str(packs["rpi4"]), "--backend", "lmdb"], device_dir)
    if arch == "arm64":
        assert r.returncode == 0 and json.loads(r.stdout)["backend"] == "lmdb", r.stderr
    else:
        assert r.returncode == 2 and "not a readable LMDB pack" in r.stderr and "MDB_INVALID" in r.stderr
