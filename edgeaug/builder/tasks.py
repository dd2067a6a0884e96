"""A planned task (one source's records) and what rendering it gives back.

Apart from :mod:`.plan` so that :mod:`.render` needs nothing of the planning
(the plan asks the render whether a source is usable).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from edgeaug.sources.base import Source


@dataclass(frozen=True)
class Task:
    """Render ``variants`` of source number ``index`` into ``split``.

    With a multi-image op, ``candidates`` are the sources of the task's split
    in plan order (one tuple shared by the split's tasks) and ``position`` is
    this source's place in it: partners are drawn among the others, so a
    record never takes a partner from another split.
    """

    index: int
    source: Source
    split: str
    variants: Tuple[int, ...]
    candidates: Tuple[Source, ...] = field(default=(), compare=False, repr=False)
    position: int = -1


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
    partner_sha256: Dict[str, str] = field(default_factory=dict)  # rel -> sha256 of each partner used

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
