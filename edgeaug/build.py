"""Building a pack: plan the records, render them in worker processes, write in order.

The plan is a pure function of (sources, recipe, seed, val fraction), so the
pack's bytes never depend on the worker count or on timing.  Workers each
decode one source once and render all its variants; one writer in the main
process puts the records in plan order (``edgeaug.writer``) and finishes the
pack atomically.
"""
from __future__ import annotations

import hashlib
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from .recipe import Recipe, load_recipe
from .sources import Source, SourceSet, scan
from .targets import Target, load_target

ERROR_POLICIES = ("skip", "fail")


class BuildError(RuntimeError):
    """The build could not finish; the message says which source or step."""


@dataclass(frozen=True)
class Task:
    """Render ``variants`` of source number ``index`` into ``split``."""

    index: int
    source: Source
    split: str
    variants: Tuple[int, ...]


@dataclass
class SourceResult:
    index: int
    sha256: str = ""
    records: List[bytes] = field(default_factory=list)
    error: Optional[str] = None
    hist: Any = None  # (channels, 256) pixel counts for the quantization audit


@dataclass
class BuildResult:
    path: Path
    records: int
    splits: Dict[str, int]
    skipped: List[Dict[str, str]]
    fingerprint: str
    seconds: float
    warnings: List[str] = field(default_factory=list)


def val_sources(sset: SourceSet, seed: int, fraction: float) -> set:
    """A seeded, class-stratified choice of source indices for validation.

    Each class's sources are ranked by sha256(seed, path); the first
    ``round(fraction * n)`` go to val.  Adding files to other classes does not
    change a class's choice.
    """
    if not 0.0 <= fraction < 1.0:
        raise BuildError(f"--val: {fraction} must be in [0, 1)")
    chosen = set()
    for c in [-1, *range(len(sset.classes))]:  # -1: sources without a class label
        members = [i for i, s in enumerate(sset.sources) if s.label == c]
        members.sort(key=lambda i: hashlib.sha256(f"{seed}\0{sset.sources[i].rel}".encode()).digest())
        chosen.update(members[: int(round(fraction * len(members)))])
    return chosen


def plan(sset: SourceSet, recipe: Recipe, seed: int, val: float) -> List[Task]:
    """Every record of the pack, in write order: train sources, then val sources.

    Train sources get variant 0 (the original, if the recipe includes it) and
    augmented variants 1..K; val sources only their original.
    """
    held = val_sources(sset, seed, val)
    train_v = ((0,) if recipe.include_original else ()) + tuple(range(1, recipe.variants + 1))
    tasks = [Task(i, s, "train", train_v) for i, s in enumerate(sset.sources) if i not in held]
    tasks += [Task(i, s, "val", (0,)) for i, s in enumerate(sset.sources) if i in held]
    return tasks


def build(source: str | Path, out: str | Path, target: str | Path | Target,
          recipe: str | Path | Recipe | None = None, variants: int | None = None,
          seed: int = 0, workers: int | None = None, val: float = 0.0,
          on_error: str = "skip", progress: Callable[[int, int], None] | None = None) -> BuildResult:
    """Build a pack at ``out``; it appears there only when complete.

    ``progress(done, total)`` is called after each source is written.
    """
    from .writer import PackWriter, manifest_for

    t0 = time.monotonic()
    if on_error not in ERROR_POLICIES:
        raise BuildError(f"--on-error: {on_error!r} is not one of {ERROR_POLICIES}")
    if not 0 <= seed < 2**63:
        raise BuildError(f"--seed: {seed} must be in [0, 2**63)")
    tgt = target if isinstance(target, Target) else load_target(target)
    rcp = (recipe if isinstance(recipe, Recipe) else load_recipe(recipe)).with_variants(variants)
    sset = scan(source)
    tasks = plan(sset, rcp, seed, val)
    workers = max(1, workers or os.cpu_count() or 1)
    writer = PackWriter(Path(out), tgt, sum(len(t.variants) for t in tasks))
    results: Dict[int, SourceResult] = {}
    try:
        for n, res in enumerate(run_tasks(tasks, rcp, tgt, seed, workers), 1):
            if res.error and on_error == "fail":
                raise BuildError(f"{sset.sources[res.index].path}: {res.error}")
            writer.add(res.records)
            results[res.index] = res
            if progress:
                progress(n, len(tasks))
        manifest = manifest_for(sset, tasks, results, rcp, tgt, seed, val)
        manifest["quantization_audit"] = audit_results(results.values(), tgt)
        fp = writer.finish(manifest)
    except BaseException:
        writer.abort()
        raise
    skipped = manifest["skipped"]
    from .audit import warnings_for
    return BuildResult(Path(out), writer.count, {k: v["count"] for k, v in manifest["splits"].items()},
                       skipped, fp, time.monotonic() - t0, warnings_for(manifest["quantization_audit"]))


def audit_results(results, target: Target) -> Dict[str, Any]:
    """Sum the workers' histograms into the manifest's quantization audit."""
    from .audit import audit
    import numpy as np
    total = np.zeros((target.channels, 256), np.int64)
    for r in results:
        if r.hist is not None:
            total += r.hist
    return audit(total, target)


# --- workers -----------------------------------------------------------------

_STATE: Dict[str, Any] = {}


def _init_worker(recipe: Recipe, target: Target, seed: int) -> None:
    """Per-process setup: one OpenCV thread, so results never depend on threading."""
    import cv2
    from .augment import Augmenter
    cv2.setNumThreads(1)
    _STATE.update(aug=Augmenter(recipe, target), seed=seed)


def _run_one(task: Task) -> SourceResult:
    from .render import render_source
    return render_source(task, _STATE["aug"], _STATE["seed"])


def run_tasks(tasks: Sequence[Task], recipe: Recipe, target: Target, seed: int,
              workers: int) -> Iterator[SourceResult]:
    """Render tasks on ``workers`` processes, yielding results in plan order."""
    if workers == 1 or len(tasks) <= 1:
        _init_worker(recipe, target, seed)
        yield from map(_run_one, tasks)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    window = workers * 4  # bounded look-ahead keeps memory flat
    with ProcessPoolExecutor(workers, mp.get_context(method), _init_worker,
                             (recipe, target, seed)) as ex:
        it = iter(tasks)
        pending = deque(ex.submit(_run_one, t) for _, t in zip(range(window), it))
        while pending:
            res = pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(ex.submit(_run_one, nxt))
            yield res
