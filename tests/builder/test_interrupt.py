"""Ctrl-C stops a build with worker processes: exit 130 within seconds, every time, no process left.

SIGINT goes to the whole process group (main process, workers, writer), as a
terminal sends it, from an exact point of the build (:mod:`sigint_hook`): in
the main process while the pool starts its processes, submits work or hands
chunks to the writer; in a worker while it starts, renders or writes a chunk;
in the writer while it merges or seals.  The build used to hang for good when
Ctrl-C came while the pool was starting a process (its idle workers were
never stopped, and the interpreter's exit joins every child).  Each
interrupted build then resumes to the uninterrupted build's bytes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chunked_build import sha
from killed_build import ARGS  # the build the resume tests kill; ``data`` and ``baseline`` come from conftest.py

import edgeaug.builder.chunks as chunks
from edgeaug.builder.pipeline import build

REPO = Path(__file__).resolve().parents[2]
POINTS = [
    "spawn:1",  # the first worker process is set up, the pool's manager thread not started
    "spawn:2",
    "spawn:3",  # the writer process
    "submit:1",
    "submit:6",
    "add:1",
    "add:5",
    "init:1",  # a worker that does not ignore SIGINT yet
    "render:2",
    "write:1",
    "write:3",
    "merge_chunk:1",
    "merge_chunk:4",
    "seal:1",
]
CLI = """
import multiprocessing, os, sys
os.environ["SIGINT_MAIN"] = str(os.getpid())
import edgeaug.builder.chunks as c
import edgeaug.builder.processes as p
import sigint_hook
c.CHUNK_RECORDS = 1
p.PRELOAD = [*p.PRELOAD, "sigint_hook"]
sigint_hook.install_main()
from edgeaug.cli import app
sys.argv[0] = "edgeaug"
try:
    app()
finally:
    print("children", len(multiprocessing.active_children()), flush=True)
"""


def _alive(pgid: int) -> list:
    """Processes of group ``pgid`` that still run (zombies waiting for a reaper do not)."""
    pids = []
    for p in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except (OSError, ValueError):
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if p.isdigit() and int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(p))
    return pids


def _interrupted_cli(data: Path, out: Path, point: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=f"{REPO}{os.pathsep}{Path(__file__).parent}", SIGINT_AT=point)
    env["SIGINT_ONCE"] = str(out.with_name("sigint-sent"))
    cmd = [sys.executable, "-c", CLI, "build", str(data), "-o", str(out), "-t", "rpi-zero2w", "-k", "2"]
    cmd += ["-s", "7", "--val", "0.25", "-w", "2", "-q"]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("point", POINTS)
def test_ctrl_c_exits_130_within_seconds_and_the_rerun_gives_the_same_bytes(
    data, baseline, tmp_path, monkeypatch, point
):
    out = tmp_path / "pack.lmdb"
    proc = _interrupted_cli(data, out, point)
    try:
        lines = iter(proc.stdout.readline, "")
        assert next((x for x in lines if x == "SIGINT\n"), None) == "SIGINT\n", f"{point} never reached"
        code = proc.wait(timeout=5)  # after Ctrl-C: 5 s at most, every time
        rest = proc.stdout.read()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    err = proc.stderr.read()
    assert code == 130, err
    assert "interrupted" in err and "rerun the same command" in err, err
    assert "children 0" in rest  # every worker and the writer were stopped and reaped
    deadline = time.monotonic() + 5  # the forkserver and the resource tracker follow the main process
    while _alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive(proc.pid) == []
    assert not out.exists() and not out.with_name("pack.lmdb.tmp").exists()
    monkeypatch.setattr(chunks, "CHUNK_RECORDS", 1)
    build(data, out, **ARGS)
    assert sha(out) == baseline
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("sigint-sent")) == ["pack.lmdb"]
