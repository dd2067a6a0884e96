"""Crash-safe builds: SIGKILL at any point, rerun, and get the same bytes without redoing work.

Kill points run in forked children (cheap: no re-import), each hooked to
SIGKILL itself at one place: after the N-th chunk file, while rendering,
inside a transaction of the pack, before and after sealing, after the rename.
The rerun happens in this process and must give the uninterrupted build's
sha256 while rendering only the sources no chunk file had covered.
Chunks hold one source each here (``CHUNK_RECORDS = 1``): many kill points.
"""

import os
import signal

import pytest
from chunked_build import sha
from killed_build import ARGS
from killed_build import killed_build as _killed_build

from edgeaug.builder.partial import Partial, WriteError
from edgeaug.builder.pipeline import build
from edgeaug.builder.plan import BuildError, plan
from edgeaug.config.recipe import load_recipe
from edgeaug.sources.scan import scan

KILL_POINTS = (  # 12 sources, 28 records
    [("commit", n) for n in range(1, 13)]  # after the n-th chunk file
    + [("render", n) for n in range(1, 13, 2)]  # while rendering source n
    + [("txn", n) for n in range(1, 31, 3)]  # after the n-th put, transaction uncommitted
    + [("seal", 1), ("sealed", 1), ("replaced", 1)]  # during finishing
)


@pytest.mark.parametrize("point,n", KILL_POINTS, ids=[f"{p}{n}" for p, n in KILL_POINTS])
def test_sigkill_then_rerun_gives_the_same_bytes(data, baseline, tmp_path, small_batches, renders, point, n):
    out = tmp_path / "pack.lmdb"
    status = _killed_build(data, out, point, n)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    if point != "replaced":
        assert not out.exists()  # never a half pack at the output path
    res = build(data, out, **ARGS)
    assert sha(out) == baseline
    tasks = plan(scan(data), load_recipe().with_variants(2), 7, 0.25)
    assert renders == [t.index for t in tasks[res.resumed :]]  # finished sources are not redone
    if point == "commit":
        assert res.resumed == n
    if point in ("seal", "sealed", "replaced"):
        assert res.resumed == len(tasks) and renders == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pack.lmdb"]


def test_killed_twice_and_explicit_resume(data, baseline, tmp_path, small_batches, renders):
    out = tmp_path / "pack.lmdb"
    assert os.WTERMSIG(_killed_build(data, out, "commit", 3)) == signal.SIGKILL
    assert os.WTERMSIG(_killed_build(data, out, "commit", 4)) == signal.SIGKILL  # 4 more
    res = build(data, out, resume=True, **ARGS)
    assert res.resumed == 7 and sha(out) == baseline
    assert len(renders) == len(set(renders)) == 12 - 7


def test_changed_inputs_start_over(data, tmp_path, small_batches, renders):
    out = tmp_path / "pack.lmdb"
    _killed_build(data, out, "commit", 4)
    other = dict(ARGS, seed=8)
    with pytest.raises(WriteError, match="other sources, recipe"):
        build(data, out, resume=True, **other)  # --resume refuses to mix plans
    assert (tmp_path / "pack.lmdb.partial").exists()  # ...and leaves the partial alone
    res = build(data, out, **other)
    assert res.resumed == 0 and any("started over" in w for w in res.warnings)
    fresh = tmp_path / "fresh.lmdb"
    build(data, fresh, **other)
    assert sha(out) == sha(fresh)
    with pytest.raises(WriteError, match="no partial build"):
        build(data, tmp_path / "none.lmdb", resume=True, **ARGS)
    assert not list(tmp_path.glob("none.lmdb*"))


def test_a_source_edited_between_runs_is_not_mixed_in(data, tmp_path, small_batches, renders):
    import shutil

    src = tmp_path / "data"
    shutil.copytree(data, src)
    out = tmp_path / "pack.lmdb"
    _killed_build(src, out, "commit", 5)
    first = plan(scan(src), load_recipe().with_variants(2), 7, 0.25)[0].source.path
    first.write_bytes(sorted((src / "stripes").iterdir())[0].read_bytes())
    with pytest.raises(BuildError, match="changed since the interrupted build"):
        build(src, out, resume=True, **ARGS)
    res = build(src, out, **ARGS)
    assert res.resumed == 0 and "changed since" in res.warnings[0]
    fresh = tmp_path / "fresh.lmdb"
    build(src, fresh, **ARGS)
    assert sha(out) == sha(fresh)


def test_no_resume_starts_over_and_a_second_build_is_locked_out(data, baseline, tmp_path, small_batches, renders):
    out = tmp_path / "pack.lmdb"
    _killed_build(data, out, "commit", 6)
    w = Partial(out)  # holds the lock
    try:
        with pytest.raises(WriteError, match="another build is writing it"):
            build(data, out, **ARGS)
    finally:
        w.release()
    res = build(data, out, resume=False, **ARGS)
    assert res.resumed == 0 and len(renders) == 12 and sha(out) == baseline
