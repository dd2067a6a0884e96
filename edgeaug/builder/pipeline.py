"""Building a pack: plan the records, render them in chunks on any executor, merge in order.

The plan is a pure function of (sources, recipe, seed, val fraction), and its
cut into chunks (:mod:`.chunks`) too, so the pack's bytes never depend on the
worker count, the executor (local processes, a Dask cluster) or the number of
shards.  Renderers write chunk files into ``OUT.partial/``; the build that
seals reads them in plan order and puts each record once into the pack
(:mod:`.writer`), then renames it into place.

What an interrupted build left is sorted out by :mod:`.resume`.  Control
flow never reads error text: :class:`NoUsableSource` and :class:`SourceFailed`
are the build's own outcomes.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple, Union

from edgeaug.builder import chunks
from edgeaug.builder.audit import warnings_for
from edgeaug.builder.manifest import manifest_for, plan_fingerprint
from edgeaug.builder.partial import Partial, WriteError
from edgeaug.builder.plan import ERROR_POLICIES, BuildError, build_warnings, plan
from edgeaug.builder.processes import start_early
from edgeaug.builder.resume import prepare
from edgeaug.builder.tasks import SourceResult, Task
from edgeaug.builder.workers import LocalExecutor
from edgeaug.builder.writer import PackWriter
from edgeaug.config.recipe import Recipe, load_recipe
from edgeaug.config.targets import Target, load_target
from edgeaug.device.format import tensor_dtype
from edgeaug.sources.base import SourceSet
from edgeaug.sources.scan import scan

MAX_LISTED = 20  # sources named in a "no usable source" error


class NoUsableSource(BuildError):
    """No source gave a record: no pack is written, and nothing is kept to resume."""


class SourceFailed(BuildError):
    """``on_error="fail"``: a source could not be used; the message says what is kept and how to go on."""


@dataclass
class BuildResult:
    path: Path  # the pack; for a shard, the partial build folder
    records: int  # records written; for a shard, records rendered by this run
    splits: Dict[str, int]
    skipped: List[Dict[str, str]]
    fingerprint: str
    seconds: float
    warnings: List[str] = field(default_factory=list)
    resumed: int = 0  # sources taken from an interrupted build instead of rendered again
    shard: Optional[Tuple[int, int]] = None  # (I, N) of a --shard run, which writes no pack
    chunks_done: int = 0  # for a shard: chunks of the whole plan now rendered
    chunks_total: int = 0


def _codec_and_level(tgt: Target, compress: Optional[str], level: Optional[int]) -> Tuple[str, Optional[int]]:
    """``--compress``/``--level`` as given, the profile's ``[pack]`` setting where left out."""
    if compress is None:
        return tgt.compress[0], tgt.compress[1] if level is None else level
    return compress, level


def storage(compress: str, level: Optional[int]) -> Tuple[str, int]:
    """(codec, level) for ``--compress``/``--level``, checked (zstd: that this machine has it)."""
    from edgeaug.device.codec import CODECS, DEFAULT_LEVELS, LEVEL_RANGES, CodecError, check_available

    if compress not in CODECS:
        raise BuildError(f"--compress: {compress!r} is not one of {sorted(CODECS)}")
    lvl = DEFAULT_LEVELS[compress] if level is None else level
    lo, hi = LEVEL_RANGES[compress]
    if not lo <= lvl <= hi:
        raise BuildError(f"--level: {lvl} is outside [{lo}, {hi}] for {compress}")
    try:
        check_available(compress)
    except CodecError as e:
        raise BuildError(f"--compress: {e}") from None
    return compress, lvl


def parse_shard(shard: Union[str, Tuple[int, int], None]) -> Optional[Tuple[int, int]]:
    """``"I/N"`` (0 <= I < N) as (I, N); None stays None."""
    if shard is None or isinstance(shard, tuple):
        i_n = shard
    else:
        try:
            i_n = tuple(int(x) for x in str(shard).split("/"))
        except ValueError:
            i_n = ()
    if i_n is not None and (len(i_n) != 2 or not 0 <= i_n[0] < i_n[1]):
        raise BuildError(f"--shard: {shard!r} is not I/N with 0 <= I < N (e.g. 0/4 ... 3/4)")
    return i_n


