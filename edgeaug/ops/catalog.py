"""The op catalogue: every registered op with its kind, parameters, ranges and options (``edgeaug ops``)."""

from __future__ import annotations

from typing import Any, Dict, List

from edgeaug.ops.base import Op
from edgeaug.ops.registry import OPS


def kind(cls: type) -> str:
    """How the pipeline runs an op: geometric (one composed warp), tone (one fused table), composite, ..."""
    from edgeaug.ops.photometric import ToneOp

    if getattr(cls, "composite", False):
        return "composite"
    if getattr(cls, "multi", False):
        return "multi-image"
    if getattr(cls, "field", False):
        return "geometric (field)"
    if getattr(cls, "geometric", False):
        return "geometric"
    return "tone (fused)" if issubclass(cls, ToneOp) else "photometric"


def summary(cls: type) -> str:
    """The first sentence of an op's docstring (its first paragraph, joined), or ''."""
    if not cls.__doc__ or cls.__doc__ == Op.__doc__:
        return ""
    para = " ".join(line.strip() for line in cls.__doc__.strip().split("\n\n")[0].splitlines())
    end = para.find(". ")
    return para if end < 0 else para[: end + 1]


def describe(name: str) -> Dict[str, Any]:
    """One op as plain data: name, kind, summary, ranges (default and bounds), options (type and default)."""
    cls = OPS[name]
    ranges = {
        k: {"default": list(d), "bounds": list(b), "integer": k in cls.INTEGERS} for k, (d, b) in cls.RANGES.items()
    }
    options = {k: {"type": t.__name__, "default": d} for k, (t, d) in cls.OPTIONS.items()}
    return {"op": name, "kind": kind(cls), "summary": summary(cls), "ranges": ranges, "options": options}


def catalogue() -> List[Dict[str, Any]]:
    """Every registered op, by name."""
    return [describe(n) for n in sorted(OPS)]


def text_lines(entry: Dict[str, Any]) -> List[str]:
    """A human-readable description of one catalogue entry."""
    lines = [f"{entry['op']} ({entry['kind']})" + (f": {entry['summary']}" if entry["summary"] else "")]
    for k, r in entry["ranges"].items():
        lo, hi = r["default"]
        blo, bhi = r["bounds"]
        integer = ", integer" if r["integer"] else ""
        lines.append(f"    {k} = [{_num(lo)}, {_num(hi)}]  (allowed {_num(blo)} .. {_num(bhi)}{integer})")
    for k, o in entry["options"].items():
        default = "required" if o["default"] is None else repr(o["default"])
        lines.append(f"    {k}: {o['type']} = {default}")
    return lines


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"
