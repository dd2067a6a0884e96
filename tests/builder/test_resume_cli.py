"""Crash-safe builds through the CLI: kill -9 of the whole process group at exact points, --resume/--no-resume.

Kills of the real CLI (with worker processes) at exact points run in a subprocess; chunks hold one
source each (``CHUNK_RECORDS = 1``): many kill points.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

from chunked_build import sha
from killed_build import killed_build as _killed_build

from edgeaug.builder.pipeline import build
from edgeaug.demo import make_dataset

REPO = Path(__file__).resolve().parents[2]


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