def check_output(out: Path) -> None:
    """Refuse an unusable output path before any rendering: a directory, a missing folder, no permission.

    A missing folder is never created: a typo in ``-o`` must not leave new folders behind.
    """
    if out.is_dir():
        raise BuildError(f"-o {out}: is a directory; give the pack's file name, e.g. {out / 'pack.lmdb'}")
    folder = out.parent
    if not folder.exists():
        raise BuildError(f"-o {out}: the folder {folder} does not exist; create it first (mkdir -p {folder})")
    if not folder.is_dir():
        raise BuildError(f"-o {out}: {folder} is not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BuildError(f"-o {out}: cannot write in {folder} (permission denied)")


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
    dask_scheduler: Optional[str] = None,
    shard: Union[str, Tuple[int, int], None] = None,
    compress: Optional[str] = None,
    level: Optional[int] = None,
) -> BuildResult:
    """Build a pack at ``out``; it appears there only when complete.

    A build that is killed or fails (disk full, ``on_error="fail"``) keeps the
    chunks it finished in ``OUT.partial/``; running the same build again
    resumes there and writes a byte-identical pack.  ``resume``: None resumes
    when the inputs match, True insists, False starts over.  Sources with the
    same content as an earlier one are skipped as duplicates.  A build with
    no usable source raises :class:`NoUsableSource` naming each source's problem;
    ``on_error="fail"`` raises :class:`SourceFailed` at the first bad source,
    saying what is kept in ``OUT.partial/`` and how to go on.  Worker
    processes are stopped (never waited on without bound) when the build
    stops early, Ctrl-C included; the calling process is left as it was.

    ``dask_scheduler`` (``tcp://HOST:PORT``) renders on that Dask cluster.
    ``shard="I/N"`` renders only shard I of N into ``OUT.partial/`` and writes
    no pack; shards may run at once on machines sharing the folder, then the
    same build without ``shard`` seals.  ``progress(done, total)`` counts sources.
    """

    t0 = time.monotonic()
    if on_error not in ERROR_POLICIES:
        raise BuildError(f"--on-error: {on_error!r} is not one of {ERROR_POLICIES}")
    if not 0 <= seed < 2**63:
        raise BuildError(f"--seed: {seed} must be in [0, 2**63)")
    shard = parse_shard(shard)
    out = Path(out)
    check_output(out)
    start_early(workers, dask_scheduler)  # the worker processes' imports overlap the scan and the plan
    tgt = target if isinstance(target, Target) else load_target(target)
    # None: the target profile's [pack] default (every shipped profile: none)
    tgt = replace(tgt, compress=storage(*_codec_and_level(tgt, compress, level)))
    rcp = (recipe if isinstance(recipe, Recipe) else load_recipe(recipe)).with_variants(variants)
    sset = scan(source)
    job = _Job(sset, plan(sset, rcp, seed, val), rcp, tgt, seed, val, on_error, progress)
    job.key = plan_fingerprint(sset, job.tasks, rcp, tgt, seed, val)
    job.workers, job.dask = max(1, workers or os.cpu_count() or 1), dask_scheduler
    part = Partial(out, shared=shard is not None)
    try:
        done, notes = prepare(part, job, resume, shard)
        notes[:0] = build_warnings(sset, rcp)  # the dataset's and the recipe's, once per build
        if shard is not None:
            return _run_shard(part, job, done, shard, notes, t0)
        return _run_full(part, job, done, notes, max_map_size, t0)
    except SourceFailed as e:  # counted now: the stopped workers write no more chunks
        raise SourceFailed(f"{e}; {_kept_note(part)}") from None
    except BaseException:
        if shard is None and not any(part.dir.glob("chunk-*.bin")):
            part.remove()  # nothing to resume: leave nothing behind
        raise
    finally:
        part.release()


