"""Rendering tasks in worker processes, results yielded in plan order."""

from __future__ import annotations

from collections import deque
from typing import Any, Dict, Iterator, Sequence

from edgeaug.build.augment import Augmenter
from edgeaug.build.plan import BuildError, SourceResult, Task
from edgeaug.build.render import render_source
from edgeaug.config.recipe import Recipe
from edgeaug.config.targets import Target

_STATE: Dict[str, Any] = {}


def _init_worker(recipe: Recipe, target: Target, seed: int) -> None:
    """Per-process setup: one OpenCV thread, so results never depend on threading."""
    import cv2

    cv2.setNumThreads(1)
    _STATE.update(aug=Augmenter(recipe, target), seed=seed)


def _run_one(task: Task) -> SourceResult:
    return render_source(task, _STATE["aug"], _STATE["seed"])


def run_tasks(tasks: Sequence[Task], recipe: Recipe, target: Target, seed: int, workers: int) -> Iterator[SourceResult]:
    """Render tasks on ``workers`` processes, yielding results in plan order."""
    if workers == 1 or len(tasks) <= 1:
        _init_worker(recipe, target, seed)
        yield from map(_run_one, tasks)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    window = workers * 4  # bounded look-ahead keeps memory flat
    with ProcessPoolExecutor(workers, mp.get_context(method), _init_worker, (recipe, target, seed)) as ex:
        it = iter(tasks)
        pending = deque((ex.submit(_run_one, t), t) for _, t in zip(range(window), it))
        task = tasks[0]
        try:
            while pending:
                fut, task = pending.popleft()
                res = fut.result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append((ex.submit(_run_one, nxt), nxt))
                yield res
        except BrokenProcessPool:  # e.g. the OOM killer, or a crash inside a decoder
            raise BuildError(
                f"a worker process died while rendering {task.source.path} or one of "
                f"the sources after it; the sources before it are kept: rerun to "
                f"resume"
            ) from None
