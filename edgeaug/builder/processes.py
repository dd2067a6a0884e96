"""How the build's processes start: from a forkserver, with one BLAS thread.

Standard library only, so the ``edgeaug build`` command can start the
forkserver before it imports numpy itself: the forkserver's imports (numpy,
OpenCV, edgeaug: about 0.2 s) then overlap the command's own.

One BLAS thread, because OpenBLAS's idle threads cost more CPU than they save here.

OpenBLAS (numpy's BLAS in the wheels) starts a thread per core when numpy is
imported, and each spins for about 0.1 s of CPU before it sleeps: on a
2-core machine, importing numpy costs 0.28 s of CPU instead of 0.09 s, more
than a build's main process does otherwise.  Rendering never calls BLAS.
A value the user set wins.  This module imports only the standard library,
so the CLI can use it before numpy is loaded.
"""

from __future__ import annotations

import os
from typing import Optional

BLAS_ENV = {"OPENBLAS_NUM_THREADS": "1"}


def use_single_threaded_blas() -> None:
    """For this process: call before numpy is imported (the ``edgeaug build`` command does)."""
    for k, v in BLAS_ENV.items():
        os.environ.setdefault(k, v)


#: What the forkserver imports once, so every worker forked from it starts ready (childenv first: before numpy).
PRELOAD = ["edgeaug.builder.childenv", "cv2", "lmdb", "edgeaug.builder.workers", "edgeaug.builder.merge"]


def process_context():
    """The forkserver context (workers fork from it, see :func:`ensure_forkserver`), else spawn."""
    import multiprocessing as mp

    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    return mp.get_context("forkserver")


def ensure_forkserver() -> None:
    """Start the forkserver with :data:`PRELOAD`, unless it runs; the caller's preload setting is kept.

    The forkserver imports numpy and OpenCV once (with one BLAS thread, see
    :mod:`.childenv`), so every worker forked from it starts ready.  Only a
    forkserver started here preloads them: one the caller started keeps its own.
    """
    if process_context().get_start_method() != "forkserver":
        return
    from multiprocessing import forkserver

    server = forkserver._forkserver  # the process-wide forkserver that the context uses
    before = getattr(server, "_preload_modules", ["__main__"])
    server.set_forkserver_preload(PRELOAD)
    try:
        server.ensure_running()
    finally:
        server.set_forkserver_preload(before)  # the caller's own processes start as they did


def start_early(workers: Optional[int] = None, dask_scheduler: Optional[str] = None) -> None:
    """For a build with local worker processes: start the forkserver now, without waiting for its imports.

    They overlap whatever this process does next.  ``workers`` and
    ``dask_scheduler`` as the build takes them: a one-process build (or a
    Dask one) starts no local workers, so nothing is started.
    """
    if dask_scheduler or (workers or os.cpu_count() or 1) <= 1:
        return
    ensure_forkserver()
