#!/usr/bin/env python3
"""How the builder scales: CPU by role, records per CPU-second, 1 -> 2 workers, cost growth.

The build of issue 12: 200 photo JPEGs of 640x480 x 8 variants (+ the
original: 1800 records), target rpi4.  The photos are crops of
scikit-learn's two sample photographs (``china.jpg``, ``flower.jpg``),
randomly scaled, shifted and mirrored, re-encoded at JPEG quality 90: real
photo content, but only two scenes.  The 18k-record build uses 2000 such
photos.

Every figure is measured twice in the same run: on this tree and on a
baseline tree (``--base``, e.g. ``git worktree add /tmp/base <commit>``),
each build in its own subprocess whose ``PYTHONPATH`` selects the tree.

* **CPU by role**: the build's main process reports its own
  ``getrusage(RUSAGE_SELF)``; the whole build is this script's
  ``RUSAGE_CHILDREN`` delta (this script is a child subreaper and reaps
  every orphan, so forkservers, resource trackers and pool workers count).
  Workers = whole - main (render workers, and on the new tree the writer
  process, the forkserver and the resource tracker).
  The runner's sampling thread (peak memory and scratch, below) counts
  its own CPU time, which is taken out of both figures: it is the
  benchmark's work, not the build's.  Both trees are byte-compiled first,
  as a pip install leaves them (with ``PYTHONDONTWRITEBYTECODE`` set, every
  build would otherwise compile edgeaug's sources, about 50 ms per process).
* **records per CPU-second**: records / whole-build CPU seconds.
* **scaling**: wall time of ``--workers 1`` / ``--workers 2`` (the best of
  ``--repeat`` runs; wall time is noisy on a shared machine, CPU is not).
* **cost growth**: records/s of the 18k build / records/s of the 1.8k build
  (both ``--workers 2``; the median 1.8k run), and the same with records per
  CPU-second (steadier on a shared machine), main process peak anonymous memory (RssAnon,
  sampled every 50 ms) and peak scratch space beyond the pack (everything in
  the output folder but the pack, under its final or ``.tmp`` name).
* **render only**: each tree renders the same records in one process, with
  no CLI, chunk files or pack (imports not counted), checked to equal the
  packs' records.  Its rate is a ceiling for any builder that writes these
  bytes; the report sets it against the old builder's whole build.
* **same bytes**: both trees' packs carry the same fingerprint (sha256 of
  the manifest and of the index, which holds every record's digest).

    python scripts/bench_build.py --base /tmp/base [--repeat 2] [--no-big]

The figures measured on the development machine, with their ranges over
separate runs, are in docs/benchmarks.md ("Building packs").  Each build runs
the ``edgeaug build`` command (in a fresh interpreter, through its typer
app), as users run it.
"""

from __future__ import annotations

import argparse
import compileall
import ctypes
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Runs one build in a fresh interpreter; prints one JSON line with the main process's own figures.
RUNNER = r"""
import json, os, resource, sys, threading, time
from pathlib import Path
src, out, workers = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
peak = {"anon_kb": 0, "scratch": 0}
stop = threading.Event()
sampler_cpu = [0.0]
def sample():
    while not stop.is_set():
        t0 = time.thread_time()
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                peak["anon_kb"] = max(peak["anon_kb"], int(line.split()[1]))
        size = 0
        for root, _, files in os.walk(out.parent):
            for f in files:
                p = os.path.join(root, f)
                if p not in (str(out), str(out) + ".tmp"):  # the pack itself, under its final or temporary name
                    try:
                        size += os.stat(p).st_blocks * 512
                    except OSError:
                        pass
        peak["scratch"] = max(peak["scratch"], size)
        sampler_cpu[0] += time.thread_time() - t0  # the benchmark's own work, not the build's
        stop.wait(0.05)
t = threading.Thread(target=sample, daemon=True)
t.start()
import edgeaug
from edgeaug.cli import app  # the build as users run it: the edgeaug build command, in this process
t0 = time.monotonic()
try:
    app(["build", src, "-o", str(out), "--target", "rpi4", "--variants", "8", "--seed", "1",
         "--workers", str(workers), "--quiet"])
except SystemExit as e:
    if e.code:
        raise
wall = time.monotonic() - t0
stop.set(); t.join()
ru = resource.getrusage(resource.RUSAGE_SELF)
import lmdb
env = lmdb.open(str(out), subdir=False, readonly=True, lock=False)
with env.begin() as txn:
    manifest = json.loads(bytes(txn.get(b"~manifest")))
env.close()
print(json.dumps({"wall": wall, "main_cpu": ru.ru_utime + ru.ru_stime - sampler_cpu[0],
                  "sampler_cpu": sampler_cpu[0], "records": manifest["records"],
                  "fingerprint": manifest["fingerprint"], "anon_mb": peak["anon_kb"] / 1024,
                  "scratch_mb": peak["scratch"] / 2**20, "pack_mb": out.stat().st_size / 2**20,
                  "tree": os.path.dirname(os.path.dirname(edgeaug.__file__))}))
"""


