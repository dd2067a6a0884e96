"""Builds beyond one process: shards, a Dask cluster, no orphans; and the output-path and no-source checks.

Every executor must write the local build's pack byte for byte.
"""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chunked_build import chunked_sha, sha

import edgeaug.builder.chunks as chunks
from edgeaug.builder.pipeline import build
from edgeaug.builder.plan import BuildError
from edgeaug.demo import make_dataset

REPO = Path(__file__).resolve().parents[2]
ARGS = dict(target="rpi-zero2w", variants=7, seed=3, val=0.25)  # 12 train x 8 + 4 val x 1: 4 chunks
CLI_ARGS = ["-t", "rpi-zero2w", "-k", "7", "-s", "3", "--val", "0.25", "-w", "1", "-q"]


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(chunks, "CHUNK_RECORDS", 32)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("scale") / "shapes", per_class=4, seed=2)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> str:
    """The local one-process build."""
    return chunked_sha(data, tmp_path_factory.mktemp("ref") / "pack.lmdb", 32, workers=1, **ARGS)


# The CLI with the test's chunk size; argv[1]: SIGKILL itself (the main process only) after the writer
# has taken that many chunks (0: never).
CLI = """
import os, signal, sys
import edgeaug.builder.chunks as c
import edgeaug.builder.writer as w
c.CHUNK_RECORDS = 32
n, seen, add = int(sys.argv.pop(1)), [0], w.PackWriter.add
def add_then_die(self, *a, **k):
    add(self, *a, **k)
    seen[0] += 1
    if seen[0] == n:
        os.kill(os.getpid(), signal.SIGKILL)
w.PackWriter.add = add_then_die
from edgeaug.cli import app
sys.argv[0] = "edgeaug"
app()
"""


def _cli(*argv, kill_after: int = 0, output=subprocess.PIPE) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-c", CLI, str(kill_after), "build", *map(str, argv)]
    return subprocess.Popen(cmd, env=env, stdout=output, stderr=output, start_new_session=True)


def _finish(proc: subprocess.Popen) -> tuple:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out.decode() + err.decode()


# --- shards --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3])
def test_concurrent_shards_then_seal_give_the_local_pack(data, reference, tmp_path, renders, n):
    out = tmp_path / "pack.lmdb"
    procs = [_cli(data, "-o", out, *CLI_ARGS, "--shard", f"{i}/{n}") for i in range(n)]  # all at once
    for i, p in enumerate(procs):
        rc, text = _finish(p)
        assert rc == 0, text
        assert f"rendered shard {i}/{n}" in text and "without --shard" in text
    assert not out.exists()  # shards never write the pack
    assert len(list((tmp_path / "pack.lmdb.partial").glob("chunk-*.bin"))) == 4
    res = build(data, out, workers=1, **ARGS)  # the same command without --shard: only seals
    assert renders == [] and res.resumed == 16
    assert sha(out) == reference
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pack.lmdb"]


def test_a_half_written_shard_is_never_used(data, reference, tmp_path, renders):
    out = tmp_path / "pack.lmdb"
    for i in range(3):
        build(data, out, shard=f"{i}/3", workers=1, **ARGS)
    folder = tmp_path / "pack.lmdb.partial"
    torn, gone = chunks.chunk_path(folder, 1), chunks.chunk_path(folder, 2)
    torn.write_bytes(torn.read_bytes()[:-100])  # e.g. a copy cut short on a shared folder
    gone.with_name(gone.name + ".tmp-nodeB-77").write_bytes(gone.read_bytes()[:5000])  # killed while writing
    gone.unlink()
    renders.clear()
    res = build(data, out, workers=1, **ARGS)
    assert sha(out) == reference
    assert res.resumed == 8 and len(renders) == 8  # chunks 1 and 2 rendered again, chunks 0 and 3 used
    assert any("partial build is damaged" in w for w in res.warnings)


def test_a_shard_resumes_its_own_chunks_only(data, reference, tmp_path, renders):
    out = tmp_path / "pack.lmdb"
    build(data, out, shard="1/3", workers=1, **ARGS)
    first = list(renders)
    res = build(data, out, shard="1/3", workers=1, **ARGS)
    assert res.resumed == len(first) == 4 and renders == first  # nothing rendered the second time
    assert (res.chunks_done, res.chunks_total) == (1, 4)
    build(data, out, workers=1, **ARGS)  # renders chunks 0, 2 and 3 itself
    assert sha(out) == reference and len(renders) == 16


def test_bad_shard_argument(data, tmp_path):
    for bad in ("3/3", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(BuildError, match="--shard"):
            build(data, tmp_path / "x.lmdb", shard=bad, **ARGS)
    assert list(tmp_path.iterdir()) == []


# --- Dask ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None, silence_logs=40
    ) as c:
        yield c


