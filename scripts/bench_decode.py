#!/usr/bin/env python3
"""Decode cost per record of raw, zlib and zstd packs, natively and under qemu (scripts/bench_codec.py --qemu).

The same probe runs in this python and in the emulated Debian bookworm python3
of scripts/pisandbox.py (qemu-aarch64, qemu-arm): every record of each pack is
held in memory and decoded into one buffer, CPU time per record.  qemu-user
translates ARM code on this x86 CPU, so the ratios measure emulation overhead,
not a Pi.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _pisandbox():
    import importlib.util

    if "pisandbox" in sys.modules:
        return sys.modules["pisandbox"]
    spec = importlib.util.spec_from_file_location("pisandbox", HERE / "pisandbox.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["pisandbox"] = mod
    spec.loader.exec_module(mod)
    return mod


DECODE_PROBE = r"""
import json, sys, time
import numpy as np
from edgeaug.loader import Pack
out = {}
for path in sys.argv[1:]:
    with Pack(path) as p:
        x = np.empty(p.shape, p.dtype)
        vals = [bytes(p._db.get(b"r" + r.to_bytes(8, "big"))) for r in range(p.records)]
        from edgeaug.device.codec import decode_into
        from edgeaug.device.format import RecordHeader, HEADER_SIZE
        heads = [RecordHeader(v) for v in vals]
        layout = p.manifest["target"]["layout"]
        n, c0, t0 = 0, time.process_time(), time.perf_counter()
        while n < 3 * len(vals) or time.perf_counter() - t0 < 1.0:
            for v, h in zip(vals, heads):
                decode_into(memoryview(v)[HEADER_SIZE:HEADER_SIZE + h.stored_nbytes], x, h.method, layout)
            n += len(vals)
        out[p.info()["compression"]["codec"]] = {"ms_per_record": (time.process_time() - c0) / n * 1e3,
                                                 "records": n, "mb_per_record": p.nbytes / 1e6}
print(json.dumps(out))
"""


def decode_cost(packs: list[Path], arch: str | None = None) -> dict[str, Any]:
    """CPU ms per decoded record of each pack (all records, in memory: no I/O), natively or under qemu ``arch``."""
    repo = HERE.parent
    if arch is None:
        env = dict(os.environ, PYTHONPATH=str(repo))
        proc = subprocess.run(
            [sys.executable, "-c", DECODE_PROBE, *map(str, packs)], capture_output=True, text=True, env=env, timeout=600
        )
    else:
        proc = _pisandbox().run_python(arch, ["-c", DECODE_PROBE, *map(str, packs)], extra_path=[repo], timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"decode probe ({arch or 'native'}) failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def small_packs(work: Path, photos: Path, level: int | None, copy_photos) -> list[Path]:
    """Raw, zlib and zstd packs of the photos with 2 variants each (the records the qemu comparison decodes)."""
    from edgeaug.builder.pipeline import build

    src = work / "qemu-sources"
    copy_photos(photos, src)
    out = []
    for c in ("none", "zlib", "zstd"):
        out.append(work / f"qemu-{c}.lmdb")
        build(
            src,
            out[-1],
            "rpi4",
            "default",
            variants=2,
            seed=1,
            compress=c,
            level=None if c == "zlib" else level,
            workers=1,
        )
    return out


def qemu_report(work: Path, photos: Path, level: int | None, copy_photos) -> dict[str, Any]:
    """Decode ms per record natively and under both qemus, printed as a table; ``copy_photos`` from bench_codec."""
    packs = small_packs(work, photos, level, copy_photos)
    res = {"native": decode_cost(packs)}
    for arch in ("arm64", "armhf"):
        res[arch] = decode_cost(packs, arch)
    print("\n| decode, ms per 224x224x3 record (CPU) | native x86_64 | qemu-aarch64 | x native | qemu-arm | x native |")
    print("|---|---|---|---|---|---|")
    for codec in ("none", "zlib", "zstd"):
        nat = res["native"][codec]["ms_per_record"]
        cells = [f"{nat:.3f}"]
        for arch in ("arm64", "armhf"):
            ms = res[arch][codec]["ms_per_record"]
            cells += [f"{ms:.2f}", f"{ms / nat:.1f}"]
        print(f"| {codec} | " + " | ".join(cells) + " |")
    print("qemu-user translates ARM code on this x86 CPU: the ratios measure emulation overhead, not a Pi.")
    return res