def _kept_note(part: Partial) -> str:
    """What ``on_error="fail"`` leaves in ``OUT.partial/`` and the ways on from there."""
    n, d = part.chunk_files(), part.dir
    return (
        f"stopped (--on-error fail); kept {n} rendered chunk{'s' * (n != 1)} in {d}: rerun the same command with "
        f"--on-error skip to resume and leave the bad sources out, or fix the source and rerun (the build starts "
        f"over), or delete {d}"
    )


@dataclass
class _Job:
    sset: SourceSet
    tasks: List[Task]
    recipe: Recipe
    target: Target
    seed: int
    val: float
    on_error: str
    progress: Optional[Callable[[int, int], None]]
    key: str = ""
    workers: int = 1
    dask: Optional[str] = None

    @property
    def ranges(self) -> List[Tuple[int, int]]:
        if not hasattr(self, "_ranges"):
            self._ranges = chunks.chunk_ranges(self.tasks, record_bytes(self.target))
        return self._ranges

    def chunk_tasks(self, k: int) -> List[Task]:
        a, b = self.ranges[k]
        return self.tasks[a:b]


def record_bytes(target: Target) -> int:
    """A record's tensor bytes (what bounds a chunk's size)."""
    import math

    return math.prod(target.shape) * tensor_dtype(target.dtype).itemsize


def _executor(job: _Job):
    """The executor that renders (and where the merge runs): local processes or a Dask cluster."""
    if job.dask:
        from edgeaug.builder.dask_exec import DaskExecutor  # only for --dask-scheduler: a local build never loads it

        return DaskExecutor(job.dask)

    return LocalExecutor(job.workers)


def _rendered(part, job: _Job, ex, jobs) -> Iterator[int]:
    """Chunk numbers of ``jobs`` as their files are written, in order; a failed chunk write is a WriteError."""

    if not jobs:
        return
    try:
        yield from ex.render(jobs, job.recipe, job.target, job.seed, part.dir, job.key)
    except OSError as e:  # disk full (ENOSPC), file too large (EFBIG), I/O errors
        raise WriteError(
            f"cannot write in {part.dir}: {e.strerror or e}; the sources rendered so far are kept in "
            f"{part.dir.name}: free space and rerun the same command to resume"
        ) from None


def _run_shard(part, job: _Job, done: Set[int], shard: Tuple[int, int], notes: List[str], t0: float) -> BuildResult:
    """Render this shard's missing chunks; no pack."""
    mine = [k for k in range(len(job.ranges)) if k % shard[1] == shard[0]]
    jobs = [(k, job.chunk_tasks(k)) for k in mine if k not in done]
    total = sum(len(job.chunk_tasks(k)) for k in mine)
    n = total - sum(len(t) for _, t in jobs)
    records = 0
    with _executor(job) as ex:
        for k in _rendered(part, job, ex, jobs):
            n += len(job.chunk_tasks(k))
            records += sum(len(t.variants) for t in job.chunk_tasks(k))
            if job.progress:
                job.progress(n, total)
    finished = sum(1 for k in range(len(job.ranges)) if chunks.chunk_path(part.dir, k).exists())
    resumed = sum(len(job.chunk_tasks(k)) for k in done)
    return BuildResult(
        part.dir, records, {}, [], job.key, time.monotonic() - t0, notes, resumed, shard, finished, len(job.ranges)
    )


