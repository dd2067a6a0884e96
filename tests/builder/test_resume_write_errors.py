"""Disk or map full and other write errors: a clean WriteError, the work kept, no pack at the output path.

The rerun resumes from the kept chunks and gives the uninterrupted build's bytes.
"""

import os

import pytest
from chunked_build import chunked_sha, sha
from killed_build import ARGS
from killed_build import hook_nth_put as _hook_nth_put

import edgeaug.builder.writer as writer
from edgeaug.builder.partial import WriteError
from edgeaug.builder.pipeline import build

BIG = dict(target="rpi4", variants=2, seed=7, workers=1, val=0.25)  # 150 KB records


@pytest.fixture(scope="module")
def big_baseline(data, tmp_path_factory) -> str:
    return chunked_sha(data, tmp_path_factory.mktemp("bigbase") / "pack.lmdb", 1, **BIG)


def test_map_full_keeps_the_work_for_a_rerun(data, big_baseline, tmp_path, small_batches, renders):
    out = tmp_path / "pack.lmdb"
    with pytest.raises(WriteError, match=r"map full .* are kept in pack.lmdb.partial.*rerun"):
        build(data, out, max_map_size=1 << 20, **BIG)  # 1 MiB: a few sources fit
    assert not out.exists() and (tmp_path / "pack.lmdb.partial").exists()
    first = len(renders)
    res = build(data, out, **BIG)
    assert 0 < res.resumed < 12 and sha(out) == big_baseline
    assert len(renders) - first == 12 - res.resumed  # only the sources not yet rendered


def test_file_size_limit_efbig_is_a_clean_error(data, big_baseline, tmp_path, small_batches, renders):
    """A real write failure: RLIMIT_FSIZE makes LMDB's writes fail with EFBIG (Python ignores SIGXFSZ)."""
    import resource

    out = tmp_path / "pack.lmdb"
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))
            build(data, out, **BIG)
        except WriteError as e:
            code = 0 if "cannot write" in str(e) and "rerun" in str(e) else 2
        finally:
            os._exit(code)
    status = os.waitpid(pid, 0)[1]
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert not out.exists() and (tmp_path / "pack.lmdb.partial").exists()
    res = build(data, out, **BIG)
    assert 0 < res.resumed < 12 and sha(out) == big_baseline


def _enospc():
    import lmdb

    raise lmdb.Error("mdb_txn_commit: No space left on device")  # as liblmdb reports it


@pytest.mark.parametrize("n", [1, 9, 25, 30])  # 28 records, then index and manifest
def test_enospc_at_any_put_then_rerun(data, baseline, tmp_path, small_batches, renders, monkeypatch, n):
    import lmdb

    out, real = tmp_path / "pack.lmdb", lmdb.open
    monkeypatch.setattr(lmdb, "open", lmdb.open)  # restored after the test
    _hook_nth_put(n, _enospc)
    with pytest.raises(WriteError, match="No space left on device.*rerun the same command"):
        build(data, out, **ARGS)
    monkeypatch.setattr(lmdb, "open", real)
    assert not out.exists()
    first = len(renders)
    res = build(data, out, **ARGS)
    assert sha(out) == baseline and len(renders) - first == 12 - res.resumed


def test_disk_full_while_sealing(data, baseline, tmp_path, small_batches, renders, monkeypatch):
    """The pack's one fsync fails (ENOSPC): no pack, every chunk kept, the rerun only merges again."""
    import errno

    out, real = tmp_path / "pack.lmdb", os.fsync

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(WriteError, match="No space left on device.*kept in pack.lmdb.partial.*rerun"):
        build(data, out, **ARGS)
    monkeypatch.setattr(os, "fsync", real)
    assert not out.exists() and not (tmp_path / "pack.lmdb.tmp").exists()
    n = len(renders)
    res = build(data, out, **ARGS)
    assert res.resumed == 12 and len(renders) == n and sha(out) == baseline


def test_write_error_seen_only_by_the_background_flush(data, baseline, tmp_path, small_batches, renders, monkeypatch):
    """The pack is flushed to disk while later chunks merge; an I/O error only that flush saw still fails the build.

    (Linux reports a write-back error once per open file, so the sealing
    fsync on its own descriptor may find none: here it succeeds.)
    """
    import errno

    out, flushes, real = tmp_path / "pack.lmdb", [], os.fdatasync

    def failing(fd):
        flushes.append(fd)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(WriteError, match="Input/output error.*kept in pack.lmdb.partial.*rerun"):
        build(data, out, **ARGS)
    assert flushes, "the pack was flushed in the background while merging"
    monkeypatch.setattr(os, "fdatasync", real)
    assert not out.exists() and not (tmp_path / "pack.lmdb.tmp").exists()
    n = len(renders)
    res = build(data, out, **ARGS)
    assert res.resumed == 12 and len(renders) == n and sha(out) == baseline


def test_cli_reports_a_write_error_with_exit_code_2(data, tmp_path, monkeypatch, small_batches):
    from typer.testing import CliRunner

    from edgeaug.cli import app

    monkeypatch.setattr(writer, "MAX_MAP_SIZE", 1 << 20)
    r = CliRunner().invoke(
        app, ["build", str(data), "-o", str(tmp_path / "p.lmdb"), "-t", "rpi4", "-k", "2", "-w", "1", "-q"]
    )
    assert r.exit_code == 2 and "map full" in r.output and "rerun the same command" in r.output
    assert not (tmp_path / "p.lmdb").exists()


def test_flushed_pages_of_the_pack_leave_the_page_cache(data, baseline, tmp_path, small_batches, monkeypatch):
    """After each background flush and after the sealing fsync, the writer lets the kernel drop OUT.tmp's pages.

    The advice changes no byte of the pack; a file system that refuses it does not fail the build.
    """
    import errno

    out, advice = tmp_path / "pack.lmdb", []

    def advise(fd, offset, length, how):
        advice.append((os.path.basename(os.readlink(f"/proc/self/fd/{fd}")), offset, length, how))
        raise OSError(errno.ESPIPE, "Illegal seek")  # refused: the build goes on

    monkeypatch.setattr(os, "posix_fadvise", advise)
    build(data, out, **ARGS)
    assert sha(out) == baseline
    assert advice and all(a == ("pack.lmdb.tmp", 0, 0, os.POSIX_FADV_DONTNEED) for a in advice)
    assert len(advice) >= 2, "after a background flush and after the seal"
