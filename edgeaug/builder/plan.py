"""The plan: every record of the pack, in write order, as a pure function of the inputs.

(sources, recipe, seed, val fraction) -> a list of :class:`~.tasks.Task`, so the
pack's bytes never depend on the worker count, the executor or timing.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from edgeaug.builder.tasks import Candidates, SourceResult, Task  # noqa: F401  (their home was here: importers still find them)
from edgeaug.config.recipe import OpSpec, Recipe, has_multi
from edgeaug.sources.base import Source, SourceSet

ERROR_POLICIES = ("skip", "fail")


class BuildError(RuntimeError):
    """The build could not finish; the message says which source or step."""


def val_sources(sset: SourceSet, seed: int, fraction: float, usable: Optional[Callable[[Source], bool]] = None) -> set:
    """A seeded, class-stratified choice of source indices for validation.

    Each class's sources are ranked by sha256(seed, path) and ``round(fraction
    * n)`` of its ``n`` sources go to val: the first ones in that ranking, or
    with ``usable`` (:func:`usable`) the first ones that decode, so val holds
    exactly that many usable images whatever files are broken (those stay in
    train, where the render skips them by name).  Only the ranked prefix is
    checked.  Adding files to other classes does not change a class's choice.
    """
    if not 0.0 <= fraction < 1.0:
        raise BuildError(f"--val: {fraction} must be in [0, 1)")
    chosen = set()
    for c in [-1, *range(len(sset.classes))]:  # -1: sources without a class label
        members = [i for i, s in enumerate(sset.sources) if s.label == c]
        members.sort(key=lambda i: hashlib.sha256(f"{seed}\0{sset.sources[i].rel}".encode()).digest())
        want = int(round(fraction * len(members)))
        ok = (i for i in members if usable is None or usable(sset.sources[i]))
        chosen.update(itertools.islice(ok, want))
    return chosen


def usable(source: Source, fill: int = 0) -> bool:
    """Whether a source reads, decodes and labels: the render's own check (:func:`~.render.load_source`).

    The same bytes give the same verdict, so a source usable here renders; one
    that changes in between is caught by its content hash, as any change is.
    """
    from edgeaug.builder.render import load_source  # render imports this module

    return load_source(source, fill).error is None


def plan(sset: SourceSet, recipe: Recipe, seed: int, val: float) -> List[Task]:
    """Every record of the pack, in write order: train sources, then val sources.

    Train sources get variant 0 (the original, if the recipe includes it) and
    augmented variants 1..K; val sources only their original.  With ``val``,
    the sources that rank first for val are decoded once here, until each
    class has its count of usable ones (:func:`val_sources`).  A YOLO pose
    set without ``flip_idx`` and a recipe that mirrors is refused.
    """
    check_mirroring(sset, recipe)
    held = val_sources(sset, seed, val, lambda s: usable(s, recipe.fill))
    train_v = ((0,) if recipe.include_original else ()) + tuple(range(1, recipe.variants + 1))
    tasks = [Task(i, s, "train", train_v) for i, s in enumerate(sset.sources) if i not in held]
    tasks += [Task(i, s, "val", (0,)) for i, s in enumerate(sset.sources) if i in held]
    if has_multi(recipe):
        tasks = with_candidates(tasks, sset.origin)
    return tasks


def with_candidates(tasks: List[Task], origin: str = "") -> List[Task]:
    """Give each task its split's sources (plan order) as partner candidates, and its place among them.

    Partners of a train record are train sources only, and of a val record val
    sources only.  The list is a pure function of the plan, so the draws (indices
    into it) are the same whatever the worker count, executor or shard.
    """
    import dataclasses

    out = []
    for split in ("train", "val"):
        mine = [t for t in tasks if t.split == split]
        cands = Candidates([t.source for t in mine], origin, [t.index for t in mine])
        out += [dataclasses.replace(t, candidates=cands, position=k) for k, t in enumerate(mine)]
    return out


#: Ops whose matrix has a negative determinant (they swap left and right); rotations, crops, affine
#: (positive scale), perspective (corners move less than half the frame) never mirror.
MIRROR_OPS = frozenset({"hflip", "vflip"})


def mirroring_ops(ops: Sequence[OpSpec]) -> List[str]:
    """The names of the ops in ``ops`` that can fire and mirror (composites searched)."""
    found: List[str] = []
    for o in ops:
        if can_fire(o):
            found += [o.op] if o.op in MIRROR_OPS else mirroring_ops(o.children)
    return found


def can_fire(o: OpSpec) -> bool:
    """Whether an op ever fires: p > 0, and a composite has a child that can (``some_of`` n > 0)."""
    if o.p <= 0:
        return False
    if not o.children:
        return True
    return dict(o.ranges).get("n", (1, 1))[1] > 0 and any(can_fire(c) for c in o.children)


def check_mirroring(sset: SourceSet, recipe: Recipe) -> None:
    """Refuse a YOLO pose set without ``flip_idx`` when the recipe mirrors: left and right would swap."""
    if sset.kind != "yolo" or sset.keypoint_flip is not None or not any(s.keypoints for s in sset.sources):
        return
    ops = mirroring_ops(recipe.ops)
    if ops:
        from edgeaug.sources.datayaml import data_yaml

        where = data_yaml(sset.root)[0] or sset.root / "data.yaml"
        raise BuildError(
            f"{where}: flip_idx: missing, and the recipe mirrors images ({', '.join(sorted(set(ops)))}): every "
            f"mirrored record would have its left and right keypoints swapped. Add flip_idx (keypoint i of a "
            f"mirrored image is keypoint flip_idx[i], e.g. [0, 2, 1, 4, 3, ...] for a nose and left/right pairs; "
            f"[0, 1, 2, ...] when no keypoint has a left/right twin), or remove the mirroring ops from the recipe"
        )


def build_warnings(sset: SourceSet, recipe: Recipe) -> List[str]:
    """What a build tells the user once: the dataset's warnings, and a recipe that cannot change a pixel."""
    out = list(sset.warnings)
    copies = recipe.variants + (1 if recipe.include_original else 0)
    if copies > 1 and not any(can_fire(o) for o in recipe.ops):
        why = "has no ops" if not recipe.ops else "has no op that can fire (every p is 0)"
        out.append(
            f"recipe {recipe.origin or '(given in code)'} {why}: each source's {copies} records are identical copies; "
            f"use --variants 0 to store each image once"
        )
    return out


