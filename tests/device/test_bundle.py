"""The single-file device loader: how it is built, what it imports, and that it reads
packs byte-identically to the package loader from a folder without edgeaug."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeaug import bundle
from edgeaug.cli import app
from edgeaug.device.loader import Pack

REPO = Path(__file__).resolve().parents[2]

# Refuses any import of edgeaug, then reads every record of both splits and prints
# sha256 digests: tensor bytes + label per record, and the first shuffled epoch's batches.
PROBE = r"""
import hashlib, importlib.abc, json, sys
before = set(sys.modules)
class _NoEdgeaug(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "edgeaug":
            raise ImportError("edgeaug must not be imported by the bundle")
sys.meta_path.insert(0, _NoEdgeaug())
from edgeaug_loader import Pack
out = {}
for split in ("train", "val"):
    with Pack(sys.argv[1], split, backend=sys.argv[2]) as p:
        out[split] = [hashlib.sha256(p[i][0].tobytes() + b"|%d" % p[i][1]).hexdigest() for i in range(len(p))]
        out[split + "_batches"] = [hashlib.sha256(X.tobytes() + Y.tobytes()).hexdigest()
                                   for X, Y in p.batches(4, epoch=1)]
        out["backend"] = p.backend_name()
out["edgeaug_loaded"] = sorted(m for m in sys.modules if m.startswith("edgeaug") and m != "edgeaug_loader")
out["third_party"] = sorted({m.split(".")[0] for m in set(sys.modules) - before if not m.startswith("_")}
                            - set(sys.stdlib_module_names) - {"edgeaug_loader", "cython_runtime"})
out["module"] = Pack.__module__
print(json.dumps(out))
"""


def reference(path: Path) -> dict:
    """The same digests through the package loader, in this process."""
    out = {}
    for split in ("train", "val"):
        with Pack(str(path), split) as p:
            out[split] = [hashlib.sha256(p[i][0].tobytes() + b"|%d" % p[i][1]).hexdigest() for i in range(len(p))]
            out[split + "_batches"] = [
                hashlib.sha256(X.tobytes() + Y.tobytes()).hexdigest() for X, Y in p.batches(4, epoch=1)
            ]
    return out


def run_in(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """A fresh interpreter in ``folder`` with nothing of the repo on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run([sys.executable, *args], cwd=folder, capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def bundled(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("device")
    path = bundle.write_bundle(folder / "edgeaug_loader.py")
    (folder / "probe.py").write_text(PROBE)
    return path


def test_bundle_is_one_parseable_module_with_one_future_import(bundled):
    text = bundled.read_text()
    tree = ast.parse(text)
    assert isinstance(tree.body[0].value, ast.Constant)  # the bundle's docstring
    fut = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "__future__"]
    assert len(fut) == 1 and fut[0] is tree.body[1]
    assert "from . import" not in text and "from .format import" not in text
    assert text == bundle.bundle_text(), "the bundle must be deterministic"
    for name in bundle.SOURCES:  # every source module is there, in order
        assert f"# {'-' * 30} edgeaug/{name}\n" in text
    # the kept text is verbatim: e.g. every line of format.py after its imports
    fmt = (REPO / "edgeaug" / "device" / "format.py").read_text()
    assert fmt[fmt.index("FORMAT_VERSION = ") :] in text


def test_bundle_imports_only_stdlib_numpy_lmdb_and_never_execs(bundled):
    tree = ast.parse(bundled.read_text())
    top, lazy = set(), set()  # module-level imports; imports inside functions (optional packages)
    nested = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) for n in ast.walk(f)}
    for n in ast.walk(tree):
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            assert getattr(n, "level", 0) == 0, f"relative import left at line {n.lineno}"
            names = [a.name for a in n.names] if isinstance(n, ast.Import) else [n.module]
            (lazy if id(n) in nested else top).update(m.split(".")[0] for m in names)
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name):
            assert n.func.id not in ("exec", "eval", "compile", "__import__"), n.lineno
    std = set(sys.stdlib_module_names)
    assert top - std == {"numpy"}, top - std
    # lmdb, onnxruntime (bench --model) and the zstd codec (zstandard, or Python 3.14's compression.zstd)
    # only where used, so their absence is survivable
    assert "lmdb" in lazy and lazy - std <= {"lmdb", "onnxruntime", "zstandard", "compression"}, lazy - std


