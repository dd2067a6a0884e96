"""Manifest validation: every field a reader or a command relies on, type- and range-checked.

The manifest is untrusted JSON (a crafted pack can carry a valid fingerprint),
so :func:`validate_manifest` checks it before anything reads a field; the first
bad field is named in a :class:`~edgeaug.device.format.FormatError`.  Like
:mod:`edgeaug.device.format`, importable with only numpy and the standard
library (Python >= 3.9).
"""

from __future__ import annotations

from typing import Any, Tuple

from .format import (  # bundle: drop
    DTYPES,
    FORMAT_VERSION,
    MAX_RECORDS,
    READ_VERSIONS,
    SPLITS,
    FormatError,
    newer_format,
)

LAYOUTS = ("NHWC", "NCHW")
COLORS = {"RGB": 3, "BGR": 3, "GRAY": 1}
MAX_SEED = 2**63 - 1


def validate_manifest(m: Any) -> None:
    """Check every manifest field a reader or a command (inspect, explain, preview, verify, eval) relies on.

    The fingerprint is a plain hash, so a crafted pack can carry a valid one:
    types and ranges are checked here, and the first bad field is named in the
    :class:`FormatError`.  Unknown fields are allowed (newer writers add some).
    A missing field names the pack's format version and writer (an older pack).
    """
    _mf(m, None, "manifest", dict)
    version = _mf(m, "format_version", "", int)
    if version > FORMAT_VERSION:
        raise FormatError(f"manifest: format_version: {newer_format(version)}")
    if version not in READ_VERSIONS:
        raise FormatError(f"manifest: format_version: pack format {version} is unknown")
    comp = _mf(m, "compression", "", dict, optional=True)
    if comp is not None:
        _mf(comp, "codec", "compression", str, choices=("none", "zlib", "zstd"))
        _mf(comp, "level", "compression", int, 0, 22)
    try:
        _check_fields(m)
    except _Missing as e:
        v = m.get("versions")
        by = f", written by edgeaug {v.get('edgeaug')}" if isinstance(v, dict) and v.get("edgeaug") else ""
        raise FormatError(
            f"{e} (a format version {m['format_version']} pack{by}: an older or foreign writer; rebuild it)"
        ) from None


class _Missing(FormatError):
    """A required manifest field is absent."""


def _check_fields(m: dict) -> None:
    t = _mf(m, "target", "", dict)
    for key, hi in (("height", 1 << 16), ("width", 1 << 16), ("channels", 4)):
        _mf(t, key, "target", int, 1, hi)
    _mf(t, "layout", "target", str, choices=LAYOUTS)
    _mf(t, "dtype", "target", str, choices=tuple(DTYPES))
    for key, kind in (("input_name", str), ("name", str)):
        _mf(t, key, "target", kind, optional=True)
    color = _mf(t, "color", "target", str, choices=tuple(COLORS), optional=True)
    if color is not None and COLORS[color] != t["channels"]:
        raise FormatError(f"manifest: target.color: {color} does not have {t['channels']} channels")
    dev = _mf(t, "device", "target", dict, optional=True)
    if dev is not None:
        _mf(dev, "name", "target.device", str, optional=True)
        _mf(dev, "arch", "target.device", str, optional=True)
        _mf(dev, "word_size", "target.device", int, 32, 64, optional=True)
    _check_quantization(t)
    n = _mf(m, "records", "", int, 0, MAX_RECORDS - 1)
    splits = _mf(m, "splits", "", dict)
    for s in SPLITS:
        sp = _mf(splits, s, "splits", dict)
        start, count = _mf(sp, "start", f"splits.{s}", int, 0, n), _mf(sp, "count", f"splits.{s}", int, 0, n)
        if start + count > n:
            raise FormatError(f"manifest: splits.{s}: [{start}, +{count}) outside {n} records")
    for i, c in enumerate(_mf(m, "classes", "", list)):
        _mf({"c": c}, "c", f"classes[{i}]", str)
    _mf(m, "seed", "", int, 0, MAX_SEED)
    fp = _mf(m, "fingerprint", "", str)
    if len(fp) != 64 or fp.strip("0123456789abcdef"):
        raise FormatError("manifest: fingerprint: expected 64 lowercase hex digits")
    for i, e in enumerate(_mf(m, "sources", "", list)):
        where = f"sources[{i}]"
        _mf(e, None, where, dict)
        _safe_relpath(_mf(e, "path", where, str), f"{where}.path")
        _mf(e, "label", where, int, -1, 2**31 - 1)
        _mf(e, "split", where, str, choices=tuple(SPLITS))
        _mf(e, "sha256", where, str)
        _mf(e, "records", where, int, 0, n)
        for key in ("skipped", "mask_sha256", "duplicate_of"):
            _mf(e, key, where, str, optional=True)
    for i, e in enumerate(_mf(m, "skipped", "", list)):
        _mf(e, None, f"skipped[{i}]", dict)
        _mf(e, "path", f"skipped[{i}]", str)
        _mf(e, "reason", f"skipped[{i}]", str)
    r = _mf(m, "recipe", "", dict)
    k = _mf(r, "variants", "recipe", int, 0)
    _mf(r, "plain_variants", "recipe", int, 0, k, optional=True)  # the last N of variants 1..K (close_mosaic)
    _mf(r, "include_original", "recipe", bool)
    _mf(r, "resize", "recipe", str, optional=True)
    _mf(r, "fill", "recipe", int, 0, 255, optional=True)  # the online shift's border
    _mf(r, "min_visibility", "recipe", (int, float), 0, 1, optional=True)
    flip = _mf(m, "keypoint_flip_idx", "", list, optional=True)
    for i, k in enumerate(flip or ()):
        _mf({"k": k}, "k", f"keypoint_flip_idx[{i}]", int, 0, len(flip) - 1)
    for i, op in enumerate(_mf(r, "ops", "recipe", list)):
        _mf(op, None, f"recipe.ops[{i}]", dict)
        _mf(op, "op", f"recipe.ops[{i}]", str)
    _check_workstation_fields(m)


