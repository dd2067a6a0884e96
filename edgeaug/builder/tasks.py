"""A planned task (one source's records) and what rendering it gives back.

Apart from :mod:`.plan` so that :mod:`.render` needs nothing of the planning
(the plan asks the render whether a source is usable).
"""

from __future__ import annotations

import dataclasses
import hashlib
import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from edgeaug.sources.base import Source


class Candidates:
    """The partner candidates of one split: its sources in plan order, one object shared by its tasks.

    Pickled (for a worker process or a Dask worker) as the dataset's path, the
    sources' indices and a digest of their paths, and rebuilt there by scanning
    the dataset again, once per process: a chunk of tasks would otherwise carry
    every source of the split (28 MB and 1.7 s per chunk for 10k COCO images
    with polygons).  A dataset that changed since planning is an error.
    """

    def __init__(self, sources: Sequence[Source], origin: str = "", indices: Sequence[int] = ()) -> None:
        self.sources, self.origin, self.indices = tuple(sources), origin, tuple(indices)
        self.digest = _digest(self.sources)

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> Source:
        return self.sources[i]

    def __iter__(self) -> Iterator[Source]:
        return iter(self.sources)

    def __reduce__(self):
        if not self.origin or len(self.indices) != len(self.sources):
            return (Candidates, (self.sources,))
        packed = zlib.compress(np.diff(np.asarray(self.indices, np.int64), prepend=0).astype("<i8").tobytes())
        return (_rescanned, (self.origin, packed, self.digest))


_RESCANNED: Dict[Tuple[str, str], Candidates] = {}  # per process: (origin, digest) -> candidates


def _rescanned(origin: str, packed: bytes, digest: str) -> Candidates:
    """The candidates in a worker process: the dataset scanned again (once per process), checked by digest."""
    key = (origin, digest)
    if key not in _RESCANNED:
        from edgeaug.sources.scan import scan

        sset = scan(origin)
        idx = np.cumsum(np.frombuffer(zlib.decompress(packed), "<i8"))
        if len(idx) and (idx.min() < 0 or idx.max() >= len(sset.sources)):
            raise ValueError(f"{origin}: the dataset changed since the build was planned")
        out = Candidates([sset.sources[int(i)] for i in idx], origin, idx.tolist())
        if out.digest != digest:
            raise ValueError(f"{origin}: the dataset changed since the build was planned (multi-image partners)")
        _RESCANNED.clear()  # one build at a time per process: keep memory bounded
        _RESCANNED[key] = out
    return _RESCANNED[key]


def _digest(sources: Sequence[Source]) -> str:
    h = hashlib.sha256()
    for s in sources:
        h.update(s.rel.encode("utf-8") + b"\0")
    return h.hexdigest()


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
    candidates: Any = field(default=(), compare=False, repr=False)  # Candidates, or () without a multi-image op
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
