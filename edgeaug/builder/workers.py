"""Rendering chunks on local worker processes, each writing its own chunk files.

Workers send back only a chunk number, never records: the main process then
reads the chunk file from the page cache when it merges (see
:mod:`.writer`).  Workers are forked from a forkserver that has already
imported numpy, OpenCV and edgeaug, and each watches the main process: when
it dies (even by SIGKILL) they exit, and the forkserver and the resource
tracker follow because nothing holds their pipes any more.

A build that stops early (Ctrl-C, an error) never waits on its processes
for long: they ignore SIGINT (the main process stops and reports), and are
terminated, then killed after a short grace, and reaped (see :func:`stop`).
A one-process build renders in the caller's process and leaves it as it
was: OpenCV's thread count is restored, no allocator setting, no globals.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence, Tuple

from edgeaug.builder import chunks
from edgeaug.builder.augment import Augmenter
from edgeaug.builder.plan import BuildError, SourceResult, Task
from edgeaug.builder.processes import ensure_forkserver, process_context
from edgeaug.builder.render import render_source
from edgeaug.config.recipe import Recipe
from edgeaug.config.targets import Target

_STATE: Dict[str, Any] = {}  # in a pool process only: what _init_worker prepared
Job = Tuple[int, Sequence[Task]]  # (chunk number, its tasks)
GRACE = 1.0  # seconds a stopped process has to exit on SIGTERM before SIGKILL


def _init_worker(recipe: Recipe, target: Target, seed: int, folder: Path, plan: str, parent: int) -> None:
    """A pool process's setup: one OpenCV thread, so results never depend on threading."""
    import cv2

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's: it stops and reports
    exit_with(parent)
    cv2.setNumThreads(1)
    keep_heap()
    _STATE.update(aug=Augmenter(recipe, target), seed=seed, folder=folder, plan=plan)


@contextmanager
def one_opencv_thread() -> Iterator[None]:
    """Render with one OpenCV thread in this process; its thread count is restored after."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


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
    Use as a context manager; leaving it stops the processes: normally they
    finish their work, after an exception (Ctrl-C) they are stopped at once.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.writer: Any = None
        self._pool: Any = None

    def __enter__(self) -> "LocalExecutor":
        import multiprocessing as mp

        self._before = set(mp.active_children())  # the caller's own children are never stopped here
        if self.workers > 1:
            from concurrent.futures import ProcessPoolExecutor

            ensure_forkserver()
            self.writer = ProcessPoolExecutor(1, process_context(), _init_writer, (os.getpid(),))
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        pools = [ex for ex in (self._pool, self.writer) if ex is not None]
        if exc_type is None:
            for ex in pools:
                ex.shutdown(wait=True)
        else:
            stop(pools, self._before)

    def render(
        self, jobs: Sequence[Job], recipe: Recipe, target: Target, seed: int, folder: Path, plan: str
    ) -> Iterator[int]:
        """Render ``jobs``, yielding each chunk number, in order, once its file is written."""
        if self.workers == 1 or len(jobs) <= 1:
            aug = Augmenter(recipe, target)
            for k, tasks in jobs:
                with one_opencv_thread():
                    chunks.write(folder, k, render_chunk(k, tasks, aug, seed, plan))
                yield k
            return
        yield from self._render_in_pool(jobs, (recipe, target, seed, folder, plan, os.getpid()))

    def _render_in_pool(self, jobs: Sequence[Job], args: tuple) -> Iterator[int]:
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        self._pool = ex = ProcessPoolExecutor(self.workers, process_context(), _init_worker, args)
        window = self.workers * 2  # bounded look-ahead
        it = iter(jobs)
        pending: deque = deque()
        tasks = jobs[0][1]
        try:
            for _, (k, t) in zip(range(window), it):
                pending.append((ex.submit(_run_chunk, k, t), t))
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


def stop(pools: Sequence[Any], before: set) -> None:
    """Stop ``pools`` now: no new work, every process this build started terminated, killed if it lingers, reaped.

    Never waits without bound: a pool interrupted while it started its
    processes has no manager thread to stop them, and its idle workers would
    otherwise block the interpreter's exit (which joins every child) forever.
    """
    import multiprocessing as mp

    threads = [getattr(ex, "_executor_manager_thread", None) for ex in pools]
    procs = set(mp.active_children()) - before
    for ex in pools:
        procs.update((getattr(ex, "_processes", None) or {}).values())
        queue = getattr(ex, "_call_queue", None)
        if queue is not None:  # jobs not yet read are dropped: nobody waits to flush them into the pipe
            queue.cancel_join_thread()
        ex.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(GRACE)
        if p.exitcode is None:
            p.kill()
            p.join()
    for t in threads:  # with its processes gone, a manager thread ends at once
        if t is not None:
            t.join(GRACE)
