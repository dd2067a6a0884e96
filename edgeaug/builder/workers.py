"""Rendering chunks on local worker processes, each writing its own chunk files.

Workers send back only a chunk number, never records: the main process then
reads the chunk file from the page cache when it merges (see
:mod:`.writer`).  Workers are forked from a forkserver that has already
imported numpy, OpenCV and edgeaug, and each watches the main process: when
it dies (even by SIGKILL) they exit, and the forkserver and the resource
tracker follow because nothing holds their pipes any more.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import deque
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence, Tuple

from edgeaug.builder import chunks
from edgeaug.builder.augment import Augmenter
from edgeaug.builder.plan import BuildError, SourceResult, Task
from edgeaug.builder.processes import process_context, single_threaded_blas
from edgeaug.builder.render import render_source
from edgeaug.config.recipe import Recipe
from edgeaug.config.targets import Target

_STATE: Dict[str, Any] = {}
Job = Tuple[int, Sequence[Task]]  # (chunk number, its tasks)


def _init_worker(recipe: Recipe, target: Target, seed: int, folder: Path, plan: str, parent: int = 0) -> None:
    """Per-process setup: one OpenCV thread, so results never depend on threading."""
    import cv2

    cv2.setNumThreads(1)
    keep_heap()
    if parent:  # a pool process
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's: it stops and reports
        exit_with(parent)
    _STATE.update(aug=Augmenter(recipe, target), seed=seed, folder=folder, plan=plan)


def render_chunk(k: int, tasks: Sequence[Task], aug: Augmenter, seed: int, plan: str) -> List[bytes]:
    """One chunk file's content: every source of the chunk rendered, in plan order."""
    results: List[SourceResult] = [render_source(t, aug, seed) for t in tasks]
    return chunks.encode(plan, k, results)


def _run_chunk(k: int, tasks: Sequence[Task]) -> int:
    s = _STATE
    chunks.write(s["folder"], k, render_chunk(k, tasks, s["aug"], s["seed"], s["plan"]))
    return k


def exit_with(pid: int) -> None:
    """Exit this process as soon as process ``pid`` ends (a daemon thread blocks on a pidfd)."""

    def watch() -> None:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            os._exit(1)
        except (AttributeError, OSError):  # no pidfd (Linux < 5.3, other systems): poll
            while True:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    os._exit(1)
                except PermissionError:
                    pass
                threading.Event().wait(0.5)
        import select

        select.select([fd], [], [])  # readable when the process has exited
        os._exit(1)

    threading.Thread(target=watch, name="edgeaug-parent-watch", daemon=True).start()


def _init_writer(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as the workers: Ctrl-C is the main process's
    exit_with(parent)
    keep_heap()


#: glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
HEAP_KEEP = 32 << 20  # the largest mmap threshold glibc accepts on 64-bit systems


def keep_heap() -> None:
    """Let this process reuse its freed memory for the next records (glibc only; elsewhere a no-op).

    Every record is a few 150 KB buffers: encoded bytes, LMDB's pages for it.
    By default glibc gives each such buffer fresh pages from the kernel (mmap,
    or a heap it trims after every chunk) and the kernel zeroes, maps and
    unmaps them again: about a third of a millisecond of system CPU per
    record in the writer alone.  Allocations below ``HEAP_KEEP`` now come from
    the heap, and up to ``HEAP_KEEP`` of free heap is kept.  Output bytes do
    not depend on where buffers live.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, HEAP_KEEP)
    mallopt(_M_TRIM_THRESHOLD, HEAP_KEEP)


class LocalExecutor:
    """Worker processes that render chunks, and one writer process that merges them (see :mod:`.writer`).

    ``workers == 1`` renders and merges in this process (``writer`` is None).
    Use as a context manager; leaving it stops the processes.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.writer: Any = None
        self._pool: Any = None

    def __enter__(self) -> "LocalExecutor":
        self._env = ExitStack()
        if self.workers > 1:
            from concurrent.futures import ProcessPoolExecutor

            self._env.enter_context(single_threaded_blas())  # the forkserver, spawned workers, the writer
            self.writer = ProcessPoolExecutor(1, process_context(), _init_writer, (os.getpid(),))
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            for ex in (self._pool, self.writer):
                if ex is not None:
                    ex.shutdown(wait=True, cancel_futures=True)
        finally:
            self._env.close()

    def render(
        self, jobs: Sequence[Job], recipe: Recipe, target: Target, seed: int, folder: Path, plan: str
    ) -> Iterator[int]:
        """Render ``jobs``, yielding each chunk number, in order, once its file is written."""
        if self.workers == 1 or len(jobs) <= 1:
            _init_worker(recipe, target, seed, folder, plan)
            for k, tasks in jobs:
                yield _run_chunk(k, tasks)
            return
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        args = (recipe, target, seed, folder, plan, os.getpid())
        self._pool = ex = ProcessPoolExecutor(self.workers, process_context(), _init_worker, args)
        window = self.workers * 2  # bounded look-ahead
        it = iter(jobs)
        pending = deque((ex.submit(_run_chunk, k, t), t) for _, (k, t) in zip(range(window), it))
        tasks = jobs[0][1]
        try:
            while pending:
                fut, tasks = pending.popleft()
                k = fut.result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append((ex.submit(_run_chunk, *nxt), nxt[1]))
                yield k
        except BrokenProcessPool:  # e.g. the OOM killer, or a crash inside a decoder
            raise BuildError(
                f"a worker process died while rendering {tasks[0].source.path} or one of "
                f"the sources after it; the sources before it are kept: rerun to "
                f"resume"
            ) from None
        finally:
            for fut, _ in pending:
                fut.cancel()
