"""Write the device loader as ONE self-contained Python file (a workstation tool).

The bundle is the modules of ``edgeaug/device/`` listed in :data:`SOURCES`
(every one but ``__init__.py``), concatenated in that order, text kept verbatim
except for three mechanical changes:

* a single ``from __future__ import annotations`` at the top (each module's own
  is removed, since a future import must come first in a file);
* each import statement marked ``# bundle: drop`` in the sources (the
  intra-package imports; everything they name is defined earlier in the
  bundle) is removed, found with :mod:`ast` so multi-line imports go whole;
  a marked statement inside a block becomes ``pass`` so the block stays valid;
* each module's own ``__all__`` is removed: it describes that module, not the
  bundle.

The result needs only Python >= 3.9, numpy and (optionally) lmdb::

    python -m edgeaug.bundle -o edgeaug_loader.py
    python edgeaug_loader.py info|verify|bench PACK      # on the device
    from edgeaug_loader import Pack

Building refuses (``BundleError``) when a relative import is left unmarked or
two modules define the same top-level name, rather than write a broken file.
No code is executed to build the bundle.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set

# The device modules, in dependency order; the last one holds the command line (``if __name__ == "__main__"``).
SOURCES = (
    "format.py",
    "manifest.py",
    "codec.py",
    "instances.py",
    "labels.py",
    "lmdblayout.py",
    "lmdbpure.py",
    "readplan.py",
    "batchread.py",
    "decodedread.py",
    "prefetch.py",
    "backends.py",
    "online.py",
    "online_read.py",
    "online_labels.py",
    "online_mix.py",
    "online_mix_labels.py",
    "online_mix_fit.py",
    "online_mix_batch.py",
    "runners.py",
    "packmeta.py",
    "epochs.py",
    "pack.py",
    "loader.py",
)
DROP_MARK = "# bundle: drop"
_PKG = Path(__file__).resolve().parent / "device"


class BundleError(ValueError):
    """The sources cannot be bundled safely (the message names file and line)."""


def _drop_ranges(text: str, name: str) -> Dict[int, int]:
    """First line -> last line (1-based) of each statement to remove; value 0 if nested."""
    tree = ast.parse(text, filename=name)
    top = set(map(id, tree.body))
    lines = text.splitlines()
    out: Dict[int, int] = {}
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        span = range(node.lineno, node.end_lineno + 1)
        marked = any(DROP_MARK in lines[i - 1] for i in span)
        future = isinstance(node, ast.ImportFrom) and node.module == "__future__"
        relative = isinstance(node, ast.ImportFrom) and node.level > 0
        if relative and not marked:
            raise BundleError(f"{name}:{node.lineno}: relative import not marked '{DROP_MARK}'")
        if marked or future:
            if future and id(node) not in top:
                raise BundleError(f"{name}:{node.lineno}: nested __future__ import")
            out[node.lineno] = node.end_lineno if id(node) in top else -node.end_lineno
    for node in tree.body:  # a module's __all__ lists that module's names only
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            out[node.lineno] = node.end_lineno
    return out


def _strip(text: str, name: str) -> str:
    """``text`` without the statements :func:`_drop_ranges` selects."""
    ranges = _drop_ranges(text, name)
    lines = text.splitlines(keepends=True)
    out: List[str] = []
    i = 1
    while i <= len(lines):
        if i in ranges:
            end = ranges[i]
            if end < 0:  # nested: keep the enclosing block syntactically whole
                indent = lines[i - 1][: len(lines[i - 1]) - len(lines[i - 1].lstrip())]
                out.append(f"{indent}pass  # bundle: import dropped\n")
            i = abs(end) + 1
            continue
        out.append(lines[i - 1])
        i += 1
    return "".join(out)


def _top_level_names(text: str) -> Set[str]:
    """Names a module binds at top level (defs, classes, assignments)."""
    names: Set[str] = set()
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def bundle_text(package_dir: Optional[Path] = None) -> str:
    """The bundled loader's source text (deterministic: same sources, same bytes).

    ``package_dir``: the folder of the device modules (default ``edgeaug/device``).
    """
    pkg = Path(package_dir) if package_dir is not None else _PKG
    parts, seen = [], {}  # seen: name -> module that defined it
    digest = hashlib.sha256()
    for name in SOURCES:
        path = pkg / name
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise BundleError(f"{path}: cannot read: {e.strerror or e}") from None
        digest.update(text.encode("utf-8"))
        body = _strip(text, name)
        for n in _top_level_names(body) - {"__doc__"}:
            if n in seen:
                raise BundleError(f"{name}: top-level name {n!r} also defined in {seen[n]}")
            seen[n] = name
        parts.append(f"# {'-' * 30} edgeaug/{name}\n{body}")
    head = (
        f'"""edgeaug device loader, bundled into one file: {" + ".join(SOURCES)}.\n\n'
        "Generated by ``python -m edgeaug.bundle``; do not edit (regenerate instead).\n"
        f"Sources sha256: {digest.hexdigest()}\n\n"
        "Needs Python >= 3.9 and numpy; uses lmdb when installed, else a pure-Python reader.\n\n"
        "    python edgeaug_loader.py info|verify|bench PACK\n"
        "    from edgeaug_loader import Pack\n"
        '"""\nfrom __future__ import annotations\n\n'
    )
    text = head + "\n\n".join(parts)
    ast.parse(text, filename="<bundle>")  # never write a file that does not parse
    return text


def write_bundle(out: Path, package_dir: Optional[Path] = None) -> Path:
    """Write the bundled loader to ``out`` (atomically) and return the path."""
    out = Path(out)
    text = bundle_text(package_dir)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m edgeaug.bundle -o edgeaug_loader.py``."""
    ap = argparse.ArgumentParser(
        prog="python -m edgeaug.bundle", description="Write the device loader as one self-contained .py file."
    )
    ap.add_argument(
        "-o", "--out", type=Path, default=Path("edgeaug_loader.py"), help="output file (default: edgeaug_loader.py)"
    )
    args = ap.parse_args(argv)
    try:
        path = write_bundle(args.out)
    except (BundleError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"wrote {path} ({path.stat().st_size} bytes); copy it to the device and run 'python3 {path.name} verify PACK'"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