def _check_workstation_fields(m: dict) -> None:
    """What ``inspect`` shows: val fraction, per-split class counts, versions, the quantization audit."""
    _mf(m, "val_fraction", "", (int, float), 0, 1)
    _mf(m, "source_kind", "", str, optional=True)
    for split, per_class in _mf(m, "counts", "", dict).items():
        _mf(per_class, None, f"counts.{split}", dict)
        for name, n in per_class.items():
            _mf({"n": n}, "n", f"counts.{split}.{name}", int, 0)
    for k, v in _mf(m, "versions", "", dict).items():
        _mf({"v": v}, "v", f"versions.{k}", str)
    a = _mf(m, "quantization_audit", "", dict, optional=True)
    if a is None:
        return
    _mf(a, "values", "quantization_audit", int, 0, optional=True)
    _mf(a, "warning", "quantization_audit", bool, optional=True)
    _mf(a, "clip_warn_threshold", "quantization_audit", (int, float), 0, 1, optional=True)
    for c, ch in enumerate(_mf(a, "channels", "quantization_audit", list)):
        where = f"quantization_audit.channels[{c}]"
        _mf(ch, None, where, dict)
        for key in ("clip_low", "clip_high", "mae", "max_error"):
            _mf(ch, key, where, (int, float), 0, 1e12)


def _check_quantization(t: dict) -> None:
    """The target fields that turn pixels into stored values (the loader's online border fill uses them)."""
    c = t["channels"]
    for key, lo in (("mean", -1e6), ("std", 1e-12)):
        vals = _mf(t, key, "target", list, optional=True)
        if vals is None:
            continue
        if len(vals) != c:
            raise FormatError(f"manifest: target.{key}: {len(vals)} values for {c} channels")
        for i, v in enumerate(vals):
            _mf({"v": v}, "v", f"target.{key}[{i}]", (int, float), lo, 1e6)
    if t["dtype"] in ("uint8", "int8"):  # integer tensors hold quantized values
        _mf(t, "scale", "target", (int, float), 1e-12, 1e6)
        lo, hi = (0, 255) if t["dtype"] == "uint8" else (-128, 127)
        _mf(t, "zero_point", "target", int, lo, hi, optional=True)


def _mf(
    d: Any,
    key: Any,
    where: str,
    kind: Any,
    lo: Any = None,
    hi: Any = None,
    choices: Tuple[str, ...] = (),
    optional: bool = False,
) -> Any:
    """One manifest field: ``d[key]`` (or ``d`` itself when key is None), type- and range-checked."""
    name = where if key is None else f"{where}.{key}" if where else key
    if key is None:
        v = d
    elif not isinstance(d, dict) or key not in d:
        if optional:
            return None
        raise (_Missing if isinstance(d, dict) else FormatError)(f"manifest: {name}: missing")
    else:
        v = d[key]
    if not isinstance(v, kind) or (isinstance(v, bool) and kind is not bool):
        want = " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__
        raise FormatError(f"manifest: {name}: expected {want}, got {type(v).__name__}")
    if (lo is not None and not v >= lo) or (hi is not None and not v <= hi):  # NaN fails both
        raise FormatError(f"manifest: {name}: {v} is outside [{lo}, {hi}]")
    if choices and v not in choices:
        raise FormatError(f"manifest: {name}: {v[:40]!r} is not one of {list(choices)}")
    return v


def _safe_relpath(path: str, name: str) -> None:
    """A source path must stay inside the source root: relative, no '..', no NUL."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\0" in path or ".." in parts:
        raise FormatError(f"manifest: {name}: {path[:80]!r} is not a relative path inside the source root")
