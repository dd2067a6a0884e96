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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from edgeaug.build.plan import ERROR_POLICIES, BuildError, SourceResult, Task, plan, val_sources  # noqa: F401
from edgeaug.build.workers import run_tasks
from edgeaug.config.recipe import Recipe, load_recipe
from edgeaug.config.targets import Target, load_target
from edgeaug.sources.base import SourceSet
from edgeaug.sources.scan import scan


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


def build(
    source: str | Path,
    out: str | Path,
    target: str | Path | Target,
    recipe: str | Path | Recipe | None = None,
    variants: int | None = None,
    seed: int = 0,
    workers: int | None = None,
    val: float = 0.0,
    on_error: str = "skip",
    progress: Callable[[int, int], None] | None = None,
    resume: Optional[bool] = None,
    max_map_size: Optional[int] = None,
) -> BuildResult:
    """Build a pack at ``out``; it appears there only when complete.

    A build that is killed or fails (disk full, ``on_error="fail"``) keeps the
    sources it finished in ``OUT.partial``; running the same build again
    resumes there and writes a byte-identical pack.  ``resume``: None resumes
    when the inputs match, True insists, False starts over.  Sources with the
    same content as an earlier one are skipped as duplicates.
    ``progress(done, total)`` is called after each source is written.
    """
    from edgeaug.build.writer import PackWriter

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
    from edgeaug.build.audit import warnings_for

    notes = [writer.note] if writer.note else []
    return BuildResult(
        Path(out),
        manifest["records"],
        {k: v["count"] for k, v in manifest["splits"].items()},
        manifest["skipped"],
        manifest["fingerprint"],
        time.monotonic() - t0,
        notes + warnings_for(manifest["quantization_audit"]),
        done,
    )


def _manifest(sset, tasks, results, rcp, tgt, seed, val) -> Dict[str, Any]:
    from edgeaug.build.writer import manifest_for

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
    changed = _changed_source(tasks[: len(results)], results)
    if changed:
        if resume:
            raise BuildError(
                f"cannot resume: {changed} changed since the interrupted build "
                f"(run again without --resume to start over)"
            )
        writer.restart(key, f"started over: {changed} changed since the interrupted build")
        return {}
    for t in tasks[: len(results)]:
        res = results[t.index]
        if res.error and not res.duplicate_of and on_error == "fail":
            raise BuildError(f"{t.source.path}: {res.error}")
    return results


def _changed_source(tasks: Sequence[Task], results: Dict[int, SourceResult]) -> Optional[str]:
    """The first already-written source whose file no longer has the content it was built from."""
    from edgeaug.build.render import SourceDecodeError, read_source

    for t in tasks:
        try:
            sha = hashlib.sha256(read_source(t.source.path)).hexdigest()
        except SourceDecodeError:
            sha = ""
        if sha != results[t.index].sha256:
            return t.source.rel
    return None


def plan_fingerprint(
    sset: SourceSet, tasks: Sequence[Task], recipe: Recipe, target: Target, seed: int, val: float
) -> str:
    """sha256 of everything a pack's bytes depend on except the sources' content.

    A partial build is resumed only when this matches (contents are checked
    separately).  Absolute paths stay in the local sidecar; never in a pack.
    """
    import cv2
    import numpy as np

    from edgeaug import __version__
    from edgeaug.device.format import FORMAT_VERSION

    srcs = [{f.name: getattr(s, f.name) for f in dataclasses.fields(s)} for s in sset.sources]
    body = {
        "format": FORMAT_VERSION,
        "versions": [__version__, np.__version__, cv2.__version__],
        "target": target.to_dict(),
        "recipe": recipe.to_dict(),
        "seed": seed,
        "val": val,
        "classes": list(sset.classes),
        "kind": sset.kind,
        "sources": srcs,
        "tasks": [[t.index, t.split, list(t.variants)] for t in tasks],
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def audit_results(results, target: Target) -> Dict[str, Any]:
    """Sum the workers' histograms into the manifest's quantization audit."""
    import numpy as np

    from edgeaug.build.audit import audit

    total = np.zeros((target.channels, 256), np.int64)
    for r in results:
        if r.hist is not None:
            total += r.hist
    return audit(total, target)
