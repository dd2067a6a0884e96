"""``build()`` as a library call leaves the calling process as it found it.

OpenCV's thread count, the environment, the allocator (no glibc ``mallopt``
in the caller), no module globals holding an augmenter or an open pack, no
child process left.  Each case runs in a fresh interpreter, so nothing the
test suite did before can hide a change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeaug.demo import make_dataset

REPO = Path(__file__).resolve().parents[2]

CALLER = """
import gc, json, multiprocessing, os, sys
import cv2
import edgeaug.builder.chunks as chunks
import edgeaug.builder.workers as workers
chunks.CHUNK_RECORDS = 2  # several chunks: workers=2 renders in a pool
cv2.setNumThreads(3)  # the caller's own choice
calls = []
real_keep_heap = workers.keep_heap
workers.keep_heap = lambda: calls.append("mallopt")
env = dict(os.environ)
from edgeaug.builder import merge
from edgeaug.builder.augment import Augmenter
from edgeaug.builder.pipeline import build
build(sys.argv[1], sys.argv[2], "rpi4", variants=2, seed=1, workers=int(sys.argv[3]))
gc.collect()
print(json.dumps({
    "threads": cv2.getNumThreads(),
    "mallopt": calls,
    "env_changed": sorted(k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k)),
    "augmenters": sum(isinstance(o, Augmenter) for o in gc.get_objects()),
    "globals": [name for name, d in (("workers._STATE", workers._STATE), ("merge._ENVS", merge._ENVS),
                ("merge._BUF", merge._BUF), ("merge._FLUSH", merge._FLUSH)) if d],
    "children": len(multiprocessing.active_children()),
}))
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("caller") / "shapes", per_class=2, seed=3)


@pytest.mark.parametrize("workers", [1, 2])
def test_build_leaves_the_calling_process_as_it_was(data, tmp_path, workers):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run(
        [sys.executable, "-c", CALLER, str(data), str(tmp_path / "p.lmdb"), str(workers)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    state = json.loads(out.stdout.strip().splitlines()[-1])
    assert state == {"threads": 3, "mallopt": [], "env_changed": [], "augmenters": 0, "globals": [], "children": 0}
