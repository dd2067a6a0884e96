#!/usr/bin/env python3
"""Loader throughput with the pack in the page cache: shuffled batches against the fastest numpy gather.

Two cases, the device targets' record sizes, packs of random-noise sources
(``scripts/bench_device.py`` builds them with the real builder, 9 records per source):

  rpi4        224x224x3 uint8, ~150 KB records
  rpi-zero2w  96x96x1 int8, ~9 KB records

For each case, with the pack and a raw file of the same tensors in the page
cache, each method runs in its own fresh process (as on a device) and reads
every record once per pass in a shuffled order (the loader's own epoch order,
all variants; every method gets the same orders):

  gather        the baseline: np.take(memmap of the raw tensors, idx, axis=0,
                out=buf, mode="clip") into one reused buffer: the fastest numpy
                gather of the same tensors, with no format, no checks
  loader        Pack.batches, default backend and reader ("auto": mmap when the
                pack fits in memory, as here)
  loader-pread  Pack.batches(reader="pread"), the path for packs larger than
                memory and for 32-bit devices (background prefetch on)
  cursor        raw py-lmdb: random txn.get + copy into a reused batch (no edgeaug)
  online        (--online) decode a source PNG + augment + quantize per sample,
                what a device does without a pack

Then, for the default loader, reading against a model step as long as one
batch's read (a sha256, which releases the GIL as inference does): the
default (prefetch once the caller's step is a real share of the read time),
prefetch forced off and forced on, as records/s over reading alone.

``--hybrid`` measures instead what the device's online flip and shift cost
(``Pack.batches(hflip=, shift=)``, done during the read) in CPU us/record
against plain batches, with both readers, and against the previous way (a
plain read, then ``apply_online`` in place): ratios in the same run.

It reports records/s of the first pass in the fresh process (mmap first touch,
cold Python) and warm (best of the following passes), and the ratios to the
gather measured in the same run, because this machine is noisy.  One fresh
process can be 20-30% faster or slower than the next for the same method
(where its buffers land), so ``--repeat`` rounds (default 3) run every
method again in new processes, alternating, and the table gives medians:
each ratio is the median of the rounds' ratios, with their range.  CPU seconds
per record are printed too (steadier than wall time; with a prefetch thread
they include both threads).  Goals: loader >= 0.8x gather, first pass and
warm, both cases.

    python scripts/bench_loader.py [--case rpi4|rpi-zero2w|both] [--mb 300] [--passes 4] [--repeat 3] [--online]
    python scripts/bench_loader.py --hybrid [--case ...] [--mb 100] [--rounds 7]
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

import numpy as np

CASES = ("rpi4", "rpi-zero2w")
METHODS = ("gather", "loader", "loader-pread", "cursor")
READERS = ("pread", "mmap")


def passes(one_pass, orders) -> dict:
    """Wall and CPU time of ``one_pass(order)`` for each order: the first, then the best of the rest."""
    out = []
    for order in orders:
        c0, t0 = time.process_time(), time.perf_counter()
        one_pass(order)
        out.append((len(order) / (time.perf_counter() - t0), (time.process_time() - c0) / len(order) * 1e6))
    best = max(out[1:])
    return {"first": out[0][0], "first_cpu_us": out[0][1], "warm": best[0], "warm_cpu_us": best[1]}


def measure(method: str, pack_path: Path, batch: int, npasses: int) -> dict:
    """Run one method (in this, a fresh process) over ``npasses`` shuffled passes."""
    from edgeaug.device.format import HEADER_SIZE, record_key
    from edgeaug.device.loader import Pack

    t0 = time.perf_counter()
    pack = Pack(str(pack_path), reader="pread" if method == "loader-pread" else "auto")
    open_s = time.perf_counter() - t0
    orders = [pack.epoch_order(e, all_variants=True) for e in range(npasses)]
    n, B = len(pack), batch
    if method.startswith("loader"):
        epochs = iter(range(npasses))

        def one_pass(order):  # the loader's own epoch: the same order as orders[e]
            for _x, _y in pack.batches(B, epoch=next(epochs), all_variants=True):
                pass

    elif method == "gather":
        mm = np.memmap(pack_path.with_suffix(".tensors"), pack.dtype, "r", shape=(n,) + pack.shape)
        buf = np.empty((B,) + pack.shape, pack.dtype)

        def one_pass(order):
            for b in range(0, len(order), B):
                idx = order[b : b + B]
                np.take(mm, idx, axis=0, out=buf[: len(idx)], mode="clip")

    else:  # cursor
        import lmdb

        pack.close()  # py-lmdb opens a file once per process
        env = lmdb.open(str(pack_path), subdir=False, readonly=True, lock=False)
        txn = env.begin(buffers=True)
        buf = np.empty((B, pack.nbytes), np.uint8)

        def one_pass(order):
            for b in range(0, len(order), B):
                for j, r in enumerate(order[b : b + B].tolist()):
                    buf[j] = np.frombuffer(txn.get(record_key(r)), np.uint8, pack.nbytes, HEADER_SIZE)

    res = passes(one_pass, orders)
    res.update(open_s=open_s, reader=pack.reader if method.startswith("loader") else "")
    return res


def measure_online(data: Path, seconds: float) -> dict:
    """Decode + augment + quantize per sample from source images (what a device does without a pack)."""
    import cv2

    from edgeaug.builder.augment import Augmenter
    from edgeaug.builder.render import decode, render_variant, source_labels, working_image
    from edgeaug.config.recipe import load_recipe
    from edgeaug.config.targets import load_target
    from edgeaug.sources.scan import scan

    cv2.setNumThreads(1)
    aug = Augmenter(load_recipe(), load_target("rpi4"))
    blobs = [(s, s.path.read_bytes()) for s in scan(data).sources[:32]]
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for k, (s, blob) in enumerate(blobs):
            img = decode(blob)
            render_variant(
                aug, working_image(img, aug), source_labels(s), (img.shape[1], img.shape[0]), 1, s, 1 + k % 4
            )
        n += len(blobs)
    return {"warm": n / (time.perf_counter() - t0)}


def measure_overlap(pack_path: Path, batch: int, rounds: int) -> dict:
    """Default batches with a model step as long as one batch's read, against the same batches without
    it, and with prefetch forced off and on.

    The step is CPU work that releases the GIL, as onnxruntime and torch do: a sha256 of a buffer
    sized so that it takes one batch's read time (hashlib releases the GIL for large inputs; a sleep
    cannot be shorter than about 0.1 ms).  Each figure is records/s over all variants, best of
    ``rounds`` alternating runs.  Without any overlap the step halves the rate.
    """
    import hashlib

    from edgeaug.device.loader import Pack

    pack = Pack(str(pack_path), reader="auto")
    n = len(pack)
    work = memoryview(bytes(8 << 20))

    def rate(prefetch, step_bytes: int) -> float:
        t0 = time.perf_counter()
        for _ in pack.batches(batch, epoch=0, all_variants=True, prefetch=prefetch):
            if step_bytes:
                hashlib.sha256(work[:step_bytes]).digest()
        return n / (time.perf_counter() - t0)

    t0 = time.perf_counter()
    for _ in range(20):
        hashlib.sha256(work).digest()
    hash_rate = 20 * len(work) / (time.perf_counter() - t0)  # bytes per second
    rate(False, 0)  # warm the mapping
    alone = max(rate(None, 0) for _ in range(rounds))
    step_s = batch / alone
    step = min(len(work), max(1 << 12, int(step_s * hash_rate)))
    runs = {"read alone": [], "step, default": [], "step, prefetch off": [], "step, prefetch on": []}
    for _ in range(rounds):
        runs["read alone"].append(rate(None, 0))
        runs["step, default"].append(rate(None, step))
        runs["step, prefetch off"].append(rate(False, step))
        runs["step, prefetch on"].append(rate(True, step))
    return {"reader": pack.reader, "step_ms": step / hash_rate * 1e3, **{k: max(v) for k, v in runs.items()}}


def report_overlap(r: dict) -> None:
    a = r["read alone"]
    step = f"{r['step_ms']:.2f} ms per batch (one batch's read)"
    print(f"\nreading overlaps a model step of {step}, {r['reader']} reader:")
    for k in ("step, default", "step, prefetch off", "step, prefetch on"):
        print(f"  {k}: {r[k]:,.0f} records/s = {r[k] / a:.2f}x reading alone ({a:,.0f}); no overlap would give 0.50x")


HYBRID = {"shift 8": (0.0, 8), "flip 0.5 + shift 8": (0.5, 8), "flip 1.0": (1.0, 0)}


def measure_hybrid(reader: str, pack_path: Path, batch: int, rounds: int) -> dict:
    """CPU us/record of plain batches, batches with online flip/shift, and the old way (read, then apply_online).

    The loops alternate over ``rounds`` shuffled passes (all variants) so load
    from other processes hits them alike; each figure is the median.
    """
    from edgeaug.device.loader import Pack
    from edgeaug.device.online import apply_online, border_pattern, fill_value, online_params

    pack = Pack(str(pack_path), reader=reader)
    layout = pack.manifest["target"]["layout"]
    pattern = border_pattern(pack.shape, layout, fill_value(pack.manifest), pack.dtype)
    scratch = np.empty(pack.shape, pack.dtype)

    def during(e, hflip, shift):  # this loader: the transform during the read
        for _x, _y in pack.batches(batch, epoch=e, all_variants=True, hflip=hflip, shift=shift):
            pass

    def after(e, hflip, shift):  # the previous loader: plain read, then an in-place pass
        for x, _y, idx in pack.batches(batch, epoch=e, all_variants=True, with_index=True):
            f, s = online_params(pack.seed, e, idx, hflip, shift)
            apply_online(x, layout, f, s, pattern, scratch)

    loops = {"plain": lambda e: during(e, 0.0, 0)}
    for name, (hflip, shift) in HYBRID.items():
        loops[name] = lambda e, h=hflip, s=shift: during(e, h, s)
        loops[name + " (read, then apply_online)"] = lambda e, h=hflip, s=shift: after(e, h, s)
    times: dict = {k: [] for k in loops}
    n = len(pack.epoch_order(0, all_variants=True))
    for r in range(rounds):
        for name, fn in loops.items():
            c0 = time.process_time()
            fn(r)
            times[name].append((time.process_time() - c0) / n * 1e6)
    pack.close()
    return {k: float(np.median(v)) for k, v in times.items()}


def report_hybrid(case: str, results: dict) -> None:
    print(f"\nonline flip/shift in Pack.batches, {case}: CPU us/record (median), ratio = plain / this (goal >= 0.85)")
    print("\n| reader | plain | " + " | ".join(HYBRID) + " |")
    print("|---|---|" + "---|" * len(HYBRID))
    for reader, r in results.items():
        cells = [
            f"{r[k]:.1f} ({r['plain'] / r[k]:.2f}x; before {r[k + ' (read, then apply_online)']:.1f}, "
            f"{r['plain'] / r[k + ' (read, then apply_online)']:.2f}x)"
            for k in HYBRID
        ]
        print(f"| {reader} | {r['plain']:.1f} | " + " | ".join(cells) + " |")


def prepare(work: Path, case: str, mb: int) -> Path:
    """A synthetic pack of ``case`` (>= ``mb`` MB) and the raw file of its tensors, both read once (cached)."""
    import bench_device

    from edgeaug.device.loader import Pack

    path = work / f"{case}.lmdb"
    bench_device.build_pack(path, case, mb << 20)
    with Pack(str(path)) as pack:
        raw = np.memmap(path.with_suffix(".tensors"), pack.dtype, "w+", shape=(len(pack),) + pack.shape)
        b = 0
        for x, _ in pack.batches(256, shuffle=False, all_variants=True):  # records in pack order
            raw[b : b + len(x)] = x
            b += len(x)
        raw.flush()
        del raw
    # Both files into the page cache the same way, by reading them (as from a device's storage): pages
    # left by the writers (lmdb's copy, a memmap) come in other sizes and map with different fault costs.
    for f in (path, path.with_suffix(".tensors")):
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            while fh.read(8 << 20):
                pass
    return path


def run_child(args: list) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], check=False, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{' '.join(args[:2])} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", choices=(*CASES, "both"), default="both")
    ap.add_argument("--mb", type=int, default=300, help="pack size per case in MB (default 300)")
    ap.add_argument("--passes", type=int, default=4, help="passes per method: the first, then warm ones")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument(
        "--repeat", type=int, default=3, help="rounds of fresh processes, methods alternating; medians (default 3)"
    )
    ap.add_argument("--online", action="store_true", help="also measure decode + augment per sample (needs cv2)")
    ap.add_argument(
        "--hybrid",
        action="store_true",
        help="instead: CPU cost of Pack.batches(hflip=0.5, shift=8), shift 8 and flip 1.0 against plain batches, "
        "both readers, and against the previous way (read, then apply_online in place)",
    )
    ap.add_argument("--rounds", type=int, default=7, help="--hybrid: alternated rounds, median (default 7)")
    ap.add_argument("--workdir", help="where the packs go (default: a temporary directory)")
    ap.add_argument("--one", nargs=2, metavar=("METHOD", "PACK"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.passes < 2:
        ap.error("--passes must be >= 2 (a first pass and at least one warm pass)")
    if args.one:  # child: measure one method, print JSON
        if args.one[0].startswith("hybrid-"):
            print(json.dumps(measure_hybrid(args.one[0][7:], Path(args.one[1]), args.batch, args.rounds)))
        elif args.one[0] == "overlap":
            print(json.dumps(measure_overlap(Path(args.one[1]), args.batch, args.rounds)))
        elif args.one[0] == "online":
            print(json.dumps(measure_online(Path(args.one[1]), 3.0)))
        else:
            print(json.dumps(measure(args.one[0], Path(args.one[1]), args.batch, args.passes)))
        return
    work = Path(tempfile.mkdtemp(prefix="edgeaug-bench-", dir=args.workdir))
    try:
        for case in CASES if args.case == "both" else [args.case]:
            t0 = time.perf_counter()
            path = prepare(work, case, args.mb)
            print(
                f"\n## {case}: {path.stat().st_size / 1e6:.0f} MB pack, batch {args.batch} "
                f"(prepared in {time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
            common = ["--batch", str(args.batch), "--passes", str(args.passes), "--rounds", str(args.rounds)]
            if args.hybrid:
                report_hybrid(case, {r: run_child(["--one", f"hybrid-{r}", str(path), *common]) for r in READERS})
                continue
            rounds = [{m: run_child(["--one", m, str(path), *common]) for m in METHODS} for _ in range(args.repeat)]
            report(rounds)
            report_overlap(run_child(["--one", "overlap", str(path), *common]))
            if args.online and case == "rpi4":
                from edgeaug.demo import make_dataset

                data = make_dataset(work / "data", per_class=10, seed=1)
                online = run_child(["--one", "online", str(data)])["warm"]
                print(
                    f"\nonline decode + augment: {online:,.0f} samples/s; "
                    f"loader/online = {np.median([r['loader']['warm'] for r in rounds]) / online:.0f}x (goal >= 50)"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(rounds: list) -> None:
    """Per method, the median over rounds; ratios are medians of each round's ratio to that round's gather."""

    def med(values):
        return float(np.median(values))

    def ratios(m: str, key: str) -> list:
        return [r[m][key] / r["gather"][key] for r in rounds]

    def spread(values) -> str:
        return f"{med(values):.2f}" + (f" ({min(values):.2f}-{max(values):.2f})" if len(values) > 1 else "")

    print(
        f"\nmedians of {len(rounds)} rounds (per-round ratio range in brackets)\n"
        "\n| method | first pass records/s | x gather | warm records/s | x gather "
        "| CPU us/record first / warm | open s |"
    )
    print("|---|---|---|---|---|---|---|")
    for m in rounds[0]:
        rs = [r[m] for r in rounds]
        name = f"{m} ({rs[0]['reader']})" if rs[0].get("reader") else m
        first, warm = (med([r[k] for r in rs]) for k in ("first", "warm"))
        cpu = "{:.1f} / {:.1f}".format(*(med([r[k] for r in rs]) for k in ("first_cpu_us", "warm_cpu_us")))
        print(
            f"| {name} | {first:,.0f} | {spread(ratios(m, 'first'))} | {warm:,.0f} | {spread(ratios(m, 'warm'))} "
            f"| {cpu} | {med([r['open_s'] for r in rs]):.3f} |"
        )
    f, w = med(ratios("loader", "first")), med(ratios("loader", "warm"))
    print(f"\ngoal loader >= 0.8x gather: first pass {f:.2f}, warm {w:.2f}")


if __name__ == "__main__":
    main()
