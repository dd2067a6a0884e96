"""Class names and keypoint settings from a dataset's ``data.yaml`` (YOLO) or ``classes.txt``.

YAML is read with PyYAML's ``safe_load``, which builds only plain data (it never
constructs objects or runs code), so quoting and escapes follow the YAML spec.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from edgeaug.sources.base import SourceError, read_text

YAML_FILES = ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml")


def load_yaml(text: str, where: str) -> Dict[str, Any]:
    """The top-level mapping of a YAML document; syntax errors name the file and line."""
    import yaml  # the [build] extra; imported here so the rest of sources needs no YAML

    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise SourceError(f"{where}{line}: invalid YAML: {e.problem or e}") from None
    except yaml.YAMLError as e:
        raise SourceError(f"{where}: invalid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SourceError(f"{where}: expected a mapping of keys (names, kpt_shape, ...)")
    return data


def yaml_entry(text: str, key: str, where: str) -> Any:
    """The value of top-level ``key`` (None if absent); ``names`` comes back as a list of strings."""
    value = load_yaml(text, where).get(key)
    return names_list(value, where) if key == "names" and value is not None else value


def names_list(value: Any, where: str) -> List[str]:
    """``names`` as a list: a YAML list, or an ``{id: name}`` map with ids 0..n-1."""
    if isinstance(value, list):
        items = value
    elif isinstance(value, dict):
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in value):
            raise SourceError(f"{where}: names: map keys must be class ids, got {list(value)[:5]}"[:160])
        if sorted(value) != list(range(len(value))):
            raise SourceError(f"{where}: names: class ids must be 0..{len(value) - 1}, got {sorted(value)}"[:160])
        items = [value[i] for i in range(len(value))]
    else:
        raise SourceError(f"{where}: names: expected a list or an id: name map, got {value!r}"[:160])
    if not all(isinstance(n, (str, int, float)) and not isinstance(n, bool) for n in items):
        raise SourceError(f"{where}: names: every class name must be a string")
    return [str(n) for n in items]


def data_yaml(root: Path) -> Tuple[Optional[Path], Dict[str, Any]]:
    """The dataset's data.yaml (or its other usual names) and its top-level mapping; (None, {}) if absent."""
    for name in YAML_FILES:
        p = root / name
        if p.is_file():
            return p, load_yaml(read_text(p), str(p))
    return None, {}


def class_names(root: Path) -> Tuple[Optional[List[str]], Optional[Tuple[int, int]]]:
    """Class names (and YOLO pose ``kpt_shape``) from data.yaml or classes.txt, if present."""
    p, data = data_yaml(root)
    if p is not None:
        names = names_list(data["names"], str(p)) if data.get("names") is not None else None
        kpt = data.get("kpt_shape")
        return names, kpt_shape(kpt, p) if kpt is not None else None
    for p in (root / "classes.txt", root / "labels" / "classes.txt"):
        if p.is_file():
            return [ln.strip() for ln in read_text(p).splitlines() if ln.strip()], None
    return None, None


def kpt_shape(v: Any, p: Path) -> Tuple[int, int]:
    """YOLO pose ``kpt_shape: [K, 2|3]``."""
    try:
        k, d = (int(x) for x in v)
    except (TypeError, ValueError):
        raise SourceError(f"{p}: kpt_shape: expected [keypoints, 2 or 3], got {v!r}") from None
    if k < 1 or d not in (2, 3):
        raise SourceError(f"{p}: kpt_shape: expected [keypoints, 2 or 3], got {v!r}")
    return k, d


def flip_idx(root: Path, k: int) -> Optional[Tuple[int, ...]]:
    """YOLO pose ``flip_idx``: keypoint ``i`` of a mirrored image is keypoint ``flip_idx[i]``.

    None when data.yaml has none.  It must be a permutation of ``0..k-1`` that
    swaps pairs (applying it twice gives the identity), as Ultralytics
    requires.  The identity ``[0, 1, ..., k-1]`` says the keypoints have no
    left/right pairs: mirroring keeps every keypoint's index.
    """
    p, data = data_yaml(root)
    v = data.get("flip_idx")
    if p is None or v is None:
        return None
    ok = isinstance(v, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in v)
    if not ok or sorted(v) != list(range(k)):
        raise SourceError(f"{p}: flip_idx: expected a permutation of 0..{k - 1} (kpt_shape has {k}), got {v!r}"[:200])
    if any(v[v[i]] != i for i in range(k)):
        raise SourceError(f"{p}: flip_idx: {v!r} must swap pairs: flip_idx[flip_idx[i]] == i for every i"[:200])
    return tuple(v)
