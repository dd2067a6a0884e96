"""edgeaug's device-side loader: numpy, lmdb and the standard library only.

Usage on the device::

    from edgeaug.device.loader import Pack
    pack = Pack("flowers-rpi4.lmdb")              # split="train" or "val"
    x, y = pack[0]                                 # one record (a copy), its class
    for X, Y in pack.batches(32, epoch=e):         # X is the model's input
        session.run(None, {pack.input_name: X})

    python -m edgeaug.loader info|verify|bench PACK

:class:`Pack` lives in :mod:`.pack`; this module is its stable name and the
command line.  A Pack releases its file when it is garbage-collected;
``close()`` or ``with Pack(...)`` releases it at once.

On a 32-bit system, where the native liblmdb cannot open a pack written on a
64-bit machine, or without the lmdb package, the pure-Python reader
``edgeaug.device.lmdbpure`` is used instead (:mod:`.backends`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional

from .format import SPLITS  # bundle: drop
from .online_mix_batch import label_kwargs  # bundle: drop
from .pack import Pack  # bundle: drop
from .readplan import READERS, PackError  # bundle: drop
from .runners import bench_model  # bundle: drop

__all__ = ["Pack", "PackError", "bench", "bench_model", "main"]


def bench(
    pack: Pack, batch_size: int = 32, seconds: float = 3.0, mosaic_windows: Optional[str] = None, **mix: float
) -> Dict[str, float]:
    """Shuffled-batch throughput over whole epochs for about ``seconds``.

    ``mix``: ``mosaic``, ``mixup``, ``cutmix`` probabilities for
    :meth:`Pack.batches`, with the labels the pack needs for them (soft
    targets for classification, per-output labels otherwise), and
    ``mosaic_windows`` as :meth:`Pack.batches` takes it.
    """
    if len(pack) == 0:
        raise ValueError(f"split {pack.split} of {pack.path} has no records: nothing to measure")
    kw: Dict[str, Any] = dict(mix, **label_kwargs(pack.manifest)) if any(mix.values()) else {}
    if kw and mosaic_windows is not None:
        kw["mosaic_windows"] = mosaic_windows
    n, epoch, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for x, *_ in pack.batches(batch_size, epoch=epoch, **kw):
            n += len(x)
        epoch += 1
    dt = time.perf_counter() - t0
    return {"records_per_s": n / dt, "mb_per_s": n * pack.nbytes / dt / 1e6, "epochs": epoch}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m edgeaug.loader", description="Inspect, verify and benchmark an edgeaug pack on the device."
    )
    ap.add_argument(
        "command",
        choices=("info", "verify", "bench"),
        help="info: print the manifest summary; verify: check every record's digest; bench: shuffled-batch throughput",
    )
    ap.add_argument("pack", help="path to the .lmdb pack file")
    ap.add_argument(
        "--split",
        choices=sorted(SPLITS),
        help="which split to read: info and bench use train unless told; verify checks every record of the "
        "pack unless told, then only that split's",
    )
    ap.add_argument("--batch", type=int, default=32, help="bench: batch size (default 32)")
    ap.add_argument("--seconds", type=float, default=3.0, help="bench: how long to run (default 3)")
    ap.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "lmdb", "pure"),
        help="how single records and the manifest are read: lmdb (py-lmdb, needs the lmdb package), pure (the "
        "pure-Python reader: 32-bit systems, no lmdb) or auto (lmdb when it can read the pack, else pure)",
    )
    ap.add_argument(
        "--reader",
        default="auto",
        choices=READERS,
        help="how batches are read: mmap (copies from a mapping, for packs that fit in memory), pread (one read "
        "per record, for larger packs), auto (picks by size against the memory available)",
    )
    for op in ("mosaic", "mixup", "cutmix"):
        ap.add_argument(
            f"--{op}",
            type=float,
            default=0.0,
            metavar="P",
            help=f"bench: online {op} with probability P (default 0; with soft labels or per-output labels)",
        )
    ap.add_argument(
        "--mosaic-windows",
        choices=("centre", "boxes"),
        help="bench: where each mosaic quadrant's window lies (default: boxes for packs with labels, else centre)",
    )
    ap.add_argument(
        "--model",
        help="bench: also run this model on every batch: .onnx (needs onnxruntime) or .tflite "
        "(needs ai-edge-litert or tflite-runtime)",
    )
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m edgeaug.loader info|verify|bench PACK``: the exit code (0 ok, 1 damaged records, 2 error)."""
    args = _parser().parse_args(argv)
    try:
        with Pack(args.pack, args.split or "train", backend=args.backend, reader=args.reader) as pack:
            for w in pack.device_warnings():
                print(f"warning: {w}", file=sys.stderr)
            return _run(pack, args)
    except (PackError, ImportError) as e:  # ImportError: --backend lmdb without the lmdb package
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _run(pack: Pack, args: argparse.Namespace) -> int:
    if args.command == "info":
        print(json.dumps(pack.info(), indent=2))
        return 0
    if len(pack) == 0 and (args.command == "bench" or args.split):
        counts = ", ".join(f"{s} {c}" for s, c in pack.info()["splits"].items())
        print(
            f"error: split {pack.split} of {pack.path} has no records ({counts}): nothing to {args.command}; "
            "choose the other split with --split",
            file=sys.stderr,
        )
        return 2
    if args.command == "verify":
        return _verify(pack, bool(args.split))
    return _bench_model(pack, args) if args.model else _bench(pack, args)


def _verify(pack: Pack, split_only: bool) -> int:
    problems = pack.verify(split_only=split_only)
    for p in problems:
        print(p)
    n = len(pack) if split_only else pack.records
    what = f"{pack.split} records ok (of {pack.records} in the pack;" if split_only else "records ok ("
    print(f"{n - len(problems)}/{n} {what} fingerprint {pack.manifest['fingerprint'][:16]})")
    return 1 if problems else 0


def _bench(pack: Pack, args: argparse.Namespace) -> int:
    mix = {"mosaic": args.mosaic, "mixup": args.mixup, "cutmix": args.cutmix}
    try:
        r = bench(pack, args.batch, args.seconds, args.mosaic_windows, **mix)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    online = ", ".join(f"{k} {v:g}" for k, v in mix.items() if v)
    if online and args.mosaic_windows:
        online += f", {args.mosaic_windows} windows"
    print(
        f"{r['records_per_s']:.0f} records/s, {r['mb_per_s']:.1f} MB/s ({pack.split} split of {len(pack)}, "
        f"batch {args.batch}, {pack.backend_name()} backend, {pack.reader} reader, {r['epochs']} epochs"
        + (f", online {online})" if online else ")")
    )
    return 0


def _bench_model(pack: Pack, args: argparse.Namespace) -> int:
    try:
        r = bench_model(pack, args.model, args.batch, args.seconds)
    except ImportError as e:
        hint = str(e) if "LiteRT" in str(e) else "--model needs onnxruntime (pip install onnxruntime)"
        print(f"error: {hint}; without --model, bench measures loading only", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"{r['records_per_s']:.0f} samples/s through {os.path.basename(args.model)} "
        f"(batch {args.batch}, {pack.backend_name()} backend, loading + inference)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
