"""Rendering chunks on a Dask cluster (``edgeaug build ... --dask-scheduler tcp://HOST:PORT``).

Dask's distributed scheduler places the work and reschedules the chunks of a
worker that is lost; this module only submits one task per chunk, keeps a
bounded window of them in flight, and writes each chunk file as its result
arrives (in plan order), so a killed client resumes like a local build.

The workers need edgeaug installed and must see the sources at the same
paths as this machine (a shared folder); they never need the output folder.
Task keys name the plan and the chunk, so a chunk is never rendered twice
for the same plan while its result is still held by the cluster.
"""

from __future__ import annotations

import socket
from collections import deque
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence

from edgeaug.builder import chunks
from edgeaug.builder.augment import Augmenter
from edgeaug.builder.plan import BuildError, render_versions
from edgeaug.builder.workers import Job, render_chunk
from edgeaug.config.recipe import Recipe
from edgeaug.config.targets import Target

_AUGMENTERS: Dict[str, Any] = {}  # per worker process: one Augmenter per plan


def _render_on_worker(
    k: int, tasks, recipe: Recipe, target: Target, seed: int, plan: str, versions: List[str]
) -> List[bytes]:
    """Runs on a Dask worker: one chunk file's content, refused when the worker's libraries differ."""
    import cv2

    mine = render_versions()
    if mine != versions:  # OpenCV is not bit-exact across versions: the pack would not be the local build's
        names = ("edgeaug", "numpy", "OpenCV")
        diff = ", ".join(f"{n} {a} (client {b})" for n, a, b in zip(names, mine, versions) if a != b)
        raise BuildError(f"Dask worker {socket.gethostname()}: {diff}; install the same versions everywhere")
    cv2.setNumThreads(1)  # results never depend on threading
    aug = _AUGMENTERS.get(plan)
    if aug is None:
        _AUGMENTERS.clear()
        aug = _AUGMENTERS[plan] = Augmenter(recipe, target)
    return render_chunk(k, tasks, aug, seed, plan)


class DaskExecutor:
    """Renders on the Dask cluster at ``scheduler``; the merge runs in this process (``writer`` is None)."""

    writer = None

    def __init__(self, scheduler: str) -> None:
        self.scheduler = scheduler

    def __enter__(self) -> "DaskExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def render(
        self, jobs: Sequence[Job], recipe: Recipe, target: Target, seed: int, folder: Path, plan: str
    ) -> Iterator[int]:
        return run_chunks_dask(jobs, recipe, target, seed, folder, plan, self.scheduler)


def run_chunks_dask(
    jobs: Sequence[Job], recipe: Recipe, target: Target, seed: int, folder: Path, plan: str, scheduler: str
) -> Iterator[int]:
    """Render ``jobs`` on the cluster at ``scheduler``; write each chunk file here; yield chunk numbers in order."""
    try:
        from distributed import Client
    except ImportError:
        raise BuildError('--dask-scheduler needs Dask: pip install "edgeaug[dask]"') from None
    try:
        client = Client(scheduler, timeout="30s", set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise BuildError(f"--dask-scheduler {scheduler}: cannot connect: {e}") from None
    versions = render_versions()
    try:
        window = max(4, 2 * sum(client.nthreads().values()))  # bounded: results wait in cluster memory
        it = iter(jobs)
        pending: deque = deque()

        def submit(job: Job) -> None:
            k, tasks = job
            fut = client.submit(
                _render_on_worker, k, list(tasks), recipe, target, seed, plan, versions, key=f"edgeaug-{plan[:16]}-{k}"
            )
            pending.append((k, fut))

        for _, job in zip(range(window), it):
            submit(job)
        while pending:
            k, fut = pending.popleft()
            parts = fut.result()
            fut.release()
            chunks.write(folder, k, parts)
            del parts
            nxt = next(it, None)
            if nxt is not None:
                submit(nxt)
            yield k
    finally:
        client.close()
