"""The plan: every record of the pack, in write order, as a pure function of the inputs.

(sources, recipe, seed, val fraction) -> a list of :class:`Task`, so the pack's
bytes never depend on the worker count, the executor or timing.
:class:`SourceResult` is what rendering one task gives back.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from edgeaug.config.recipe import Recipe
from edgeaug.sources.base import Source, SourceSet

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
    mask_sha256: str = ""  # of the mask file, when the source has one (a changed mask is a changed source)

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
