"""How a build stops: what it keeps and says, the output folder and lock it insists on, typed outcomes."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import edgeaug.builder.chunks as chunks
from edgeaug.builder.partial import WriteError
from edgeaug.builder.pipeline import NoUsableSource, SourceFailed, build
from edgeaug.builder.plan import BuildError
from edgeaug.builder.writer import PackWriter
from edgeaug.cli import app
from edgeaug.config.targets import load_target


@pytest.fixture
def broken(shapes_dir, tmp_path) -> Path:
    """The shapes set with one file that is not an image, in the middle of the plan."""
    src = tmp_path / "data"
    shutil.copytree(shapes_dir, src)
    (src / "circle" / "zz broken.png").write_bytes(b"not an image")
    return src


def test_on_error_fail_says_what_is_kept_and_how_to_go_on(broken, tmp_path, monkeypatch):
    monkeypatch.setattr(chunks, "CHUNK_RECORDS", 1)  # one source per chunk: several chunks kept
    out, part = tmp_path / "out.lmdb", tmp_path / "out.lmdb.partial"
    args = ["build", str(broken), "-o", str(out), "-t", "rpi4", "-k", "1", "-w", "1", "-q", "--on-error", "fail"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2, r.output
    kept = len(list(part.glob("chunk-*.bin")))
    assert kept > 1 and not out.exists()
    msg = " ".join(r.output.split())  # the terminal wraps long lines
    assert "zz broken.png" in msg and "--on-error fail" in msg
    assert f"kept {kept} rendered chunks in {part}" in msg
    assert "--on-error skip to resume" in msg and f"or delete {part}" in msg
    res = build(broken, out, "rpi4", variants=1, workers=1)  # what the message promises
    assert res.resumed > 0 and [s["path"] for s in res.skipped] == ["circle/zz broken.png"]


def test_outcomes_are_types_not_message_text(broken, tmp_path):
    with pytest.raises(SourceFailed) as e:
        build(broken, tmp_path / "a.lmdb", "rpi4", variants=1, workers=1, on_error="fail")
    assert isinstance(e.value, BuildError)
    bad = tmp_path / "bad" / "a"
    bad.mkdir(parents=True)
    (bad / "x.png").write_bytes(b"no usable source: not an image either")
    with pytest.raises(NoUsableSource, match="no usable source; no pack written"):
        build(bad.parent, tmp_path / "b.lmdb", "rpi4", variants=1, workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.lmdb.partial", "bad", "data"]


def test_a_missing_output_folder_is_refused_not_created(shapes_dir, tmp_path):
    out = tmp_path / "no" / "such" / "x.lmdb"
    r = CliRunner().invoke(app, ["build", str(shapes_dir), "-o", str(out), "-t", "rpi4", "-q"])
    assert r.exit_code == 2
    msg = " ".join(r.output.split())
    assert f"the folder {out.parent} does not exist" in msg and "mkdir -p" in msg
    assert not (tmp_path / "no").exists()
    with pytest.raises(BuildError, match=re.escape(str(out.parent))):
        build(shapes_dir, out, "rpi4")
    assert not (tmp_path / "no").exists()


def test_without_file_locks_the_build_is_refused_and_touches_nothing(shapes_dir, tmp_path, monkeypatch):
    out = tmp_path / "x.lmdb"
    other = tmp_path / "x.lmdb.tmp"  # another build's pack in progress
    other.write_bytes(b"another build's bytes")
    monkeypatch.setitem(sys.modules, "fcntl", None)  # `import fcntl` fails, as on a system without it
    with pytest.raises(WriteError, match="building needs file locks"):
        build(shapes_dir, out, "rpi4", variants=1, workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.lmdb.tmp"]
    assert other.read_bytes() == b"another build's bytes"


class _Interrupted:
    """A queued merge whose wait is interrupted by Ctrl-C."""

    def cancel(self) -> bool:
        return False

    def exception(self):
        raise KeyboardInterrupt


def test_abort_lets_ctrl_c_through_and_still_removes_the_temporary_pack(tmp_path):
    w = PackWriter(tmp_path / "p.lmdb", load_target("rpi4"), 1)
    w.tmp.write_bytes(b"half a pack")
    w.rows.append(_Interrupted())
    with pytest.raises(KeyboardInterrupt):
        w.abort()
    assert not w.tmp.exists()