def _run_full(part, job: _Job, done: Set[int], notes: List[str], max_map_size, t0: float) -> BuildResult:
    """Render what is missing, merge every chunk in plan order, seal and publish."""

    expected = sum(len(t.variants) for t in job.tasks)
    with _executor(job) as ex:
        writer = PackWriter(part.out, job.target, expected, max_map_size, ex.writer)
        try:
            results, hist = _merge(part, job, done, ex, writer)
            if writer.count == 0:
                raise NoUsableSource(_nothing_usable(job, results))
            manifest = manifest_for(job.sset, job.tasks, results, job.recipe, job.target, job.seed, job.val, hist)
            manifest = writer.finish(manifest)
        except NoUsableSource:
            writer.abort()
            part.remove()  # nothing worth resuming
            raise
        except BaseException:
            writer.abort()  # the chunks stay for a rerun
            raise
    part.remove()
    notes += warnings_for(manifest["quantization_audit"])
    return BuildResult(
        part.out,
        manifest["records"],
        {k: v["count"] for k, v in manifest["splits"].items()},
        manifest["skipped"],
        manifest["fingerprint"],
        time.monotonic() - t0,
        notes,
        sum(len(job.chunk_tasks(k)) for k in done),
    )


def _merge(part, job: _Job, done: Set[int], ex, writer) -> Tuple[Dict[int, SourceResult], Any]:
    """Every chunk, in plan order, to the writer: duplicates dropped, errors per ``on_error``.

    Only the chunks' metadata is read here; the writer copies the records.
    Returns every source's result and the sum of the kept records' histograms.
    """
    jobs = [(k, job.chunk_tasks(k)) for k in range(len(job.ranges)) if k not in done]
    rendered = _rendered(part, job, ex, jobs)
    results: Dict[int, SourceResult] = {}
    seen: Dict[Tuple[str, str], str] = {}
    hist = _Hist()  # summed as chunks arrive: memory stays flat however many sources
    for k, (a, b) in enumerate(job.ranges):
        if k not in done and next(rendered) != k:
            raise BuildError(f"internal error: chunk {k} out of order")
        path = chunks.chunk_path(part.dir, k)
        try:
            ch = chunks.Chunk(path, job.key, k, job.tasks[a:b])
        except (chunks.ChunkError, OSError, ValueError) as e:
            raise BuildError(f"{part.dir}: chunk {k} is unusable ({e}); rerun the same command") from None
        keep = []
        for task, res, sizes in zip(job.tasks[a:b], ch.results, ch.sizes):
            keep.append(_take(job, task, res, len(sizes), seen))
            hist.add(res)
            results[task.index] = res
        records = sum(r.count for r in ch.results)
        writer.add(path, job.key, k, [t.index for t in job.tasks[a:b]], keep, records)
        if job.progress:
            job.progress(b, len(job.tasks))
    return results, hist.total


def _take(job: _Job, task: Task, res: SourceResult, n: int, seen: Dict[Tuple[str, str], str]) -> bool:
    """Whether one source's ``n`` records go into the pack: not if it failed or repeats an earlier source."""
    if res.error and not res.duplicate_of and job.on_error == "fail":
        raise SourceFailed(f"{task.source.path}: {res.error}")
    ident = (res.sha256, res.mask_sha256)
    if not res.error and ident in seen:  # same image (and mask) twice: keep the first in plan order
        res.duplicate_of, res.hist = seen[ident], None
        res.error = f"duplicate of {res.duplicate_of} (same content)"
    elif not res.error:
        seen[ident] = task.source.rel
    res.count = 0 if res.error else n
    return res.count > 0


def _nothing_usable(job: _Job, results: Dict[int, SourceResult]) -> str:
    """The 'no usable source' error: every source and why it was not used."""
    lines = [f"{t.source.rel}: {results[t.index].error}" for t in job.tasks if t.index in results]
    if not job.tasks:
        return "no usable source: the plan has no records (no sources, or 0 variants without the original)"
    more = f"\n  ... and {len(lines) - MAX_LISTED} more" if len(lines) > MAX_LISTED else ""
    return "no usable source; no pack written:\n  " + "\n  ".join(lines[:MAX_LISTED]) + more


class _Hist:
    """The sum of the kept sources' histograms (each source's own is dropped once added)."""

    def __init__(self) -> None:
        self.total = None

    def add(self, res: SourceResult) -> None:
        if res.hist is not None:
            self.total = res.hist.astype("int64") if self.total is None else self.total + res.hist
        res.hist = None