# Renders every record of the same build in one process and nothing else: no CLI, no chunk files, no pack.
# Its CPU per record bounds what any builder that writes these bytes can reach (imports are not counted).
RENDER_ONLY = r"""
import json, os, sys, time
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import cv2
cv2.setNumThreads(1)
from edgeaug.builder.plan import plan
from edgeaug.config.recipe import load_recipe
from edgeaug.config.targets import load_target
from edgeaug.sources.scan import scan
from edgeaug.builder.augment import Augmenter
from edgeaug.builder.render import render_source
try:
    from edgeaug.builder.workers import keep_heap
    keep_heap()
except ImportError:  # a tree without it
    pass
recipe = load_recipe(None).with_variants(8)  # what the build command's --variants 8 makes of the default
tasks = plan(scan(sys.argv[1]), recipe, 1, 0.0)
aug = Augmenter(recipe, load_target("rpi4"))
import hashlib
h, n, cpu = hashlib.sha256(), 0, 0.0
for task in tasks:
    t0 = time.process_time()
    records = render_source(task, aug, 1).records
    cpu += time.process_time() - t0  # the check below is not rendering
    n += len(records)
    for v in records:
        h.update(v)
print(json.dumps({"records": n, "cpu": cpu, "records_sha256": h.hexdigest()}))
"""


def render_only(tree: Path, src: Path) -> dict:
    """CPU seconds of rendering the build's records in one process of ``tree`` (see RENDER_ONLY)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.run([sys.executable, "-c", RENDER_ONLY, str(src)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"render-only run failed in {tree}:\n{proc.stderr}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["ms_per_record"] = 1000 * out["cpu"] / out["records"]
    return out


def make_photos(folder: Path, n: int, seed: int = 0) -> Path:
    """``n`` 640x480 JPEG crops of scikit-learn's sample photos, in two class folders."""
    import cv2
    import numpy as np
    import sklearn.datasets

    if folder.exists() and sum(1 for _ in folder.rglob("*.jpg")) == n:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(seed)
    base = Path(sklearn.datasets.__file__).parent / "images"
    photos = {name: cv2.imread(str(base / f"{name}.jpg")) for name in ("china", "flower")}
    for i in range(n):
        name = ("china", "flower")[i % 2]
        img = photos[name]
        h, w = img.shape[:2]
        s = rng.uniform(0.55, 1.0)
        cw, ch = int(w * s), int(h * s)
        x, y = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
        crop = cv2.resize(img[y : y + ch, x : x + cw], (640, 480), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        (folder / name).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / name / f"{i:05d}.jpg"), crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return folder


def _subreaper() -> None:
    """Orphaned descendants (forkservers, pool workers) reparent to us, so their CPU is counted."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)  # an orphan still exiting


def run(tree: Path, src: Path, workdir: Path, workers: int) -> dict:
    """One build in a subprocess; its figures plus the whole build's CPU."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    env = dict(os.environ, PYTHONPATH=str(tree))  # ahead of the editable install; cwd is not the repo
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(src), str(workdir / "pack.lmdb"), str(workers)],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    _reap()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"build failed in {tree}:\n{proc.stderr}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if Path(out["tree"]).resolve() != tree.resolve():
        raise SystemExit(f"imported edgeaug from {out['tree']}, not {tree}")
    out["records_sha256"] = records_sha256(workdir / "pack.lmdb")  # here: the build's CPU is counted already
    out["total_cpu"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime) - out["sampler_cpu"]
    out["main_share"] = out["main_cpu"] / out["total_cpu"]
    out["rec_per_cpu_s"] = out["records"] / out["total_cpu"]
    out["rec_per_s"] = out["records"] / out["wall"]
    shutil.rmtree(workdir, ignore_errors=True)
    return out


def records_sha256(pack: Path) -> str:
    """sha256 of every record value in key order: what the render-only run must reproduce."""
    import hashlib

    import lmdb

    h = hashlib.sha256()
    env = lmdb.open(str(pack), subdir=False, readonly=True, lock=False)
    with env.begin() as txn:
        for key, value in txn.cursor():
            if not key.startswith(b"~"):  # the index and the manifest
                h.update(value)
    env.close()
    return h.hexdigest()


