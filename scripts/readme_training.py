#!/usr/bin/env python3
"""Run the training examples of docs/training.md (PyTorch, TensorFlow/Keras) as printed there.

1. Writes scikit-learn's digits as PNG class folders and builds ``digits.lmdb``
   with the real builder: 32x32 gray uint8, 4 augmented variants per train
   source, 20% of the sources in val (the pack of ``scripts/study_variety.py``).
2. With ``--python PY`` (repeatable), runs each ``python`` block of
   ``docs/training.md`` with that interpreter, in the work folder, with this
   clone on ``PYTHONPATH``.  A block whose framework (``torch``,
   ``tensorflow``) that interpreter cannot import is reported as skipped; any
   other failure fails this script.

Neither framework is a dependency of edgeaug, and CI does not install them;
this script is how the examples are checked by hand::

    python scripts/readme_training.py --work /tmp/rt                              # the pack only
    python scripts/readme_training.py --work /tmp/rt --python /path/to/venv/bin/python
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "training.md"
FRAMEWORKS = ("torch", "tensorflow")


def examples(page: Path = PAGE) -> Dict[str, str]:
    """The page's ``python`` blocks, keyed by the framework each imports."""
    text = page.read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)
    out: Dict[str, str] = {}
    for block in blocks:
        names = [f for f in FRAMEWORKS if re.search(rf"^import {f}\b", block, re.M)]
        if len(names) != 1:
            raise SystemExit(
                f"{page}: a training block imports {names or 'no framework'}, expected one of {FRAMEWORKS}"
            )
        out[names[0]] = block
    return out


def make_pack(work: Path) -> Path:
    """``work/digits.lmdb``, as the examples expect it."""
    import study_variety

    pack = work / "digits.lmdb"
    if pack.exists():
        return pack
    data = work / "digits"
    if not data.exists():
        study_variety.write_digits(data)
    built = study_variety.build_pack(work, data, k=4, seed=0)
    shutil.move(str(built), str(pack))
    return pack


def run(block: str, framework: str, python: str, work: Path) -> str:
    """``ok``, ``skipped (no <framework>)``; raises SystemExit with the output when the block fails."""
    python = os.path.abspath(python) if os.sep in python else shutil.which(python) or python  # cwd changes below
    probe = subprocess.run([python, "-c", f"import {framework}"], capture_output=True)
    if probe.returncode != 0:
        return f"skipped (no {framework} in {python})"
    script = work / f"readme_{framework}.py"
    script.write_text(block, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    proc = subprocess.run([python, script.name], cwd=work, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(
            f"the {framework} example of docs/training.md failed with {python}:\n{proc.stdout}\n{proc.stderr}"
        )
    tail = proc.stdout.strip().splitlines()[-1:] or [""]
    return f"ok (last line: {tail[0][-120:]})"


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("readme-training"), help="where digits.lmdb goes")
    ap.add_argument("--python", action="append", default=[], help="an interpreter to run the examples with")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO / "scripts"))
    blocks = examples()
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"pack: {make_pack(args.work)}")
    for python in args.python:
        for framework, block in blocks.items():
            print(f"{framework} with {python}: {run(block, framework, python, args.work.resolve())}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
