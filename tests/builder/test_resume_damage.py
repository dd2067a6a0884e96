"""Damaged partial builds and dead workers: only the damaged chunk is rendered again, the rerun completes.

A torn or corrupted chunk file, a half-written one under a temporary name, a worker process killed
(as by the OOM killer) while rendering.
"""

import os
import signal
from pathlib import Path

import pytest
from chunked_build import sha
from killed_build import ARGS
from killed_build import killed_build as _killed_build

import edgeaug.builder.chunks as chunks
import edgeaug.builder.writer as writer
from edgeaug.builder.pipeline import build
from edgeaug.builder.plan import BuildError, plan
from edgeaug.config.recipe import load_recipe
from edgeaug.demo import make_dataset
from edgeaug.sources.scan import scan


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