def best(runs: list) -> dict:
    """The run with the least wall time, with the median CPU figures (and median rate) of all runs."""
    b = dict(min(runs, key=lambda r: r["wall"]))
    for k in ("main_cpu", "total_cpu", "main_share", "rec_per_cpu_s", "rec_per_s"):
        b[k] = sorted(r[k] for r in runs)[len(runs) // 2]
    return b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", type=Path, required=True, help="the baseline tree (a git worktree)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--no-big", action="store_true", help="skip the 18k-record build")
    ap.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "edgeaug-bench-build")
    a = ap.parse_args()
    _subreaper()
    for tree in (a.base, REPO):  # as installed: pip writes bytecode, so no build compiles edgeaug's sources
        compileall.compile_dir(str(tree / "edgeaug"), quiet=1)
    small = make_photos(a.scratch / "photos200", 200)
    trees = {"base": a.base, "new": REPO}
    res: dict = {}
    for rnd in range(a.repeat):  # rounds interleave, so other load on the machine hits both alike
        for name, tree in trees.items():
            for w in (1, 2):
                r = run(tree, small, a.scratch / "out", w)
                res.setdefault((name, w), []).append(r)
                print(f"  round {rnd + 1} {name} -w {w}: {r['wall']:.2f}s wall, {r['total_cpu']:.2f}s CPU", flush=True)
    for name, tree in trees.items():
        runs = [render_only(tree, small) for _ in range(a.repeat)]
        res[(name, "render")] = [sorted(runs, key=lambda r: r["cpu"])[len(runs) // 2]]  # the median
        print(f"  {name} render only: {res[(name, 'render')][0]['ms_per_record']:.2f} ms CPU per record", flush=True)
    if not a.no_big:
        big = make_photos(a.scratch / "photos2000", 2000)
        for name, tree in trees.items():
            res[(name, "big")] = [run(tree, big, a.scratch / "out", 2)]
            print(f"  {name} 18k: {res[(name, 'big')][0]['wall']:.1f}s wall", flush=True)
    report({k: v[0] if k[1] == "render" else best(v) for k, v in res.items()}, not a.no_big)


def report(r: dict, big: bool) -> None:
    def row(what, f, fmt="{:.2f}"):
        b, n = f("base"), f("new")
        ratio = f"{n / b:.2f}x" if b else "-"
        print(f"| {what} | {fmt.format(b)} | {fmt.format(n)} | {ratio} |")

    print("\n| 1800 records (200 photos x 9), rpi4 | base | new | new/base |\n|---|---|---|---|")
    for w in (1, 2):
        row(f"-w {w}: wall s", lambda t, w=w: r[(t, w)]["wall"])
        row(f"-w {w}: whole-build CPU s", lambda t, w=w: r[(t, w)]["total_cpu"])
        row(f"-w {w}: main process CPU s", lambda t, w=w: r[(t, w)]["main_cpu"])
        row(f"-w {w}: main share of CPU %", lambda t, w=w: 100 * r[(t, w)]["main_share"], "{:.1f}")
        row(f"-w {w}: records per CPU-second", lambda t, w=w: r[(t, w)]["rec_per_cpu_s"], "{:.0f}")
    row("scaling -w 1 -> -w 2 (wall)", lambda t: r[(t, 1)]["wall"] / r[(t, 2)]["wall"])
    row("render only, one process, no build: ms CPU per record", lambda t: r[(t, "render")]["ms_per_record"])
    ceiling = 1000 / r[("new", "render")]["ms_per_record"]  # records per CPU-second if a build cost only its rendering
    for w in (1, 2):
        print(
            f"| ceiling -w {w}: new render-only records/CPU-s / base whole build | - | {ceiling:.0f} | "
            f"{ceiling / r[('base', w)]['rec_per_cpu_s']:.2f}x |"
        )
    if big:
        row("18k records -w 2: wall s", lambda t: r[(t, "big")]["wall"], "{:.1f}")
        for what in ("rec_per_s", "rec_per_cpu_s"):
            unit = "records/s" if what == "rec_per_s" else "records/CPU-s"
            row(f"cost growth: {unit} at 18k / at 1.8k", lambda t, w=what: r[(t, "big")][w] / r[(t, 2)][w])
        row("18k: main peak anon MB", lambda t: r[(t, "big")]["anon_mb"], "{:.0f}")
        scratch = lambda t: r[(t, "big")]["scratch_mb"] / r[(t, "big")]["pack_mb"]  # noqa: E731
        row("18k: peak scratch beyond the pack / pack", scratch)
        row("18k: main share of CPU %", lambda t: 100 * r[(t, "big")]["main_share"], "{:.1f}")
    row("1.8k -w 2: main peak anon MB", lambda t: r[(t, 2)]["anon_mb"], "{:.0f}")
    same = {r[(t, w)]["fingerprint"] for t in ("base", "new") for w in (1, 2)}
    if big:
        big_same = r[("base", "big")]["fingerprint"] == r[("new", "big")]["fingerprint"]
        print(f"\n18k fingerprints equal: {big_same}")
    print(f"1.8k fingerprints (both trees, both worker counts) equal: {len(same) == 1}")
    packs = {r[(t, w)]["records_sha256"] for t in ("base", "new") for w in (1, 2)}
    rendered = {r[(t, "render")]["records_sha256"] for t in ("base", "new")}
    print(f"render-only records (both trees) equal the packs' records: {len(packs | rendered) == 1}")


if __name__ == "__main__":
    main()
