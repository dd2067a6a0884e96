"""Resuming: which chunk files of an interrupted build (``OUT.partial/``) can be reused.

A chunk is reused when it is complete, of this plan, and every source it
rendered still has the content it was rendered from (image and mask).  A
changed source starts the whole build over (a shard redoes only its own
chunks); a damaged chunk is rendered again.  The answer is a value
(:class:`Unusable`), never an error message to parse.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from edgeaug.builder import chunks
from edgeaug.builder.partial import Partial, WriteError
from edgeaug.builder.plan import BuildError, SourceResult, Task
from edgeaug.builder.render import SourceDecodeError, mask_digest, read_source


@dataclass(frozen=True)
class Unusable:
    """Why a chunk file of an interrupted build cannot be reused."""

    reason: str
    changed: Optional[str] = None  # the source (REL) whose content changed since the chunk was rendered


def prepare(part: Partial, job: Any, resume: Optional[bool], shard) -> Tuple[Set[int], List[str]]:
    """The chunks already rendered for ``job``'s plan and still valid, after starting over where needed.

    ``resume``: None resumes when the inputs match, True insists, False starts over.
    ``shard`` (I, N): only that shard's chunks are looked at (other shards may be writing theirs).
    Returns the chunk numbers to reuse and notes for the result's warnings.
    """

    notes = [part.note] if part.note else []
    found = part.plan()
    other = "the partial build was made from other sources, recipe, target, seed, val or versions"
    if resume is False and shard is not None:
        for k in range(shard[0], len(job.ranges), shard[1]):  # only this shard's: others may be running
            chunks.chunk_path(part.dir, k).unlink(missing_ok=True)
    elif resume is False:
        part.clear()
    elif found is not None and found != job.key:
        if resume:
            raise WriteError(f"cannot resume {part.out}: {other}")
        notes.append(f"started over: {other}")
    elif resume and (found is None or not any(part.dir.glob("chunk-*.bin"))):
        raise WriteError(f"cannot resume {part.out}: no partial build")
    part.start(job.key)
    if shard is None:
        part.drop_stale_temporaries()
    mine = [k for k in range(len(job.ranges)) if shard is None or k % shard[1] == shard[0]]
    done: Set[int] = set()
    for k in mine:
        path = chunks.chunk_path(part.dir, k)
        if not path.exists():
            continue
        why = _unusable(path, job, k)
        if why is None:
            done.add(k)
        elif why.changed and shard is None:
            if resume:
                raise BuildError(
                    f"cannot resume: {why.changed} changed since the interrupted build "
                    f"(run again without --resume to start over)"
                )
            part.clear()
            part.start(job.key)
            return set(), notes + [f"started over: {why.changed} changed since the interrupted build"]
        else:
            path.unlink()  # damaged, or a source changed (a shard redoes only its own chunks)
            notes.append(f"rendering {path.name} again: {why.reason}")
    return done, notes


def _unusable(path: Path, job: Any, k: int) -> Optional[Unusable]:
    """Why an existing chunk file cannot be used, or None."""
    try:
        results = chunks.Chunk(path, job.key, k, job.chunk_tasks(k)).results
    except (chunks.ChunkError, OSError, ValueError, KeyError, TypeError) as e:
        return Unusable(f"the partial build is damaged ({e})")
    changed = _changed_source(job.chunk_tasks(k), {r.index: r for r in results})
    return Unusable(f"{changed} changed since the interrupted build", changed) if changed else None


def _changed_source(tasks: Sequence[Task], results: Dict[int, SourceResult]) -> Optional[str]:
    """The first already-rendered source whose image or mask (or a multi-image op's partner of its records)
    no longer has the content it was built from."""

    paths: Dict[int, Dict[str, Any]] = {}  # per candidate list (shared by a split's tasks): rel -> path
    for t in tasks:
        res = results[t.index]
        try:
            sha = hashlib.sha256(read_source(t.source.path)).hexdigest()
        except SourceDecodeError:
            sha = ""
        if sha != res.sha256:
            return t.source.rel
        if res.sha256:  # the mask is read only once the image was
            try:
                mask = mask_digest(t.source)
            except SourceDecodeError:
                mask = ""
            if mask != res.mask_sha256:
                return f"{t.source.rel} (its mask)"
        if res.partner_sha256:
            if id(t.candidates) not in paths:
                paths[id(t.candidates)] = {s.rel: s.path for s in t.candidates}
            partner = _changed_partner(t, res, paths[id(t.candidates)])
            if partner:
                return partner
    return None


def _changed_partner(t: Task, res: SourceResult, paths: Dict[str, Any]) -> Optional[str]:
    """A partner (``res.partner_sha256``: rel -> sha256) whose content changed: "REL (a partner of SOURCE)".

    A partner that failed to load at build time was replaced by the next
    candidate and is not listed: repairing it later does not invalidate the chunk.
    """
    for rel, want in res.partner_sha256.items():
        try:
            sha = hashlib.sha256(read_source(paths[rel])).hexdigest() if rel in paths else ""
        except SourceDecodeError:
            sha = ""
        if sha != want:
            return f"{rel} (a partner of {t.source.rel})"
    return None