@pytest.mark.parametrize("backend", ["auto", "pure"])
def test_bundle_reads_pack_identically_from_a_folder_without_edgeaug(bundled, small_pack, backend):
    r = run_in(bundled.parent, "probe.py", str(small_pack), backend)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert seen.pop("edgeaug_loaded") == [] and seen.pop("module") == "edgeaug_loader"
    assert set(seen.pop("third_party")) <= {"numpy", "lmdb"}
    assert seen.pop("backend") == ("pure" if backend == "pure" else "lmdb")
    assert seen == reference(small_pack)
    assert len(seen["train"]) + len(seen["val"]) == 72 and len(seen["val"]) > 0


@pytest.mark.parametrize("codec", ["zlib", "zstd"])
def test_bundle_decodes_a_compressed_pack_like_the_raw_one(bundled, small_pack, shapes_dir, tmp_path, codec):
    # the bundle once left the codec modules out: every pack failed at open with a NameError
    if codec == "zstd":
        pytest.importorskip("zstandard")
    from edgeaug.builder.pipeline import build

    packed = tmp_path / f"{codec}.lmdb"
    build(shapes_dir, packed, "rpi4", variants=3, seed=11, workers=1, val=0.25, compress=codec)  # as small_pack
    for backend in ("auto", "pure"):
        r = run_in(bundled.parent, "probe.py", str(packed), backend)
        assert r.returncode == 0, r.stderr
        seen = json.loads(r.stdout)
        assert {k: seen[k] for k in ("train", "val", "train_batches", "val_batches")} == reference(small_pack)


def test_bundle_as_script_info_verify_bench(bundled, small_pack, tmp_path):
    r = run_in(bundled.parent, "edgeaug_loader.py", "verify", str(small_pack))
    assert r.returncode == 0 and "72/72 records ok" in r.stdout, r.stdout + r.stderr
    r = run_in(bundled.parent, "edgeaug_loader.py", "info", str(small_pack), "--backend", "pure")
    assert r.returncode == 0 and json.loads(r.stdout)["backend"] == "pure"
    r = run_in(bundled.parent, "edgeaug_loader.py", "bench", str(small_pack), "--seconds", "0.2")
    assert r.returncode == 0 and "records/s" in r.stdout and "lmdb backend" in r.stdout
    r = run_in(bundled.parent, "edgeaug_loader.py", "verify", str(tmp_path / "missing.lmdb"))
    assert r.returncode == 2 and "cannot open" in r.stderr


def test_bundle_verify_fails_on_a_tampered_pack(bundled, small_pack, tmp_path, flip_tensor_byte):
    bad = tmp_path / "bad.lmdb"
    shutil.copyfile(small_pack, bad)
    k = flip_tensor_byte(bad, 5)
    for backend in ("auto", "pure"):
        r = run_in(bundled.parent, "edgeaug_loader.py", "verify", str(bad), "--backend", backend)
        assert r.returncode == 1, r.stdout + r.stderr
        assert f"record {k}: digest mismatch (payload altered)" in r.stdout
        assert "71/72 records ok" in r.stdout