def test_dask_cluster_writes_the_local_pack(data, reference, tmp_path, cluster):
    out = tmp_path / "pack.lmdb"
    res = build(data, out, dask_scheduler=cluster.scheduler_address, **ARGS)
    assert sha(out) == reference and res.records == 12 * 8 + 4  # val sources: their original only


def test_dask_retries_the_chunks_of_a_lost_worker(data, reference, tmp_path, cluster, monkeypatch):
    """One worker process dies after the first chunk arrives; its chunks are rendered elsewhere."""
    from distributed import Client

    with Client(cluster.scheduler_address) as client:
        pids = client.run(os.getpid)  # {worker address: pid}
    real, killed = chunks.write, []

    def write_then_kill_a_worker(folder, k, parts):
        path = real(folder, k, parts)
        if not killed:
            killed.append(max(pids.values()))
            os.kill(killed[0], signal.SIGKILL)  # the nanny starts a new one
        return path

    monkeypatch.setattr(chunks, "write", write_then_kill_a_worker)
    out = tmp_path / "pack.lmdb"
    build(data, out, dask_scheduler=cluster.scheduler_address, **ARGS)
    assert killed and sha(out) == reference


def test_a_killed_dask_client_resumes(data, reference, tmp_path, cluster):
    out = tmp_path / "pack.lmdb"
    proc = _cli(data, "-o", out, *CLI_ARGS, "--dask-scheduler", cluster.scheduler_address, kill_after=1)
    rc, text = _finish(proc)
    assert rc == -signal.SIGKILL, text
    assert not out.exists() and list((tmp_path / "pack.lmdb.partial").glob("chunk-*.bin"))
    res = build(data, out, dask_scheduler=cluster.scheduler_address, **ARGS)
    assert res.resumed >= 4 and sha(out) == reference


# --- no orphans ----------------------------------------------------------------------------------


