"""The measurements of scripts/bench_device.py, made in the child process inside the cgroup.

``card``: random whole-record preads at the records' offsets in the loader's epoch order (the card's limit);
``Pack.batches`` with a backend, an optional model step and optional online ops; :func:`child` runs them all
and prints one JSON line for the parent.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_device_cgroup import CgroupStats, drop_cache, rss_anon

HYBRID = {"hflip": 0.5, "shift": 8}
#: --mix: the online multi-image ops, each measured against plain batches of the same run.
MIXES = {
    "mix_mosaic": {"mosaic": 1.0},
    "mix_mixup": {"mixup": 0.5},
    "mix_cutmix": {"cutmix": 0.5},
    "mix_all": {"mosaic": 1.0, "mixup": 0.5, "cutmix": 0.5},
}


# --- record offsets: a minimal walk of the LMDB B-tree (64-bit LMDB 0.9 layout) ---------------------


def record_extents(path: str) -> tuple[np.ndarray, np.ndarray]:
    """File offset and size of every record value (keys b"r" + u64 BE), from the bounds-checked B-tree walk."""
    from edgeaug.device.lmdbpure import PureEnvironment

    with PureEnvironment(path) as env:
        ext = [(off, size) for key, off, size, _ in env.extents(start=b"r") if key[:1] == b"r" and len(key) == 9]
    n = len(ext)
    return np.array([e[0] for e in ext], np.int64).reshape(n), np.array([e[1] for e in ext], np.int64).reshape(n)


# --- the measurements (child, inside the cgroup) ---------------------------------------------------------


def _rate(n: int, dt: float) -> float:
    return n / dt if dt > 0 else 0.0


def measure_card(path: str, offs: np.ndarray, sizes: np.ndarray, orders, seconds: float, stats) -> dict:
    """Random whole-record preads at the records' offsets, in the loader's epoch order: the card's limit."""
    drop_cache(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # exactly the record, no readahead
        buf = memoryview(bytearray(int(sizes.max())))
        n, rb0, c0, t0 = 0, stats.read_bytes(), time.process_time(), time.perf_counter()
        for order in orders():
            for r in order.tolist():
                size = int(sizes[r])
                if os.preadv(fd, [buf[:size]], int(offs[r])) != size:
                    raise RuntimeError(f"short read of record {r}")
                n += 1
                if n % 16 == 0 and time.perf_counter() - t0 >= seconds:
                    break
            else:
                continue
            break
        dt = time.perf_counter() - t0
    finally:
        os.close(fd)
    nb = int(sizes.mean() * n)
    return {
        "records_per_s": _rate(n, dt),
        "records": n,
        "seconds": dt,
        "mb_per_s": nb / dt / 1e6,
        "cpu_s": time.process_time() - c0,
        "device_read_mb": (stats.read_bytes() - rb0) / 1e6,
        "delivered_mb": nb / 1e6,
    }


def measure_loader(
    path: str, backend: str, batch: int, seconds: float, stats, record_bytes: int, step: float = 0.0, online=None
) -> dict:
    """Pack.batches for ``seconds``; ``step`` > 0 sleeps that long per batch, a model step that releases the GIL.

    ``online``: ``{"hflip": P, "shift": S}`` for the device's online flip and shift (the hybrid), or
    mosaic/mixup/cutmix probabilities with the label argument they need.
    """
    from edgeaug.loader import Pack

    drop_cache(path)
    rb0, t0 = stats.read_bytes(), time.perf_counter()
    pack = Pack(path, backend=backend)
    open_s = time.perf_counter() - t0
    peak = {"rss_anon": rss_anon(), "cg_anon": stats.anon()}
    n, epoch, c0, t0, tick = 0, 0, time.process_time(), time.perf_counter(), 0.0
    try:
        while True:
            for x, *_ in pack.batches(batch, epoch=epoch, shuffle=True, **(online or {})):
                n += len(x)
                if step:
                    time.sleep(step)
                now = time.perf_counter()
                if now - tick > 0.2:
                    tick = now
                    peak["rss_anon"] = max(peak["rss_anon"], rss_anon())
                    peak["cg_anon"] = max(peak["cg_anon"], stats.anon())
                if now - t0 >= seconds:
                    break
            else:
                epoch += 1
                continue
            break
        dt = time.perf_counter() - t0
        name = pack.backend_name()
    finally:
        pack.close()
    return {
        "records_per_s": _rate(n, dt),
        "records": n,
        "seconds": dt,
        "open_s": open_s,
        "backend": name,
        "reader": pack.reader if hasattr(pack, "reader") else "",
        "step_s": step,
        "cpu_s": time.process_time() - c0,
        "device_read_mb": (stats.read_bytes() - rb0) / 1e6,
        "delivered_mb": n * record_bytes / 1e6,
        "peak_rss_anon_mb": peak["rss_anon"] / 2**20,
        "peak_cgroup_anon_mb": peak["cg_anon"] / 2**20,
    }


def epoch_orders(order_of):
    """``orders()`` for :func:`measure_card`: the shuffled record orders of epochs 0, 1, 2, ... of a pack."""

    def orders():
        e = 0
        while True:
            yield order_of(e, shuffle=True)
            e += 1

    return orders


def child(args) -> int:
    from edgeaug.loader import Pack

    stats = CgroupStats(args.cg_dirs, args.majmin)
    path = args.pack
    offs, sizes = record_extents(path)
    with Pack(path) as pack:
        order_of = pack.epoch_order
        tensor_bytes = pack.nbytes

    orders = epoch_orders(order_of)
    out: dict[str, Any] = {"in_cgroup": Path("/proc/self/cgroup").read_text().split()}
    out["card_first"] = measure_card(path, offs, sizes, orders, args.seconds, stats)
    if args.mix:
        from edgeaug.device.online_mix_batch import label_kwargs

        with Pack(path) as pack:
            labels = label_kwargs(pack.manifest)
        out["default"] = measure_loader(path, "auto", args.batch, args.seconds, stats, tensor_bytes)
        for key, mix in MIXES.items():
            kw = dict(mix, **labels)
            out[key] = measure_loader(path, "auto", args.batch, args.seconds, stats, tensor_bytes, online=kw)
        out["card_last"] = measure_card(path, offs, sizes, orders, args.seconds, stats)
        print(json.dumps(out))
        return 0
    out["default"] = measure_loader(path, "auto", args.batch, args.seconds, stats, tensor_bytes)
    out["pure"] = measure_loader(path, "pure", args.batch, args.seconds, stats, tensor_bytes)
    # A model step as long as reading one batch at the card's limit: without overlap the rate would halve.
    step = args.batch / out["card_first"]["records_per_s"]
    out["default_step"] = measure_loader(path, "auto", args.batch, args.seconds, stats, tensor_bytes, step)
    # The hybrid: online flip and shift during the read, against the plain default measurement above.
    out["hybrid"] = measure_loader(path, "auto", args.batch, args.seconds, stats, tensor_bytes, online=HYBRID)
    out["card_last"] = measure_card(path, offs, sizes, orders, args.seconds, stats)
    print(json.dumps(out))
    return 0
