#!/usr/bin/env python3
"""Device benchmark: shuffled batches from a pack larger than memory, on a simulated Raspberry Pi card.

Imposes a Pi's limits with a cgroup (needs root): a memory limit that includes the
page cache (cgroup v2 ``memory.max``, v1 ``memory.limit_in_bytes``), and a read
throttle in bytes/s and IO/s on the block device that holds the pack (v2 ``io.max``
rbps/riops, v1 ``blkio.throttle.read_{bps,iops}_device``): about an A1-class
microSD card.  When it cannot impose them it says so and exits 3 ("not measured");
it never measures something else instead.

In one run, in one child process placed in that cgroup, with the page cache
dropped before each cold measurement, it measures:

  card     the card's limit: random whole-record preads (same sizes, same offsets,
           same order as the loader's epochs), POSIX_FADV_RANDOM, measured twice
           (first and last) to show the noise
  default  Pack.batches(32, shuffle=True) with the default backend
  pure     the same with backend="pure" (the 32-bit path)
  step     default, with a model step as long as one batch's read (prefetch overlap)
  hybrid   default with the online flip and shift, Pack.batches(hflip=0.5, shift=8)

and prints records/s, the ratios default/card, pure/card and hybrid/default, cold Pack open
times, peak anonymous memory while streaming (RssAnon and the cgroup's anon),
and how many bytes the cgroup read from the device per delivered byte.

``--mix`` measures the online multi-image ops instead (same pack, same child, cache
dropped before each): plain batches, then mosaic=1, mixup=0.5, cutmix=0.5 and all
three, each with the labels the pack needs (soft targets for classification), and
prints each against the plain batches of the same run (goal >= 0.9).

Packs: by default it builds one per case with the real builder
(``edgeaug.builder.pipeline.build``, the code behind ``edgeaug build``), so the
pack has the layout a user's pack has.  The sources are random-noise PNGs in 4
class folders; the recipe is the shipped default with 8 variants plus the
original (9 records per source); the target is the shipped profile of the case's
name; the pack is at least twice the memory limit:

  rpi4        224x224x3 uint8 (~150 KB records), memory 512M, pack >= 1 GiB
  rpi-zero2w  96x96x1 int8 (~9 KB records),      memory 128M, pack >= 256 MiB

``--codec`` measures a compressed pack against the raw pack of the same real
photos instead (sizes, card records/s, decode CPU; ``--qemu`` adds the decode
cost under emulation): scripts/bench_codec.py, which takes the options shown there.

``--pack PATH`` measures an existing pack instead (e.g. from ``edgeaug build``).
Building needs the workstation install (``pip install -e ".[build]"``);
measuring needs only edgeaug's loader.  Figures: docs/benchmarks.md.

    sudo python scripts/bench_device.py [--case rpi4|rpi-zero2w|both] [--pack PATH]
        [--mem 512M] [--rbps 40M] [--riops 1500] [--seconds 20] [--quick]
        [--workdir DIR] [--keep] [--json] [--mix]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# The parts, by concern (scripts/ is sys.path[0] when this runs as a script); callers use bench_device.NAME.
from bench_device_cgroup import (  # noqa: F401
    NOT_MEASURED,
    Cgroup,
    CgroupStats,
    NotMeasured,
    block_device,
    drop_cache,
    rss_anon,
)
from bench_device_measure import (  # noqa: F401
    HYBRID,
    MIXES,
    child,
    epoch_orders,
    measure_card,
    measure_loader,
    record_extents,
)
from bench_device_report import report, report_mix  # noqa: F401

CASES = {  # the shipped target of the same name, and the Pi's memory
    "rpi4": {"mem": "512M"},
    "rpi-zero2w": {"mem": "128M"},
}
VARIANTS = 9  # records per source: --variants 8 with the original


def parse_size(text: str) -> int:
    """``512M``, ``40M``, ``1G`` (powers of 1024, like numfmt --from=iec) or plain bytes."""
    text = text.strip().upper().rstrip("B").rstrip("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(text[-1:], 1)
    try:
        return int(float(text[:-1] if mult > 1 else text) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {text!r}") from None


# --- building a pack -----------------------------------------------------------------------------


SOURCE_SIZE = 64  # px: the sources' side (the builder resizes them to the target)


def write_sources(root: Path, count: int, seed: int) -> None:
    """``count`` random-noise PNGs of SOURCE_SIZE px in 4 class folders (distinct, so none is a duplicate)."""
    import cv2

    rng = np.random.default_rng(seed)
    for s in range(count):
        folder = root / f"c{s % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        img = rng.integers(0, 256, (SOURCE_SIZE, SOURCE_SIZE, 3), dtype=np.uint8)
        if not cv2.imwrite(str(folder / f"synthetic {s:06d}.png"), img):
            raise RuntimeError(f"cannot write a source image under {folder}")


def build_pack(out: Path, case: str, min_bytes: int, seed: int = 1, workers: int | None = None) -> int:
    """Build a pack of >= ``min_bytes`` at ``out`` with the real builder, ``VARIANTS`` records per source.

    Returns the number of records.  The sources go to ``out``'s folder and are removed afterwards.
    """
    from edgeaug.builder.pipeline import build
    from edgeaug.config.recipe import load_recipe
    from edgeaug.config.targets import load_target
    from edgeaug.device.format import HEADER_SIZE, tensor_dtype

    target = load_target(case)
    tensor = int(np.prod(target.shape)) * tensor_dtype(target.dtype).itemsize
    # Each record is an overflow run of whole pages: header, tensor, empty labels, ~600 bytes of params.
    per_record = -(-(HEADER_SIZE + tensor + 12 + 600 + 16) // 4096) * 4096
    sources = -(-min_bytes // (per_record * VARIANTS)) + 4
    data = out.with_name(out.stem + "-sources")
    shutil.rmtree(data, ignore_errors=True)
    try:
        write_sources(data, sources, seed)
        recipe = load_recipe("default")
        result = build(data, out, target, recipe, variants=VARIANTS - 1, seed=seed, workers=workers)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    if result.records != sources * VARIANTS:
        raise RuntimeError(f"{out}: built {result.records} records, expected {sources * VARIANTS}")
    if out.stat().st_size < min_bytes:
        raise RuntimeError(f"{out}: {out.stat().st_size} bytes, fewer than the {min_bytes} asked for")
    return result.records


# --- the parent ---------------------------------------------------------------------------------------------


def run_child(cg: Cgroup, script: str, label: str, child_args: list[str]) -> dict[str, Any]:
    """``script --child CHILD_ARGS --cg-dirs ...`` run inside ``cg``; the JSON of its last stdout line."""
    cmd = [sys.executable, script, "--child", *child_args, "--cg-dirs", *map(str, cg.dirs)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, preexec_fn=cg.enter_fn(), env=env)
    except subprocess.SubprocessError as e:
        raise NotMeasured(f"cannot place the measuring process in the cgroup: {e}") from None
    if proc.returncode == NOT_MEASURED:
        raise NotMeasured(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "child refused")
    if proc.returncode != 0:
        hint = " (killed: out of memory under the limit?)" if proc.returncode in (-9, 137) else ""
        raise RuntimeError(f"{label}: measuring child failed with rc {proc.returncode}{hint}:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_throttle(m: dict[str, Any], label: str, disk: str, args) -> None:
    """Refuse a card measurement ``m`` that ran faster than the throttle or did not read from the throttled disk."""
    if m["mb_per_s"] > 1.5 * args.rbps / 1e6 or m["records_per_s"] > 1.5 * args.riops:
        raise NotMeasured(
            f"{label}: whole-record reads ran at {m['mb_per_s']:.0f} MB/s and "
            f"{m['records_per_s']:.0f} reads/s, above the {args.rbps / 1e6:.0f} MB/s, "
            f"{args.riops} IO/s throttle: the limits did not hold (page cache?)"
        )
    if m["device_read_mb"] < 0.9 * m["delivered_mb"]:
        raise NotMeasured(
            f"{label}: the cgroup read {m['device_read_mb']:.0f} MB from /dev/{disk} for "
            f"{m['delivered_mb']:.0f} MB of records: reads did not reach the throttled device"
        )


def run_case(label: str, pack: Path, mem: int, args) -> dict[str, Any]:
    majmin, disk = block_device(str(pack))
    cg = Cgroup(mem, args.rbps, args.riops, majmin)
    child_args = ["--pack", str(pack), "--majmin", majmin, "--seconds", str(args.seconds), "--batch", str(args.batch)]
    try:
        res = run_child(cg, os.path.abspath(__file__), label, child_args + (["--mix"] if args.mix else []))
    finally:
        cg.remove()
    res.update(label=label, pack=str(pack), pack_mb=pack.stat().st_size / 1e6, cgroup=cg.describe(), disk=disk)
    try:
        res["read_ahead_kb"] = int(Path(f"/sys/block/{disk}/queue/read_ahead_kb").read_text())
    except OSError:
        res["read_ahead_kb"] = None
    card = (res["card_first"]["records_per_s"] + res["card_last"]["records_per_s"]) / 2
    res["card"] = card
    # The throttle must have held: a "card" faster than the throttle means we measured something else.
    for key in ("card_first", "card_last"):
        check_throttle(res[key], label, disk, args)
    return res


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--codec" in argv:  # compressed vs raw packs of real photos (issue 25): scripts/bench_codec.py
        import importlib.util

        spec = importlib.util.spec_from_file_location("bench_codec", Path(__file__).with_name("bench_codec.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod.main([a for a in argv if a != "--codec"])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", choices=(*CASES, "both"), default="both", help="which built pack(s) to measure")
    ap.add_argument("--pack", help="measure this pack instead of building one")
    ap.add_argument("--mem", type=parse_size, help="memory limit incl. page cache (default 512M; 128M rpi-zero2w)")
    ap.add_argument("--rbps", type=parse_size, default=parse_size("40M"), help="read bytes/s (default 40M)")
    ap.add_argument("--riops", type=int, default=1500, help="read IO/s (default 1500)")
    ap.add_argument("--seconds", type=float, default=20.0, help="time per measurement (default 20)")
    ap.add_argument("--quick", action="store_true", help="5 s per measurement")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument(
        "--workdir",
        help="where built packs go (must be on the disk to simulate; default: a temporary directory under $TMPDIR)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the built packs")
    ap.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    ap.add_argument(
        "--mix",
        action="store_true",
        help="measure online mosaic/mixup/cutmix against plain batches instead of the backends and the hybrid",
    )
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--majmin", help=argparse.SUPPRESS)
    ap.add_argument("--cg-dirs", nargs="*", default=[], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds = min(args.seconds, 5.0)
    try:
        if args.child:
            return child(args)
        if os.geteuid() != 0:
            raise NotMeasured("needs root (cgroup limits and dropping the page cache)")
        results = []
        if args.pack:
            pack, mem = Path(args.pack), args.mem or parse_size("512M")
            if not pack.is_file():
                print(f"error: {pack}: no such file", file=sys.stderr)
                return 2
            if pack.stat().st_size < 2 * mem:
                print(
                    f"warning: {pack} is smaller than twice the memory limit ({2 * mem >> 20} MiB): "
                    f"part of it can stay in the page cache",
                    file=sys.stderr,
                )
            results.append(run_case("pack", pack, mem, args))
        else:
            work = Path(tempfile.mkdtemp(prefix="edgeaug-device-", dir=args.workdir))
            try:
                block_device(str(work))  # fail before building anything
                for case in CASES if args.case == "both" else [args.case]:
                    mem = args.mem or parse_size(CASES[case]["mem"])
                    out = work / f"{case}.lmdb"
                    t0 = time.perf_counter()
                    n = build_pack(out, case, 2 * mem)
                    print(
                        f"{case}: built {n} records, {out.stat().st_size / 1e6:.0f} MB "
                        f"(>= 2 x {mem >> 20} MiB) in {time.perf_counter() - t0:.1f}s",
                        flush=True,
                    )
                    results.append(run_case(case, out, mem, args))
                    report(results[-1])
            finally:
                if args.keep:
                    print(f"packs kept in {work}")
                else:
                    shutil.rmtree(work, ignore_errors=True)
        if args.pack:
            report(results[0])
        if args.json:
            print(json.dumps(results, indent=1))
    except NotMeasured as e:
        print(f"not measured: {e}", file=sys.stderr)
        return NOT_MEASURED
    return 0


if __name__ == "__main__":
    sys.exit(main())
