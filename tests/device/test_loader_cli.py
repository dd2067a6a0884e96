"""The device command line (``python -m edgeaug.loader`` and the bundled loader): help, splits, clear errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeaug import bundle
from edgeaug.builder.pipeline import build
from edgeaug.device import loader
from edgeaug.device.loader import Pack

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, code: str = "", cwd: Path = REPO, repo: bool = True) -> subprocess.CompletedProcess:
    """``python -m edgeaug.loader ARGS`` (or ``python -c CODE ARGS``) in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    if repo:
        env["PYTHONPATH"] = str(REPO)
    cmd = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "edgeaug.loader", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


@pytest.fixture(scope="module")
def train_only(shapes_dir, tiny_target, tmp_path_factory) -> Path:
    """A pack whose val split is empty (built with no val fraction)."""
    out = tmp_path_factory.mktemp("trainonly") / "train-only.lmdb"
    build(shapes_dir, out, tiny_target, variants=1, seed=2, workers=1, val=0.0)
    return out


def test_every_option_has_help():
    ap = loader._parser()
    bare = [a.dest for a in ap._actions if not a.help]
    assert bare == [], f"options without help: {bare}"
    r = run("--help")
    text = " ".join(r.stdout.split())  # argparse wraps lines
    assert r.returncode == 0 and "which split to read" in text and "needs the lmdb package" in text


@pytest.mark.parametrize("command", ["bench", "verify"])
def test_an_empty_split_is_a_clear_error_not_a_zero(train_only, command):
    with Pack(str(train_only), "val") as p:
        assert len(p) == 0
        n_train = p.info()["splits"]["train"]
    r = run(command, str(train_only), "--split", "val", "--seconds", "0.1")
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"split val of {train_only} has no records (train {n_train}, val 0)" in r.stderr
    assert "records/s" not in r.stdout and "records ok" not in r.stdout
    # The split that has records still works, and verify without --split checks the whole pack.
    r = run(command, str(train_only), "--seconds", "0.1")
    assert r.returncode == 0, r.stderr


def test_bench_function_refuses_an_empty_split(train_only):
    with Pack(str(train_only), "val") as p, pytest.raises(ValueError, match="split val of .* has no records"):
        loader.bench(p, seconds=0.01)


def test_verify_with_split_checks_only_that_split(small_pack, tmp_path, flip_tensor_byte):
    bad = tmp_path / "bad.lmdb"
    shutil.copyfile(small_pack, bad)
    with Pack(str(bad), "val") as p:
        n_val, first_val = len(p), p._start
        assert first_val > 0  # train records come first
    flip_tensor_byte(bad, 0)  # a train record
    r = run("verify", str(bad), "--split", "val")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{n_val}/{n_val} val records ok (of 72 in the pack;" in r.stdout
    r = run("verify", str(bad), "--split", "train")
    assert r.returncode == 1 and "record 0: digest mismatch" in r.stdout
    assert f"{71 - n_val}/{72 - n_val} train records ok" in r.stdout
    r = run("verify", str(bad))
    assert r.returncode == 1 and "71/72 records ok" in r.stdout
    with Pack(str(bad), "val") as p:
        assert p.verify(split_only=True) == [] and len(p.verify()) == 1
        assert p.verify(limit=3, split_only=True) == []


NO_LMDB = (
    "import runpy, sys\n"
    "sys.modules['lmdb'] = None  # as if the lmdb package were not installed\n"
    "target, sys.argv = sys.argv[1], sys.argv[1:]\n"
    "runpy.run_module(target, run_name='__main__') if target.startswith('edgeaug') "
    "else runpy.run_path(target, run_name='__main__')\n"
)


@pytest.mark.parametrize("where", ["package", "bundle"])
def test_backend_lmdb_without_lmdb_says_what_to_install(small_pack, tmp_path, where):
    if where == "bundle":
        target, cwd, repo = str(bundle.write_bundle(tmp_path / "edgeaug_loader.py")), tmp_path, False
    else:
        target, cwd, repo = "edgeaug.loader", REPO, True
    r = run(target, "info", str(small_pack), "--backend", "lmdb", code=NO_LMDB, cwd=cwd, repo=repo)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "backend 'lmdb' needs the lmdb package" in r.stderr and "pip install lmdb" in r.stderr
    assert "python3-lmdb" in r.stderr and "'pure' or 'auto'" in r.stderr
    r = run(target, "verify", str(small_pack), code=NO_LMDB, cwd=cwd, repo=repo)  # auto: the pure reader
    assert r.returncode == 0 and "72/72 records ok" in r.stdout, r.stderr
