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

    [[ops]]
    op = "one_of"            # or "some_of" with n = [1, 2]
    p = 0.5
    ops = [{op = "gaussian_blur", sigma = [0.3, 1.0]}, {op = "motion_blur", p = 0.5}]

Each op table takes ``op``, ``p`` and the op's ranges as ``[low, high]``
pairs (a single number means a fixed value).  A multi-image op (``mosaic``,
``mixup``, ``cutmix``, ``copy_paste``, ``scale_jitter``) renders the output
frame from several sources, so it must be the first op (or a child of a
first ``one_of`` whose children are all multi-image ops); the ops after it work on that frame (their geometry
is one more warp).  ``plain_variants = N``: the last N variants of each
source skip the multi-image op (Ultralytics' ``close_mosaic``).  Unknown ops, unknown or
out-of-range parameters are errors naming the file and field.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from importlib.resources import files
from pathlib import Path
from typing import Any, List, Tuple

from edgeaug.config import camera as _camera  # noqa: F401  (installs the camera op's profile reader)
from edgeaug.config.fields import _REQUIRED, ConfigError, Fields, load_toml
from edgeaug.ops.registry import OPS

RESIZE_MODES = ("squash", "letterbox", "center_crop")
BORDERS = ("constant", "reflect")
MAX_NESTING = 8  # one_of inside some_of inside ...: a sane bound, not a recursion bomb
# The shipped recipes: package data (a wheel installs them with the package).
RECIPE_DIR = Path(str(files("edgeaug.config") / "recipes"))
DEFAULT_RECIPE = RECIPE_DIR / "default.toml"


@dataclass(frozen=True)
class OpSpec:
    """One op of a recipe: its name, probability and validated ranges."""

    op: str
    p: float
    ranges: Tuple[Tuple[str, Tuple[float, float]], ...]
    options: Tuple[Tuple[str, Any], ...] = ()
    children: Tuple["OpSpec", ...] = ()  # the ``ops`` of one_of / some_of

    def build(self) -> Any:
        kw = {"ops": [c.build() for c in self.children]} if OPS[self.op].composite else {}
        return OPS[self.op](self.p, **dict(self.ranges), **dict(self.options), **kw)

    def to_dict(self) -> dict:
        d = {"op": self.op, "p": self.p, **{k: list(v) for k, v in self.ranges}, **dict(self.options)}
        if OPS[self.op].composite:
            d["ops"] = [c.to_dict() for c in self.children]
        return d


@dataclass(frozen=True)
class Recipe:
    variants: int
    include_original: bool
    resize: str
    border: str
    fill: int
    min_visibility: float
    ops: Tuple[OpSpec, ...]
    plain_variants: int = 0  # the last N variants of each source skip the multi-image op (close_mosaic)
    origin: str = field(default="", compare=False)  # the file it was read from, for messages; not in to_dict

    def to_dict(self) -> dict:
        """Canonical form stored in the manifest (every default made explicit)."""
        return {
            "variants": self.variants,
            "include_original": self.include_original,
            "resize": self.resize,
            "border": self.border,
            "fill": self.fill,
            "min_visibility": self.min_visibility,
            "ops": [o.to_dict() for o in self.ops],
            # only when set, so recipes without it keep their canonical form (and pack fingerprints)
            **({"plain_variants": self.plain_variants} if self.plain_variants else {}),
        }

    def plain(self, variant: int) -> bool:
        """Whether ``variant`` is one of the last ``plain_variants`` (no multi-image op)."""
        return variant > self.variants - self.plain_variants

    def with_variants(self, k: int | None) -> "Recipe":
        if k is None:
            return self
        if not 0 <= k <= 10000:
            raise ConfigError(f"--variants: {k} is outside 0..10000")
        return replace(self, variants=k)


def list_recipes() -> List[Path]:
    """The shipped recipes (``default``, ``detection``, ...), by name."""
    return sorted(RECIPE_DIR.glob("*.toml"))


def recipe_path(name_or_path: str | Path | None = None) -> Path:
    """A recipe file: an existing path, else a shipped recipe's name (``detection``), else the default."""
    if name_or_path is None:
        return DEFAULT_RECIPE
    p = Path(name_or_path)
    if p.is_file() or p.suffix == ".toml" or len(p.parts) > 1:
        return p  # a path: load_toml names the problem if it cannot be read
    shipped = RECIPE_DIR / f"{p.name}.toml"
    if shipped.is_file():
        return shipped
    names = ", ".join(r.stem for r in list_recipes())
    raise ConfigError(f"unknown recipe {str(name_or_path)!r}: not a file and not one of the shipped recipes: {names}")


def describe_recipe(path: Path) -> str:
    """The first sentence of a recipe file's leading comment (its description), or ''."""
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        words.append(line.lstrip("#").strip())
    text = " ".join(w for w in words if w)
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def load_recipe(path: str | Path | None = None) -> Recipe:
    """Load and validate a recipe: a file path or a shipped recipe's name (the default when None)."""
    p = recipe_path(path)
    return replace(parse_recipe(load_toml(p), p.name, base=p.parent), origin=str(p))


def parse_recipe(data: dict, where: str = "<recipe>", base: Path | Tuple[Path, ...] | None = None) -> Recipe:
    """Validate a parsed TOML table into a Recipe.

    ``base`` is the recipe file's folder: ops that name files (``onnx``'s
    ``model``) resolve relative paths against it (the current folder if None).
    A tuple of folders marks an untrusted recipe (a pack's manifest): its files
    must be relative paths that stay inside one of them.
    """
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
        ops=tuple(parse_op(t, where, f"ops[{i}]", base=base) for i, t in enumerate(raw_ops)),
        plain_variants=top.int("plain_variants", default=0, lo=0, hi=10000),
    )
    top.done()
    if recipe.variants == 0 and not recipe.include_original:
        top.fail("variants", "0 variants without include_original leaves nothing to build")
    if recipe.plain_variants > recipe.variants:
        top.fail("plain_variants", f"{recipe.plain_variants} is more than the {recipe.variants} variants")
    _check_multi(recipe.ops, top)
    return recipe


