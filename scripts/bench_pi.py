#!/usr/bin/env python3
"""Loader throughput on emulated Raspberry Pi OS, relative to native, for information.

Builds one pack per target (rpi4: 224x224x3 uint8, rpi-zero2w: 96x96x1 int8)
and runs ``python -m edgeaug.loader bench PACK`` (shuffled batches of 32 over
whole epochs) in several processes, all in the same run:

  host  lmdb   this machine's python, native py-lmdb         (the baseline, 1.00x)
  host  pure   this machine's python, the pure-Python reader
  arm64 lmdb   Debian bookworm python3.11 under qemu-aarch64, python3-lmdb 1.4
  arm64 pure   the same, pure reader
  armhf pure   Debian bookworm python3.11 under qemu-arm (32-bit): what 32-bit
               Pi OS gets, since its liblmdb cannot read 64-bit packs

Each row is the best of ``--repeat`` runs, interleaved with the other rows
so that load from other processes hits all of them alike.  Ratios are against
the host lmdb row of the same target measured in the same run.  qemu-user translates
ARM code on this CPU, so the emulated figures say
how much slower the loader gets under emulation, not how fast a real Pi is.

    python scripts/bench_pi.py [--per-class 20] [--variants 3] [--seconds 2] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROWS = (("host", "lmdb"), ("host", "pure"), ("arm64", "lmdb"), ("arm64", "pure"), ("armhf", "pure"))


def _pisandbox():
    import pisandbox  # beside this script: sys.path[0] when run as a script

    return pisandbox


def bench_once(where: str, backend: str, pack: Path, seconds: float, sandbox) -> float:
    """Records per second reported by the device bench command in one process."""
    args = ["-m", "edgeaug.loader", "bench", str(pack), "--seconds", str(seconds), "--backend", backend]
    if where == "host":
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=600)
    else:
        proc = sandbox.run_python(where, args, extra_path=[REPO], timeout=600)
    m = re.search(r"([\d.]+) records/s", proc.stdout)
    if proc.returncode != 0 or not m:
        raise RuntimeError(f"{where}/{backend} bench failed:\n{proc.stdout}\n{proc.stderr}")
    return float(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=20, help="source images per class (4 classes)")
    ap.add_argument("--variants", type=int, default=3, help="records per source")
    ap.add_argument("--seconds", type=float, default=2.0, help="bench time per run")
    ap.add_argument("--repeat", type=int, default=3, help="runs per row (the best counts)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()

    from edgeaug.builder.pipeline import build
    from edgeaug.demo import make_dataset

    sandbox = _pisandbox()
    try:
        for arch in sandbox.ARCHES:
            sandbox.ensure_root(arch, quiet=False)
    except sandbox.PiSandboxUnavailable as e:
        print(f"emulated Pi sandbox unavailable: {e}", file=sys.stderr)
        return 3
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data = make_dataset(Path(tmp) / "shapes", per_class=args.per_class, seed=1)
        for target in ("rpi4", "rpi-zero2w"):
            pack = Path(tmp) / f"{target}.lmdb"
            res = build(data, pack, target, variants=args.variants, seed=1, workers=1)
            best = dict.fromkeys(ROWS, 0.0)
            for _ in range(max(1, args.repeat)):
                for row in ROWS:
                    best[row] = max(best[row], bench_once(*row, pack, args.seconds, sandbox))
            base = best[ROWS[0]]
            for (where, backend), rate in best.items():
                results.append(
                    {
                        "target": target,
                        "records": res.records,
                        "where": where,
                        "backend": backend,
                        "records_per_s": round(rate, 1),
                        "vs_native": round(rate / base, 4),
                    }
                )
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print(f"{'target':11} {'process':6} {'backend':7} {'records/s':>10} {'vs native':>10}")
    for r in results:
        print(f"{r['target']:11} {r['where']:6} {r['backend']:7} {r['records_per_s']:>10.0f} {r['vs_native']:>9.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
