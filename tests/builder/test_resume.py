"""Crash-safe builds: SIGKILL at any point, rerun, and get the same bytes without redoing work.

Kill points run in forked children (cheap: no re-import), each hooked to
SIGKILL itself at one place: after the N-th chunk file, while rendering,
inside a transaction of the pack, before and after sealing, after the rename.
The rerun happens in this process and must give the uninterrupted build's
sha256 while rendering only the sources no chunk file had covered.  Kills of
the real CLI (with worker processes) at exact points run in a subprocess.
Chunks hold one source each here (``CHUNK_RECORDS = 1``): many kill points.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from chunked_build import chunked_sha, sha

import edgeaug.builder.chunks as chunks
import edgeaug.builder.merge as merge
import edgeaug.builder.workers as workers
import edgeaug.builder.writer as writer
from edgeaug.builder.partial import Partial, WriteError
from edgeaug.builder.pipeline import build
from edgeaug.builder.plan import BuildError, plan
from edgeaug.config.recipe import load_recipe
from edgeaug.demo import make_dataset
from edgeaug.sources.scan import scan

REPO = Path(__file__).resolve().parents[2]
ARGS = dict(target="rpi-zero2w", variants=2, seed=7, workers=1, val=0.25)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("resume") / "shapes", per_class=3, seed=5)


@pytest.fixture(scope="module")
def baseline(data, tmp_path_factory) -> str:
    """The uninterrupted build, one source per chunk (as the kill runs do)."""
    return chunked_sha(data, tmp_path_factory.mktemp("base") / "pack.lmdb", 1, **ARGS)


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(chunks, "CHUNK_RECORDS", 1)  # one source per chunk: many kill points


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _after_nth(obj, name: str, n: int, before: bool = False) -> None:
    """Make ``obj.name`` SIGKILL the process at its n-th call (before or after running it)."""
    real, calls = getattr(obj, name), [0]

    def hooked(*a, **k):
        calls[0] += 1
        if before and calls[0] == n:
            _die()
        out = real(*a, **k)
        if calls[0] == n:
            _die()
        return out

    setattr(obj, name, hooked)


def _hook_nth_put(n: int, on_nth_put) -> None:
    """Wrap ``lmdb.open`` so that the n-th put in a write transaction calls ``on_nth_put()``.

    Used in forked children and under monkeypatch; every other call passes through.
    """
    import lmdb

    real_open, puts = lmdb.open, [0]

    class Txn:
        def __init__(self, txn):
            self.txn = txn

        def __enter__(self):
            self.txn.__enter__()
            return self

        def __exit__(self, *exc):
            return self.txn.__exit__(*exc)

        def put(self, *a, **k):
            puts[0] += 1
            if puts[0] == n:
                on_nth_put()
            return self.txn.put(*a, **k)

        def delete(self, *a, **k):
            return self.txn.delete(*a, **k)

    class Env:
        def __init__(self, env):
            self.env = env

        def begin(self, write=False, **k):
            txn = self.env.begin(write=write, **k)
            return Txn(txn) if write else txn

        def __getattr__(self, name):
            return getattr(self.env, name)

    lmdb.open = lambda *a, **k: Env(real_open(*a, **k))


def _kill_inside_txn(n: int) -> None:
    """SIGKILL after the n-th put inside a write transaction (nothing of it is committed)."""
    _hook_nth_put(n, _die)


KILL_POINTS = (  # 12 sources, 28 records
    [("commit", n) for n in range(1, 13)]  # after the n-th chunk file
    + [("render", n) for n in range(1, 13, 2)]  # while rendering source n
    + [("txn", n) for n in range(1, 31, 3)]  # after the n-th put, transaction uncommitted
    + [("seal", 1), ("sealed", 1), ("replaced", 1)]  # during finishing
)


def _killed_build(data: Path, out: Path, point: str, n: int) -> int:
    """Run the build in a forked child that SIGKILLs itself at ``point``; return its wait status."""
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        try:
            chunks.CHUNK_RECORDS = 1
            if point == "commit":
                _after_nth(chunks, "write", n)
            elif point == "render":
                _after_nth(workers, "render_source", n, before=True)
            elif point == "txn":
                _kill_inside_txn(n)
            elif point == "seal":
                _after_nth(merge, "seal", n, before=True)
            elif point == "sealed":
                _after_nth(merge, "seal", n)
            elif point == "replaced":
                _after_nth(writer, "_fsync_dir", n, before=True)
            build(data, out, **ARGS)
        finally:
            os._exit(3)
    return os.waitpid(pid, 0)[1]


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


# The CLI with a kill hook: after the writer has taken N chunks (N from argv[1], 0 = never), the
# whole process group (main process, writer and workers) gets SIGKILL from inside, at an exact point
# of the build instead of after a random sleep.
CLI = """
import os, signal, sys
import edgeaug.builder.chunks as c
import edgeaug.builder.writer as w
c.CHUNK_RECORDS = 1
n, seen, add = int(sys.argv.pop(1)), [0], w.PackWriter.add
def add_then_die(self, *a, **k):
    add(self, *a, **k)
    seen[0] += 1
    if seen[0] == n:
        os.killpg(0, signal.SIGKILL)