def has_multi(recipe: "Recipe") -> bool:
    """Whether the recipe has a multi-image stage (its first op, or a first ``one_of`` of them)."""
    return bool(recipe.ops) and (
        is_multi(recipe.ops[0].op) or any(is_multi(n) for _, n in _nested(recipe.ops[0], "ops[0]"))
    )


def _check_multi(ops: Tuple[OpSpec, ...], top: Fields) -> None:
    """A multi-image op is the first op, or one of the children of a first ``one_of`` of multi-image ops only."""
    why = "it renders the output frame from several images, so it must be the first op of the recipe (or a child "
    why += "of a first one_of whose children are all multi-image ops); the ops after it work on its frame"
    for i, o in enumerate(ops):
        if is_multi(o.op) and i > 0:
            top.fail(f"ops[{i}].op", f"{o.op} is a multi-image op: {why}")
        inner = [(path, name) for path, name in _nested(o, f"ops[{i}]") if is_multi(name)]
        if not inner:
            continue
        flat = o.op == "one_of" and all(is_multi(c.op) for c in o.children)
        if i > 0 or not flat:
            path, name = inner[0]
            top.fail(f"{path}.op", f"{name} is a multi-image op: {why}")


def _nested(o: OpSpec, path: str):
    """(path, op name) of every op inside composite ``o``, depth first."""
    for j, c in enumerate(o.children):
        yield f"{path}.ops[{j}]", c.op
        yield from _nested(c, f"{path}.ops[{j}]")


def is_multi(name: str) -> bool:
    """Whether op ``name`` combines several images (``mosaic``, ``mixup``, ...)."""
    return bool(getattr(OPS.get(name), "multi", False))


def parse_op(table: Any, where: str, prefix: str, depth: int = 0, base: Any = None) -> OpSpec:
    """Validate one ``[[ops]]`` table against its op's declared ranges.

    Composite ops (``one_of``, ``some_of``) validate their nested ``ops``
    recursively; errors name the path, e.g. ``ops[3].ops[1].degrees``.
    """
    f = Fields(table, where, prefix)
    name = f.str("op")
    if name not in OPS:
        f.fail("op", f"unknown op {name!r}; known ops: {', '.join(sorted(OPS))}")
    p = f.num("p", default=1.0, lo=0.0, hi=1.0)
    children: Tuple[OpSpec, ...] = ()
    if OPS[name].composite:
        children = _parse_children(f, where, prefix, depth, base)
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
    bad = OPS[name].check(dict(ranges), dict(options))
    if bad:
        f.fail(*bad)
    resolve = getattr(OPS[name], "resolve_options", None)
    if resolve is not None:  # ops naming files resolve them against the recipe's folder
        options = list(resolve(dict(options), base, f).items())
    return OpSpec(name, p, tuple(ranges), tuple(options), children)


def _parse_children(f: Fields, where: str, prefix: str, depth: int, base: Any = None) -> Tuple[OpSpec, ...]:
    raw = f.raw("ops", _REQUIRED)
    if not isinstance(raw, list) or not raw:
        f.fail("ops", "expected a non-empty array of op tables")

    if depth >= MAX_NESTING:
        f.fail("ops", f"composite ops nest deeper than {MAX_NESTING} levels")
    return tuple(parse_op(t, where, f"{prefix}.ops[{i}]", depth + 1, base) for i, t in enumerate(raw))
