"""The build's processes start numpy with one BLAS thread, unless the user chose otherwise; the caller's stays as is."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from edgeaug.builder import processes

# In a fresh process (a fresh forkserver): what a process of the build's pool sees, and what the caller keeps.
POOL_ENV = """
import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import forkserver
from edgeaug.builder import processes
processes.ensure_forkserver()
with ProcessPoolExecutor(1, processes.process_context()) as ex:
    child = ex.submit(os.getenv, "OPENBLAS_NUM_THREADS", "-").result()
print(child, os.environ.get("OPENBLAS_NUM_THREADS", "-"), forkserver._forkserver._preload_modules)
"""


def _pool_env(**env: str) -> list:
    base = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run(
        [sys.executable, "-c", POOL_ENV], capture_output=True, text=True, env={**base, **env}, check=True
    )
    return out.stdout.strip().split(maxsplit=2)


def test_pool_processes_get_one_blas_thread_and_the_callers_environment_is_untouched():
    assert _pool_env() == ["1", "-", "['__main__']"]  # the caller's forkserver preload setting is kept too


def test_a_value_the_user_set_wins(monkeypatch):
    assert _pool_env(OPENBLAS_NUM_THREADS="3")[:2] == ["3", "3"]
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    processes.use_single_threaded_blas()
    assert os.environ["OPENBLAS_NUM_THREADS"] == "3"


def test_the_build_command_sets_it_before_numpy_is_imported(tmp_path):
    """``edgeaug build`` in a fresh process: numpy, once loaded, was loaded with one BLAS thread."""
    code = (
        "import os, sys\n"
        "from edgeaug.cli import app\n"
        "assert 'numpy' not in sys.modules\n"
        "try:\n"
        "    app(['build', sys.argv[1], '-o', sys.argv[2], '-t', 'rpi4', '--quiet'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('numpy' in sys.modules, os.environ.get('OPENBLAS_NUM_THREADS'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "missing"), str(tmp_path / "p.lmdb")],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert out.stdout.split() == ["True", "1"], out.stderr


FORKSERVER_CHILD = (
    "import os, sys\n"
    "from edgeaug.cli import app\n"
    "try:\n"
    "    app(['build', sys.argv[1], '-o', sys.argv[2], '-t', 'rpi4', '--quiet', '-w', sys.argv[3]])\n"
    "except SystemExit:\n"
    "    pass\n"
    "me = str(os.getpid())\n"
    "kids = [p for p in os.listdir('/proc') if p.isdigit() and open(f'/proc/{p}/stat').read().split()[3] == me]\n"
    "print(any(b'forkserver' in open(f'/proc/{k}/cmdline', 'rb').read() for k in kids))\n"
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("workers,started", [("2", "True"), ("1", "False")])
def test_the_build_command_starts_the_forkserver_first_when_it_will_use_workers(tmp_path, workers, started):
    out = subprocess.run(
        [sys.executable, "-c", FORKSERVER_CHILD, str(tmp_path / "missing"), str(tmp_path / "p.lmdb"), workers],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == [started], out.stderr