def test_sources_come_in_dependency_order_and_include_the_labels_modules():
    assert {"instances.py", "labels.py"} <= set(bundle.SOURCES)
    pos = {name: i for i, name in enumerate(bundle.SOURCES)}
    for name in bundle.SOURCES:
        tree = ast.parse((REPO / "edgeaug" / "device" / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                assert pos[node.module + ".py"] < pos[name], f"{name} imports {node.module} bundled after it"


RECORDS_PROBE = r"""
import hashlib, json, sys
from edgeaug_loader import Pack
with Pack(sys.argv[1]) as p:
    out = []
    for i in range(len(p)):
        for kw in ({}, {"epoch": 1, "hflip": 0.5, "shift": 3}):
            r = p.record(i, **kw)
            out.append([hashlib.sha256(r["instances"].tobytes() + r["boxes"].tobytes()).hexdigest(), r["mix"]])
print(json.dumps(out))
"""


def test_bundle_reads_instances_and_mix_like_the_package(bundled, shapes_dir, tiny_target, tmp_path):
    from packcraft import with_instances

    from edgeaug.builder.pipeline import build

    build(shapes_dir, tmp_path / "tiny.lmdb", tiny_target, variants=1, seed=5, workers=1, val=0.25)
    pack = with_instances(tmp_path / "tiny.lmdb", tmp_path / "inst.lmdb")
    (bundled.parent / "records_probe.py").write_text(RECORDS_PROBE)
    r = run_in(bundled.parent, "records_probe.py", str(pack))
    assert r.returncode == 0, r.stderr
    want = []
    with Pack(str(pack)) as p:
        for i in range(len(p)):
            for kw in ({}, {"epoch": 1, "hflip": 0.5, "shift": 3}):
                rec = p.record(i, **kw)
                digest = hashlib.sha256(rec["instances"].tobytes() + rec["boxes"].tobytes()).hexdigest()
                want.append([digest, [list(m) for m in rec["mix"]]])
    assert json.loads(r.stdout) == want and any(m for _, m in want)


def test_module_and_cli_entry_points(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "edgeaug.bundle", "-o", str(tmp_path / "a.py")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert r.returncode == 0 and "wrote" in r.stdout, r.stderr
    res = CliRunner().invoke(app, ["bundle-loader", "-o", str(tmp_path / "b.py")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "a.py").read_bytes() == (tmp_path / "b.py").read_bytes() == bundle.bundle_text().encode()


def _fake_package(tmp_path: Path, loader_text: str, extra: str = "") -> Path:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "format.py").write_text('"""f."""\nfrom __future__ import annotations\nA = 1\n' + extra)
    (pkg / "lmdbpure.py").write_text('"""p."""\nfrom __future__ import annotations\n__all__ = ["B"]\nB = 2\n')
    for name in set(bundle.SOURCES) - {"format.py", "lmdbpure.py", "loader.py"}:  # the others: empty here
        (pkg / name).write_text(f'"""{name}."""\nfrom __future__ import annotations\n')
    (pkg / "loader.py").write_text(loader_text)
    return pkg


def test_multiline_and_nested_marked_imports_are_dropped_whole(tmp_path):
    loader = (
        '"""l."""\nfrom __future__ import annotations\nimport sys\n'
        "from .format import (  # bundle: drop\n    A,\n)\n"
        "def f():\n    if True:\n        from . import lmdbpure  # bundle: drop\n"
        "    return A + sys.modules[__name__].B\n"
        "if __name__ == '__main__':\n    print(f())\n"
    )
    text = bundle.bundle_text(_fake_package(tmp_path, loader))
    assert "    A,\n)" not in text and "__all__" not in text
    assert "        pass  # bundle: import dropped\n" in text
    out = tmp_path / "one.py"
    out.write_text(text)
    r = subprocess.run([sys.executable, str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "3", r.stderr


def test_refuses_unmarked_relative_import_and_name_clashes(tmp_path):
    with pytest.raises(bundle.BundleError, match=r"loader.py:2: relative import not marked"):
        bundle.bundle_text(_fake_package(tmp_path, '"""l."""\nfrom .format import A\n'))
    shutil.rmtree(tmp_path / "pkg")
    with pytest.raises(bundle.BundleError, match=r"loader.py: top-level name 'A' also defined in format.py"):
        bundle.bundle_text(_fake_package(tmp_path, "A = 3\n"))