def render_versions() -> List[str]:
    """The library versions a record's bytes depend on besides the inputs: edgeaug, numpy, OpenCV.

    OpenCV is not bit-exact across versions, so every machine that renders
    part of a pack must report the same list (the plan's fingerprint holds it).
    """
    import numpy as np

    from edgeaug import __version__

    return [__version__, np.__version__, opencv_version()]


def opencv_version() -> str:
    """``cv2.__version__``, read without loading OpenCV where its wheel says it (the planning process never renders).

    Official opencv-python wheels (any flavour) ship ``cv2/version.py`` with
    ``opencv_version = "X.Y.Z.BUILD"``, and their ``cv2.__version__`` is
    ``X.Y.Z``; rolling builds and builds from source import cv2 to ask it.
    """
    import importlib.util
    import re

    spec = importlib.util.find_spec("cv2")  # finds the package without running it
    folder = Path(spec.origin).parent if spec is not None and spec.origin else None
    try:
        text = (folder / "version.py").read_text() if folder is not None else ""
    except OSError:
        text = ""
    official = re.search(r'^opencv_version = "(\d+\.\d+\.\d+)\.\d+"$', text, re.M)
    if official and re.search(r"^rolling = False$", text, re.M):
        return official.group(1)
    import cv2

    return cv2.__version__
