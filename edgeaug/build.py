"""Building a pack: plan the records, render them in worker processes, write in order.

The plan is a pure function of (sources, recipe, seed, val fraction), so the
pack's bytes never depend on the worker count or on timing.  Workers each
decode one source once and render all its variants; one writer in the main
process puts the records in plan order (``edgeaug.writer``) and finishes the
pack atomically.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
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
    """What rendering one source produced.

    Every field but ``records`` is saved with the partial build (:meth:`meta`)
    so a resumed build writes the same manifest: keep them JSON-friendly
    (numbers, strings, lists, or numpy arrays, which are saved as lists).
    """

    index: int
    sha256: str = ""
    records: List[bytes] = field(default_factory=list)
    error: Optional[str] = None
    hist: Any = None  # (channels, 256) pixel counts for the quantization audit
    count: int = 0  # records written; ``records`` is emptied once they are
    duplicate_of: Optional[str] = None  # skipped: same content as this earlier source

    def meta(self) -> Dict[str, Any]:
        """The JSON-able fields, for the partial build's resume metadata."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name != "records":
                out[f.name] = {"array": v.tolist(), "dtype": str(v.dtype)} if hasattr(v, "dtype") else v
        return out

    @classmethod
    def from_meta(cls, meta: Dict[str, Any]) -> "SourceResult":
        import numpy as np
        names = {f.name for f in dataclasses.fields(cls)} - {"records"}
        kw = {k: v for k, v in meta.items() if k in names}
        for k, v in kw.items():
            if isinstance(v, dict) and set(v) == {"array", "dtype"}:
                kw[k] = np.asarray(v["array"], v["dtype"])
        return cls(**kw)


@dataclass
class BuildResult:
    path: Path
    records: int
    splits: Dict[str, int]
    skipped: List[Dict[str, str]]
    fingerprint: str
    seconds: float
    warnings: List[str] = field(default_factory=list)
    resumed: int = 0  # sources taken from an interrupted build instead of rendered again


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
          on_error: str = "skip", progress: Callable[[int, int], None] | None = None,
          resume: Optional[bool] = None, max_map_size: Optional[int] = None) -> BuildResult:
    """Build a pack at ``out``; it appears there only when complete.

    A build that is killed or fails (disk full, ``on_error="fail"``) keeps the
    sources it finished in ``OUT.partial``; running the same build again
    resumes there and writes a byte-identical pack.  ``resume``: None resumes
    when the inputs match, True insists, False starts over.  Sources with the
    same content as an earlier one are skipped as duplicates.
    ``progress(done, total)`` is called after each source is written.
    """
    from .writer import PackWriter

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
    key = plan_fingerprint(sset, tasks, rcp, tgt, seed, val)
    writer = PackWriter(Path(out), tgt, sum(len(t.variants) for t in tasks), key, resume, max_map_size)
    try:
        if writer.sealed is not None:  # killed while copying the finished pack out
            writer.publish()
            manifest, done = writer.sealed, len(tasks)
        else:
            results = _resumed_results(writer, tasks, key, resume, on_error)
            done = len(results)
            _render_rest(tasks, results, writer, sset, rcp, tgt, seed, workers, on_error, progress)
            manifest = _manifest(sset, tasks, results, rcp, tgt, seed, val)
            writer.finish(manifest)
            manifest = writer.sealed
    except BaseException:
        writer.abort()  # keeps the partial build for a rerun
        raise
    from .audit import warnings_for
    notes = [writer.note] if writer.note else []
    return BuildResult(Path(out), manifest["records"], {k: v["count"] for k, v in manifest["splits"].items()},
                       manifest["skipped"], manifest["fingerprint"], time.monotonic() - t0,
                       notes + warnings_for(manifest["quantization_audit"]), done)


def _manifest(sset, tasks, results, rcp, tgt, seed, val) -> Dict[str, Any]:
    from .writer import manifest_for
    manifest = manifest_for(sset, tasks, results, rcp, tgt, seed, val)
    manifest["quantization_audit"] = audit_results(results.values(), tgt)
    return manifest


def _render_rest(tasks, results, writer, sset, rcp, tgt, seed, workers, on_error, progress) -> None:
    """Render the tasks not yet written, in plan order, and hand each source to the writer."""
    seen = {r.sha256: sset.sources[r.index].rel for r in results.values() if not r.error}
    done = len(results)
    for n, res in enumerate(run_tasks(tasks[done:], rcp, tgt, seed, workers), done + 1):
        if res.error and on_error == "fail":
            raise BuildError(f"{sset.sources[res.index].path}: {res.error}")
        if not res.error and res.sha256 in seen:  # same image twice: keep the first in plan order
            res.duplicate_of, res.records, res.hist = seen[res.sha256], [], None
            res.error = f"duplicate of {res.duplicate_of} (same content)"
        elif not res.error:
            seen[res.sha256] = sset.sources[res.index].rel
        res.count = len(res.records)
        writer.add(res.records, res.meta())
        res.records = []  # written: do not hold every record in memory
        results[res.index] = res
        if progress:
            progress(n, len(tasks))


def _resumed_results(writer, tasks, key, resume, on_error) -> Dict[int, SourceResult]:
    """The results of sources a previous run already wrote, if their files are unchanged."""
    results = {t.index: SourceResult.from_meta(m) for t, m in zip(tasks, writer.resumed)}
    changed = _changed_source(tasks[:len(results)], results)
    if changed:
        if resume:
            raise BuildError(f"cannot resume: {changed} changed since the interrupted build "
                             f"(run again without --resume to start over)")
        writer.restart(key, f"started over: {changed} changed since the interrupted build")
        return {}
    for t in tasks[:len(results)]:
        res = results[t.index]
        if res.error and not res.duplicate_of and on_error == "fail":
            raise BuildError(f"{t.source.path}: {res.error}")
    return results


def _changed_source(tasks: Sequence[Task], results: Dict[int, SourceResult]) -> Optional[str]:
    """The first already-written source whose file no longer has the content it was built from."""
    from .render import SourceDecodeError, read_source
    for t in tasks:
        try:
            sha = hashlib.sha256(read_source(t.source.path)).hexdigest()
        except SourceDecodeError:
            sha = ""
        if sha != results[t.index].sha256:
            return t.source.rel
    return None


def plan_fingerprint(sset: SourceSet, tasks: Sequence[Task], recipe: Recipe, target: Target,
                     seed: int, val: float) -> str:
    """sha256 of everything a pack's bytes depend on except the sources' content.

    A partial build is resumed only when this matches (contents are checked
    separately).  Absolute paths stay in the local sidecar; never in a pack.
    """
    import cv2
    import numpy as np
    from . import __version__
    from .format import FORMAT_VERSION
    srcs = [{f.name: getattr(s, f.name) for f in dataclasses.fields(s)} for s in sset.sources]
    body = {"format": FORMAT_VERSION, "versions": [__version__, np.__version__, cv2.__version__],
            "target": target.to_dict(), "recipe": recipe.to_dict(), "seed": seed, "val": val,
            "classes": list(sset.classes), "kind": sset.kind,
            "sources": srcs, "tasks": [[t.index, t.split, list(t.variants)] for t in tasks]}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


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
    from concurrent.futures.process import BrokenProcessPool
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    window = workers * 4  # bounded look-ahead keeps memory flat
    with ProcessPoolExecutor(workers, mp.get_context(method), _init_worker,
                             (recipe, target, seed)) as ex:
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
            raise BuildError(f"a worker process died while rendering {task.source.path} or one of "
                             f"the sources after it; the sources before it are kept: rerun to "
                             f"resume") from None
