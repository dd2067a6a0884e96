"""Composite ops: ``one_of`` and ``some_of`` choose which of their child ops fire."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

import numpy as np

from edgeaug.ops.base import Op, register


class Composite(Op):
    """Holds child ops (``ops = [...]`` in the recipe) and chooses which of them fire.

    The children's ``p`` are selection weights; a chosen child always fires.
    """

    composite = True

    def __init__(self, p: float = 1.0, ops: Sequence[Op] = (), **kw: Any) -> None:
        super().__init__(p, **kw)
        self.children: List[Op] = list(ops)

    def weights(self) -> Optional[np.ndarray]:
        w = np.array([c.p for c in self.children], np.float64)
        return w / w.sum() if w.sum() > 0 else None

    def choose(self, rng: np.random.Generator) -> List[int]:
        raise NotImplementedError


@register
class OneOf(Composite):
    """Exactly one child, picked with probability proportional to its ``p``."""

    name = "one_of"

    def choose(self, rng):
        w = self.weights()
        return [] if w is None else [int(rng.choice(len(w), p=w))]


@register
class SomeOf(Composite):
    """``n`` distinct children (weighted by ``p``), applied in recipe order."""

    name = "some_of"
    RANGES = {"n": ((1.0, 2.0), (0.0, 64.0))}
    INTEGERS = ("n",)

    def choose(self, rng):
        w = self.weights()
        n = self.integer(rng, "n")
        n = 0 if w is None else min(n, int(np.count_nonzero(w)))
        return sorted(int(i) for i in rng.choice(len(w), size=n, replace=False, p=w)) if n else []
