"""Recipes: the declarative TOML that says how to augment.

Example::

    variants = 8              # augmented variants per source image
    include_original = true   # also store the unaugmented image (variant 0)
    resize = "squash"         # squash | letterbox | center_crop
    border = "constant"       # constant | reflect (pixels warped in from outside)
    fill = 0                  # border / letterbox value
    min_visibility = 0.3      # drop boxes that keep less of their area

    [[ops]]
    op = "hflip"
    p = 0.5

    [[ops]]
    op = "rotate"
    p = 0.5
    degrees = [-15, 15]

Each op table takes ``op``, ``p`` and the op's ranges as ``[low, high]``
pairs (a single number means a fixed value).  Unknown ops, unknown or
out-of-range parameters are errors naming the file and field.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Tuple

from .config import _REQUIRED, ConfigError, Fields, load_toml
from .ops import OPS

RESIZE_MODES = ("squash", "letterbox", "center_crop")
BORDERS = ("constant", "reflect")
DEFAULT_RECIPE = Path(__file__).resolve().parent / "recipes" / "default.toml"


@dataclass(frozen=True)
class OpSpec:
    """One op of a recipe: its name, probability and validated ranges."""

    op: str
    p: float
    ranges: Tuple[Tuple[str, Tuple[float, float]], ...]
    options: Tuple[Tuple[str, Any], ...] = ()

    def build(self) -> Any:
        return OPS[self.op](self.p, **dict(self.ranges), **dict(self.options))

    def to_dict(self) -> dict:
        return {"op": self.op, "p": self.p, **{k: list(v) for k, v in self.ranges},
                **dict(self.options)}


@dataclass(frozen=True)
class Recipe:
    variants: int
    include_original: bool
    resize: str
    border: str
    fill: int
    min_visibility: float
    ops: Tuple[OpSpec, ...]

    def to_dict(self) -> dict:
        """Canonical form stored in the manifest (every default made explicit)."""
        return {
            "variants": self.variants, "include_original": self.include_original,
            "resize": self.resize, "border": self.border, "fill": self.fill,
            "min_visibility": self.min_visibility,
            "ops": [o.to_dict() for o in self.ops],
        }

    def with_variants(self, k: int | None) -> "Recipe":
        if k is None:
            return self
        if not 0 <= k <= 10000:
            raise ConfigError(f"--variants: {k} is outside 0..10000")
        return Recipe(k, self.include_original, self.resize, self.border, self.fill,
                      self.min_visibility, self.ops)


def load_recipe(path: str | Path | None = None) -> Recipe:
    """Load and validate a recipe file (the shipped default when ``path`` is None)."""
    p = Path(path) if path is not None else DEFAULT_RECIPE
    return parse_recipe(load_toml(p), p.name)


def parse_recipe(data: dict, where: str = "<recipe>") -> Recipe:
    """Validate a parsed TOML table into a Recipe."""
    top = Fields(data, where)
    raw_ops = top.raw("ops", [])
    if not isinstance(raw_ops, list):
        top.fail("ops", "expected an array of tables ([[ops]])")
    recipe = Recipe(
        variants=top.int("variants", default=4, lo=0, hi=10000),
        include_original=top.bool("include_original", default=True),
        resize=top.str("resize", default="squash", choices=RESIZE_MODES),
        border=top.str("border", default="constant", choices=BORDERS),
        fill=top.int("fill", default=0, lo=0, hi=255),
        min_visibility=top.num("min_visibility", default=0.3, lo=0.0, hi=1.0),
        ops=tuple(parse_op(t, where, f"ops[{i}]") for i, t in enumerate(raw_ops)),
    )
    top.done()
    if recipe.variants == 0 and not recipe.include_original:
        top.fail("variants", "0 variants without include_original leaves nothing to build")
    return recipe


def parse_op(table: Any, where: str, prefix: str) -> OpSpec:
    """Validate one ``[[ops]]`` table against its op's declared ranges."""
    f = Fields(table, where, prefix)
    name = f.str("op")
    if name not in OPS:
        f.fail("op", f"unknown op {name!r}; known ops: {', '.join(sorted(OPS))}")
    p = f.num("p", default=1.0, lo=0.0, hi=1.0)
    ranges = []
    for key, (default, (lo, hi)) in OPS[name].RANGES.items():
        v = f.raw(key, list(default))
        pair = (v, v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            f.fail(key, f"expected a number or a [low, high] pair, got {v!r}"[:120])
        a, b = (f.check_num(key, x, lo, hi) for x in pair)
        if a > b:
            f.fail(key, f"low {a} is greater than high {b}")
        ranges.append((key, (a, b)))
    options = []
    for key, (typ, default) in OPS[name].OPTIONS.items():
        v = f.raw(key, default if default is not None else _REQUIRED)
        if isinstance(v, bool) != (typ is bool) or not isinstance(v, typ):
            f.fail(key, f"expected {typ.__name__}, got {type(v).__name__} {v!r}"[:120])
        options.append((key, v))
    f.done()
    return OpSpec(name, p, tuple(ranges), tuple(options))
