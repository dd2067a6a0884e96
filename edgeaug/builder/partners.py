"""Partners of multi-image ops: which sources a record combines with, loaded once per worker process.

A record's partners are drawn (by the op's ``sample``, from the record's own
generator) as indices among its split's other sources (the task's
``candidates`` without the record's own source), so the split is never crossed
and the draw never depends on the worker count, executor or shard.  A partner
that cannot be used (unreadable, undecodable) is replaced by the next candidate
in the list, deterministically; the op's params record the indices used (and
``drawn`` when a fallback happened), the partners' paths (``partner_rels``) and
the first 16 hex digits of their content hashes (``partner_sha``), so
``explain`` names them and ``verify --source`` regenerates the record.

Decoded partners are cached per process in a small LRU bounded in bytes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

MAX_FALLBACK = 16  # candidates tried after a partner that fails to load; then the tile stays empty
CACHE_BYTES = 256 << 20  # decoded partners kept per process
CACHE_ENTRIES = 64

_cache: "OrderedDict[tuple, Any]" = OrderedDict()
_cache_lock = threading.Lock()  # Dask workers render on threads
_cache_size = [0]


@dataclass
class Partner:
    """One loaded partner: its RGB image, labels in its pixels, and class label."""

    rel: str
    sha256: str
    image: np.ndarray
    labels: Any
    label: int


class Partners:
    """The partner candidates of one task: ``candidates`` minus the source at ``own``."""

    def __init__(self, candidates: Sequence[Any], own: int, fill: int, load: Callable[[Any, int], Any]) -> None:
        # ``load``: render's load_source (passed in: render imports this module, not the reverse)
        self.candidates, self.own, self.fill, self.load = candidates, own, fill, load
        self.used: Dict[str, str] = {}  # rel -> sha256 of every partner rendered with (for resume checks)

    @property
    def n(self) -> int:
        """How many candidates a partner is drawn among."""
        return len(self.candidates) - (1 if 0 <= self.own < len(self.candidates) else 0)

    def source(self, i: int) -> Any:
        """Candidate ``i``: the ``i``-th source of the split, skipping the record's own."""
        return self.candidates[i + 1 if 0 <= self.own <= i else i]

    def resolve(self, params: Dict[str, Any]) -> List[Partner]:
        """Load the partners ``params["partners"]`` names (falling back to the next candidates), recording
        in ``params`` the indices used, their paths and hashes."""
        if "partners" not in params:  # an op without partners (scale_jitter)
            return []
        drawn = [int(i) for i in params["partners"]]
        got, used = [], []
        for i in drawn:
            p, k = self._first_usable(i)
            if p is not None:
                got.append(p)
                used.append(k)
        params["partners"] = used
        if used != drawn:
            params["drawn"] = drawn
        params["partner_rels"] = [p.rel for p in got]
        params["partner_sha"] = [p.sha256[:16] for p in got]
        for p in got:
            self.used[p.rel] = p.sha256
        return got

    def partner(self, k: int) -> Optional[Partner]:
        """Candidate ``k`` loaded (cached), or None when it cannot be used (the in-process API overrides it)."""
        return load_partner(self.source(k), self.fill, self.load)

    def _first_usable(self, i: int):
        for step in range(min(self.n, MAX_FALLBACK + 1)):
            k = (i + step) % self.n
            p = self.partner(k)
            if p is not None:
                return p, k
        return None, None


def load_partner(source: Any, fill: int, load_source: Callable[[Any, int], Any]) -> Optional[Partner]:
    """A partner through the build's own :func:`~.render.load_source`, cached; None when it cannot be used."""
    import os

    stamps = []
    for path in (source.path, source.mask):  # the image and its mask file, if any
        try:
            st = os.stat(path) if path else None
            stamps.append((st.st_mtime_ns, st.st_size) if st else None)
        except OSError:
            stamps.append(None)
    # The source itself (a frozen dataclass: its labels from the annotations, by value) and its files' stamps:
    # a file changed in place, or annotations edited between two builds in one process, make a new entry.
    key = (source, fill, tuple(stamps))
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    loaded = load_source(source, fill)
    p = None
    if loaded.error is None:
        p = Partner(source.rel, loaded.sha256, loaded.image, loaded.labels, source.label)
    _remember(key, p)
    return p


def _nbytes(p: Optional[Partner]) -> int:
    if p is None:
        return 0
    inst = p.labels.instances
    return p.image.nbytes + (inst.nbytes if inst is not None else 0)


def _remember(key: tuple, p: Optional[Partner]) -> None:
    with _cache_lock:
        if key in _cache:
            return
        _cache[key] = p
        _cache_size[0] += _nbytes(p)
        while len(_cache) > 1 and (_cache_size[0] > CACHE_BYTES or len(_cache) > CACHE_ENTRIES):
            _, old = _cache.popitem(last=False)
            _cache_size[0] -= _nbytes(old)


def clear_cache() -> None:
    """Forget every cached partner (tests; a long-lived process between builds)."""
    with _cache_lock:
        _cache.clear()
        _cache_size[0] = 0