w.PackWriter.add = add_then_die
from edgeaug.cli import app
sys.argv[0] = "edgeaug"
app()
"""


def _cli(data: Path, out: Path, workers: int, kill_after: int = 0) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO)
    cmd = [
        sys.executable,
        "-c",
        CLI,
        str(kill_after),
        "build",
        str(data),
        "-o",
        str(out),
        "-t",
        "rpi4",
        "-k",
        "3",
        "-s",
        "7",
        "--val",
        "0.25",
        "-w",
        str(workers),
        "-q",
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def test_kills_of_the_cli_with_workers_at_many_points(tmp_path, small_batches):
    """kill -9 of the whole process group (main + workers) at six points of a build, then resume."""
    data = make_dataset(tmp_path / "big", per_class=6, seed=9)
    base = tmp_path / "base.lmdb"
    build(data, base, "rpi4", variants=3, seed=7, workers=1, val=0.25)
    out = tmp_path / "pack.lmdb"
    # Each run resumes the previous one's partial build, then dies after 1, 2 or 3 more sources.
    for attempt, kill_after in enumerate((1, 2, 1, 3, 2, 1)):
        proc = _cli(data, out, workers=2 if attempt % 2 else 1, kill_after=kill_after)
        proc.wait(timeout=120)
        err = proc.stderr.read().decode()
        proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL, err
        assert not out.exists()  # never a half pack at the output path
        assert out.with_name(out.name + ".partial").exists()
    proc = _cli(data, out, workers=2)
    assert proc.wait(timeout=120) == 0
    proc.stderr.close()
    assert sha(out) == sha(base)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.lmdb", "big", "pack.lmdb"]


# --- disk or map full: a clean WriteError, the work kept, no pack at the output path ----------

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


def test_cli_resume_flags(data, baseline, tmp_path, small_batches, renders):
    from typer.testing import CliRunner

    from edgeaug.cli import app

    out = tmp_path / "pack.lmdb"
    argv = [
        "build",
        str(data),
        "-o",
        str(out),
        "-t",
        "rpi-zero2w",
        "-k",
        "2",
        "-s",
        "7",
        "--val",
        "0.25",
        "-w",
        "1",
        "-q",
    ]
    r = CliRunner().invoke(app, argv + ["--resume"])
    assert r.exit_code == 2 and "cannot resume" in r.output and "no partial build" in r.output
    _killed_build(data, out, "commit", 5)
    r = CliRunner().invoke(app, argv + ["--resume"])
    assert r.exit_code == 0 and "resumed an interrupted build: 5 sources" in r.output, r.output
    assert sha(out) == baseline and len(renders) == 12 - 5
    _killed_build(data, out, "commit", 5)
    r = CliRunner().invoke(app, argv + ["--no-resume"])
    assert r.exit_code == 0 and "resumed" not in r.output and sha(out) == baseline


@pytest.mark.parametrize("damage", ["truncate", "flip", "sidecar"])
def test_a_damaged_partial_build_is_rebuilt(data, baseline, tmp_path, small_batches, renders, damage):
    """A torn or corrupted chunk file is rendered again (only it); an unreadable plan.json starts over."""
    out = tmp_path / "pack.lmdb"
    _killed_build(data, out, "commit", 6)
    folder = tmp_path / "pack.lmdb.partial"
    victim = chunks.chunk_path(folder, 2)
    raw = bytearray(victim.read_bytes())
    if damage == "truncate":
        victim.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":  # a byte of its metadata
        raw[40] ^= 0xFF
        victim.write_bytes(bytes(raw))
    else:
        (folder / "plan.json").write_bytes(b"\x00garbage")
    res = build(data, out, **ARGS)
    assert sha(out) == baseline
    tasks = plan(scan(data), load_recipe().with_variants(2), 7, 0.25)
    if damage == "sidecar":
        assert res.resumed == 0 and len(renders) == 12
    else:
        assert renders == [tasks[2].index] + [t.index for t in tasks[6:]]
        assert any("partial build is damaged" in w for w in res.warnings)


def test_a_half_written_chunk_is_never_used(data, baseline, tmp_path, small_batches, renders):
    """A renderer killed while writing leaves only a temporary name: ignored, removed, rendered again."""
    out = tmp_path / "pack.lmdb"
    _killed_build(data, out, "commit", 4)
    folder = tmp_path / "pack.lmdb.partial"
    done = chunks.chunk_path(folder, 3)
    half = done.with_name(done.name + ".tmp-otherhost-123")
    half.write_bytes(done.read_bytes()[:1000])
    done.unlink()
    res = build(data, out, **ARGS)
    assert res.resumed == 3 and sha(out) == baseline and not folder.exists()


def _children(pid: int) -> list:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d))
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_killed_worker_is_a_clear_error_and_the_rerun_completes(tmp_path, small_batches, monkeypatch):
    """The OOM killer takes one worker process: BuildError, the partial kept, the rerun finishes it."""
    data = make_dataset(tmp_path / "big", per_class=8, seed=4)
    base = tmp_path / "base.lmdb"
    build(data, base, "rpi4", variants=3, seed=7, workers=1)
    out, errors = tmp_path / "pack.lmdb", []
    stale = {w for c in _children(os.getpid()) for w in _children(c)}  # other tests' pools
    add = writer.PackWriter.add

    def add_then_kill_a_worker(self, *a, **k):
        add(self, *a, **k)
        # The pool's workers are the forkserver's children (this process's grandchildren); the render
        # workers start before the writer process (which starts with the first merge): the lowest pid.
        workers = [w for c in _children(os.getpid()) for w in _children(c) if w not in stale]
        if workers and not errors:
            errors.append("killed")
            os.kill(min(workers), signal.SIGKILL)

    monkeypatch.setattr(writer.PackWriter, "add", add_then_kill_a_worker)
    with pytest.raises(BuildError) as e:
        build(data, out, "rpi4", variants=3, seed=7, workers=2)
    monkeypatch.setattr(writer.PackWriter, "add", add)
    errors = [f"BuildError: {e.value}"]
    assert errors and errors[0].startswith("BuildError: a worker process died while rendering"), errors
    assert "rerun to resume" in errors[0]
    assert not out.exists()
    build(data, out, "rpi4", variants=3, seed=7, workers=2)
    assert sha(out) == sha(base)


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