def _session(sid: int) -> list:
    """Processes (not zombies) of session ``sid`` (Linux /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                fields = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                out.append(int(d))
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_sigkill_of_the_cli_leaves_no_process(data, tmp_path):
    """kill -9 of the main process only: workers, writer, forkserver and resource tracker all exit."""
    big = make_dataset(tmp_path / "big", per_class=8, seed=4)
    out = tmp_path / "pack.lmdb"
    with open(tmp_path / "log", "wb") as log:  # not a pipe: a survivor holding it must not stall the test
        proc = _cli(big, "-o", out, "-t", "rpi4", "-k", "7", "-w", "2", "-q", kill_after=1, output=log)
        rc = proc.wait(timeout=300)  # also reaps the main process
    assert rc == -signal.SIGKILL, (tmp_path / "log").read_text()
    deadline = time.monotonic() + 60  # generous: the condition usually holds within a second
    while _session(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = _session(proc.pid)
    for pid in left:  # do not leave them to the next test
        os.kill(pid, signal.SIGKILL)
    assert left == []


# --- the output path and sources, checked before rendering ---------------------------------------


def test_output_naming_a_directory_fails_before_rendering(data, tmp_path, renders):
    from typer.testing import CliRunner

    from edgeaug.cli import app

    (tmp_path / "out").mkdir()
    r = CliRunner().invoke(app, ["build", str(data), "-o", str(tmp_path / "out"), "-t", "rpi4", "-w", "1", "-q"])
    assert r.exit_code == 2 and "is a directory" in r.output and "pack.lmdb" in r.output
    assert renders == [] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    (tmp_path / "file").write_text("x")
    r = CliRunner().invoke(app, ["build", str(data), "-o", str(tmp_path / "file" / "p.lmdb"), "-t", "rpi4", "-q"])
    assert r.exit_code == 2 and "is not a directory" in r.output and renders == []


def test_no_usable_source_exits_nonzero_and_says_why_for_each(tmp_path):
    from typer.testing import CliRunner

    from edgeaug.cli import app

    for cls, name, content in (("a", "x.jpg", b"not an image"), ("a", "y.png", b""), ("b", "z.jpg", b"\xff\xd8\xff")):
        (tmp_path / "src" / cls).mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / cls / name).write_bytes(content)
    out = tmp_path / "p.lmdb"
    r = CliRunner().invoke(app, ["build", str(tmp_path / "src"), "-o", str(out), "-t", "rpi4", "-w", "1", "-q"])
    assert r.exit_code == 2, r.output
    assert "no usable source" in r.output
    for rel, why in (("a/x.jpg", "not a decodable image"), ("a/y.png", "empty file"), ("b/z.jpg", "truncated")):
        assert any(rel in line and why in line for line in r.output.splitlines()), (rel, r.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no pack, no partial build


# --- masks are part of a source's content ---------------------------------------------------------


def _segmentation(root: Path) -> Path:
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    for i in range(6):
        img = rng.integers(0, 255, (48, 64, 3), np.uint8)
        mask = np.zeros((48, 64), np.uint8)
        mask[8 + i : 30, 10 : 40 + i] = 1 + i % 2
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "images" / f"{i}.png"), img)
        cv2.imwrite(str(root / "masks" / f"{i}.png"), mask)
    (root / "classes.txt").write_text("background\ncat\ndog\n")
    return root


def test_a_changed_mask_invalidates_the_partial_build(tmp_path, monkeypatch, renders):
    import cv2
    import numpy as np

    from edgeaug.device.loader import Pack

    monkeypatch.setattr(chunks, "CHUNK_RECORDS", 3)  # 2 chunks of 3 sources
    src = _segmentation(tmp_path / "seg")
    out, args = tmp_path / "p.lmdb", dict(target="rpi-zero2w", variants=2, seed=1, workers=1)
    build(src, out, shard="0/2", **args)  # chunk 0 rendered: an interrupted build
    mask = np.zeros((48, 64), np.uint8)
    mask[:5, :5] = 2
    cv2.imwrite(str(src / "masks" / "0.png"), mask)  # the image is unchanged, its mask not
    with pytest.raises(BuildError, match=r"0.png \(its mask\) changed since the interrupted build"):
        build(src, out, resume=True, **args)
    res = build(src, out, **args)
    assert res.resumed == 0 and any("its mask" in w for w in res.warnings)
    fresh = tmp_path / "fresh.lmdb"
    build(src, fresh, **args)
    assert sha(out) == sha(fresh)
    with Pack(str(out)) as p:
        digests = {s["path"]: s["mask_sha256"] for s in p.manifest["sources"]}
    assert digests["images/0.png"] == hashlib.sha256((src / "masks" / "0.png").read_bytes()).hexdigest()


def test_verify_source_notices_a_changed_mask(tmp_path):
    import cv2
    import numpy as np

    from edgeaug.verify import verify_pack as verify

    src = _segmentation(tmp_path / "seg")
    out = tmp_path / "p.lmdb"
    build(src, out, target="rpi-zero2w", variants=1, seed=1, workers=1)
    assert verify(str(out), src).ok
    mask = cv2.imread(str(src / "masks" / "1.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(src / "masks" / "1.png"), np.where(mask > 0, 0, 1).astype(np.uint8))
    rep = verify(str(out), src)
    assert not rep.ok and any("mask: content differs" in p for p in rep.source_problems)


def test_a_dask_worker_with_other_library_versions_is_refused(shapes_dir):
    """The pack would not be the local build's: the worker names what differs."""
    from edgeaug.builder.dask_exec import _render_on_worker
    from edgeaug.builder.plan import render_versions
    from edgeaug.config.recipe import load_recipe
    from edgeaug.config.targets import load_target

    client = render_versions()
    client[2] = "0.0.0"  # the client's OpenCV, as another machine might have it
    with pytest.raises(BuildError, match=r"Dask worker .*: OpenCV \S+ \(client 0\.0\.0\); install the same versions"):
        _render_on_worker(0, [], load_recipe(), load_target("rpi4"), 0, "0" * 64, client)


def test_shards_starting_together_agree_on_one_plan(tmp_path, monkeypatch):
    """A second shard that starts while the first writes the plan waits for it, then keeps it.

    (It used to reset the folder at the same moment and delete the first one's half-written plan.json.)
    """
    import fcntl
    import threading

    import edgeaug.builder.partial as partial

    out, plan = tmp_path / "pack.lmdb", "a" * 64
    first, second = partial.Partial(out, shared=True), partial.Partial(out, shared=True)
    inside, go, errors = threading.Event(), threading.Event(), []
    real = partial.canonical_json

    def paused(obj):  # the first shard stops halfway through writing its plan
        inside.set()
        assert go.wait(60)
        return real(obj)

    def start(part):
        try:
            part.start(plan)
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    monkeypatch.setattr(partial, "canonical_json", paused)
    a = threading.Thread(target=start, args=(first,))
    a.start()
    assert inside.wait(60)
    b = threading.Thread(target=start, args=(second,))
    b.start()
    fd = os.open(first.dir / "start.lock", os.O_RDWR)
    try:  # the first shard holds the start lock, so the second one waits
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    go.set()
    a.join(60)
    b.join(60)
    assert errors == [] and first.plan() == plan == second.plan()
    first.release()
    second.release()
