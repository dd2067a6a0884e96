#!/usr/bin/env python3
"""Compact packs (issue 25): a compressed pack against the raw pack of the same records, on a simulated Pi card.

Run as ``sudo python scripts/bench_device.py --codec [options]`` (or this file
directly).  Two packs of the same real photos, built by the real builder with
the same recipe, seed and variants, one raw and one ``--compress CODEC``:

  sizes    the whole file and the stored tensors against the raw pack; per
           photo, the stored ratio and the order-0 entropy of the chosen
           filter's residual (what a byte coder without context can reach)
  card     in one child process inside the cgroup of bench_device.py (memory
           incl. page cache, read MB/s and IO/s on the pack's disk), page cache
           dropped before each measurement: whole-record preads of each pack
           (the card's limit), ``Pack.batches(32, shuffle=True)`` on both, the
           pure (32-bit) reader and the hybrid (online flip + shift) on the
           compressed pack; records/s and process CPU s / wall s
  decode   native decode cost per record (no I/O), so decode cores at the
           measured rate = rate x cost
  --page-cache  both packs read from the page cache (no cgroup): what
           compression costs when the pack fits in memory
  --qemu   decode cost per record under qemu-aarch64 and qemu-arm (Debian
           bookworm python3 in scripts/pisandbox.py's roots) against native

The compressed pack must be at least twice the memory limit (so is the raw
pack, about 1.8x larger): with the 10 photos of ~/photo and 512M that is
about 13,000 records.  Building them takes minutes; ``--keep`` keeps them,
``--raw PATH --packed PATH`` measures existing ones.

    sudo python scripts/bench_device.py --codec --photos DIR [--compress zstd|zlib] [--level N]
        [--mem 512M] [--rbps 40M] [--riops 1500] [--seconds 8] [--workdir DIR] [--keep]
        [--raw PATH --packed PATH] [--sizes-only] [--page-cache] [--qemu] [--json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


def _script(name: str):
    """A sibling script as a module (bench_device for its cgroup and measurements, pisandbox for qemu)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


# --- building the two packs --------------------------------------------------------------------------


def copy_photos(photos: Path, dest: Path) -> int:
    """The photos under ``photos`` into one class folder ``dest/photo`` (sorted names); their count."""
    files = sorted(p for p in photos.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
    if not files:
        raise SystemExit(f"error: {photos}: no .jpg/.png photos")
    (dest / "photo").mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copyfile(f, dest / "photo" / f.name)
    return len(files)


def build_pair(
    work: Path, photos: Path, codec: str, level: int | None, min_bytes: int, target: str = "rpi4"
) -> tuple[Path, Path]:
    """(raw, compressed) packs of the same photos, recipe, seed and variants; the compressed one >= min_bytes."""
    from edgeaug.builder.pipeline import build

    src = work / "sources"
    n = copy_photos(photos, src)
    pilot = work / "pilot.lmdb"
    build(src, pilot, target, "default", variants=4, seed=1, compress=codec, level=level, workers=1)
    per_record = pilot.stat().st_size / (5 * n)
    pilot.unlink()
    variants = int(-(-min_bytes * 1.05 // (per_record * n)))
    out = {}
    for c in ("none", codec):
        out[c] = work / f"photos-{c}.lmdb"
        t0 = time.perf_counter()
        lvl = None if c == "none" else level
        build(src, out[c], target, "default", variants=variants - 1, seed=1, compress=c, level=lvl)
        mb = out[c].stat().st_size / 1e6
        print(f"built {out[c].name}: {n} photos x {variants} records, {mb:.0f} MB, {time.perf_counter() - t0:.0f}s")
    return out["none"], out[codec]


# --- sizes -----------------------------------------------------------------------------------------


def record_values(path: Path):
    """(record number, parsed header, value) of every record, in key order (python-lmdb: a workstation read)."""
    import lmdb

    from edgeaug.device.format import RECORD_PREFIX, RecordHeader, record_number

    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
    try:
        with env.begin(buffers=True) as txn:
            for key, v in txn.cursor():
                key = bytes(key)
                if key[:1] == RECORD_PREFIX and len(key) == 9:
                    yield record_number(key), RecordHeader(v), bytes(v)
    finally:
        env.close()


def sizes(raw: Path, packed: Path, every: int = 7) -> dict[str, Any]:
    """Whole-file and per-photo size ratios, with the order-0 entropy of each photo's best filter residual.

    The entropy (bits per byte / 8) is what a coder of independent bytes could reach after the
    filter; zstd and zlib model repeats, so they land near it on photo residuals.
    """
    from edgeaug.device.codec import _entropy, choose_filter
    from edgeaug.device.format import HEADER_SIZE
    from edgeaug.loader import Pack

    with Pack(str(packed)) as p:
        shape, dtype, layout = p.shape, p.dtype, p.manifest["target"]["layout"]
        names = [s["path"] for s in p.manifest["sources"]]
        comp = p.info()["compression"]
    per: dict[str, list] = {}
    stored = tensor = 0
    for _r, h, _v in record_values(packed):
        stored, tensor = stored + h.stored_nbytes, tensor + h.tensor_nbytes
        row = per.setdefault(names[h.source] if h.source < len(names) else str(h.source), [0, 0, 0.0, 0])
        row[0], row[1] = row[0] + h.stored_nbytes, row[1] + h.tensor_nbytes
    for r, h, v in record_values(raw):  # the residual entropy, from the raw pack's tensors
        if r % every:
            continue
        x = np.frombuffer(v, dtype, count=int(np.prod(shape)), offset=HEADER_SIZE).reshape(shape)
        _, d = choose_filter(x, layout)
        row = per[names[h.source] if h.source < len(names) else str(h.source)]
        row[2], row[3] = row[2] + _entropy(np.asarray(d).view(np.uint8)) / 8, row[3] + 1
    photos = {k: {"stored_vs_raw": a / b, "entropy_bound": e / m if m else None} for k, (a, b, e, m) in per.items()}
    return {
        "codec": comp,
        "file_mb": {"raw": raw.stat().st_size / 1e6, "packed": packed.stat().st_size / 1e6},
        "file_ratio": packed.stat().st_size / raw.stat().st_size,
        "tensor_ratio": stored / tensor,
        "photos": dict(sorted(photos.items())),
    }


# --- page cache (no cgroup) --------------------------------------------------------------------------------


def measure_warm(path: Path, seconds: float, batch: int = 32) -> dict[str, Any]:
    """Pack.batches(shuffle=True) with the whole pack in the page cache (read once first): records/s, CPU/wall."""
    from edgeaug.loader import Pack

    with open(path, "rb") as f:  # into the page cache
        while f.read(1 << 24):
            pass
    with Pack(str(path)) as pack:
        n, epoch, c0, t0 = 0, 0, time.process_time(), time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for x, _ in pack.batches(batch, epoch=epoch, shuffle=True):
                n += len(x)
                if time.perf_counter() - t0 >= seconds:
                    break
            epoch += 1
        dt, reader = time.perf_counter() - t0, pack.reader
    return {"records_per_s": n / dt, "cpu_per_wall": (time.process_time() - c0) / dt, "reader": reader}


def page_cache(raw: Path, packed: Path, seconds: float) -> dict[str, Any]:
    res = {"raw": measure_warm(raw, seconds), "packed": measure_warm(packed, seconds)}
    print("\n| page cache (whole pack cached, no limits) | records/s | CPU s / wall s | reader |\n|---|---|---|---|")
    for k in ("raw", "packed"):
        m = res[k]
        print(f"| {k} | {m['records_per_s']:,.0f} | {m['cpu_per_wall']:.2f} | {m['reader']} |")
    return res


# --- the measurements (child, inside the cgroup) --------------------------------------------------------------


def child(args) -> int:
    bd = _script("bench_device")
    from edgeaug.loader import Pack

    stats = bd.CgroupStats(args.cg_dirs, args.majmin)
    out: dict[str, Any] = {"in_cgroup": Path("/proc/self/cgroup").read_text().split()}
    for name, path in (("raw", args.raw), ("packed", args.packed)):
        offs, sizes_ = bd.record_extents(path)
        with Pack(path) as pack:
            orders, nbytes = bd.epoch_orders(pack.epoch_order), pack.nbytes
        out[f"card_{name}"] = bd.measure_card(path, offs, sizes_, orders, args.seconds, stats)
        out[f"card_{name}"]["value_bytes"] = float(sizes_.mean())
        out[name] = bd.measure_loader(path, "auto", args.batch, args.seconds, stats, nbytes)
    out["packed_pure"] = bd.measure_loader(args.packed, "pure", args.batch, args.seconds, stats, nbytes)
    out["packed_hybrid"] = bd.measure_loader(
        args.packed, "auto", args.batch, args.seconds, stats, nbytes, online=bd.HYBRID
    )
    print(json.dumps(out))
    return 0


def run_cgroup(raw: Path, packed: Path, args) -> dict[str, Any]:
    """The child in a fresh cgroup with the Pi's limits (bench_device.Cgroup); its results, checked."""
    bd = _script("bench_device")
    majmin, disk = bd.block_device(str(packed))
    if bd.block_device(str(raw))[0] != majmin:
        raise bd.NotMeasured("the two packs are on different disks")
    cg = bd.Cgroup(args.mem, args.rbps, args.riops, majmin)
    child_args = ["--raw", str(raw), "--packed", str(packed), "--majmin", majmin]
    child_args += ["--seconds", str(args.seconds), "--batch", str(args.batch)]
    try:
        res = bd.run_child(cg, os.path.abspath(__file__), "compressed vs raw", child_args)
    finally:
        cg.remove()
    res.update(cgroup=cg.describe(), disk=disk)
    for key in ("card_raw", "card_packed"):  # the throttle must have held, as in bench_device.run_case
        bd.check_throttle(res[key], key, disk, args)
    return res


def report(sz: dict[str, Any], res: dict[str, Any] | None, cost: dict[str, Any]) -> None:
    c = sz["codec"]
    print(
        f"\n## {c['codec']} level {c.get('level')} vs raw: {sz['file_mb']['packed']:.0f} MB vs "
        f"{sz['file_mb']['raw']:.0f} MB"
    )
    print(f"whole file {sz['file_ratio']:.3f}x the raw pack (goal <= 0.45); stored tensors {sz['tensor_ratio']:.3f}x")
    print("\n| photo | stored / raw tensor | order-0 entropy of the residual / 8 bits |\n|---|---|---|")
    for k, v in sz["photos"].items():
        eb = "" if v["entropy_bound"] is None else f"{v['entropy_bound']:.3f}"
        print(f"| {k} | {v['stored_vs_raw']:.3f} | {eb} |")
    dec = cost[c["codec"]]["ms_per_record"]
    print(f"\nnative decode (no I/O): {dec:.2f} ms CPU per record; raw copy {cost['none']['ms_per_record']:.3f} ms")
    if res is None:
        return
    print(f"\n{res['cgroup']}; /dev/{res['disk']}")
    print("\n| measurement | records/s | MB/s read from the card | CPU s / wall s |\n|---|---|---|---|")
    rows = (
        ("card_raw", "card limit, raw pack"),
        ("raw", "Pack.batches, raw pack"),
        ("card_packed", "card limit, compressed pack"),
        ("packed", "Pack.batches, compressed pack"),
        ("packed_pure", "Pack.batches, compressed, pure reader"),
        ("packed_hybrid", "Pack.batches(hflip=0.5, shift=8), compressed"),
    )
    for key, name in rows:
        m = res[key]
        print(
            f"| {name} | {m['records_per_s']:,.1f} | {m['device_read_mb'] / m['seconds']:.1f} "
            f"| {m['cpu_s']:.1f} / {m['seconds']:.1f} |"
        )
    p, r = res["packed"], res["raw"]
    print(
        f"\ncompressed / raw records/s: {p['records_per_s'] / r['records_per_s']:.2f}x (goal >= 1.8); "
        f"card limits {res['card_packed']['records_per_s'] / res['card_raw']['records_per_s']:.2f}x"
    )
    print(
        f"decode CPU at that rate: {p['records_per_s'] * dec / 1e3:.2f} cores (native decode cost x rate); "
        f"the whole loader process {p['cpu_s'] / p['seconds']:.2f} cores (raw pack: {r['cpu_s'] / r['seconds']:.2f})"
        f" (goal <= 1)"
    )


def main(argv: list[str] | None = None) -> int:
    bd = _script("bench_device")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, help="a folder of real photos (.jpg/.png)")
    ap.add_argument("--compress", choices=("zstd", "zlib"), default="zstd")
    ap.add_argument("--target", choices=("rpi4", "rpi-zero2w"), default="rpi4", help="the packs' shipped target")
    ap.add_argument("--level", type=int, help="codec level (default: the codec's default)")
    ap.add_argument("--mem", type=bd.parse_size, help="default: 512M (rpi4), 128M (rpi-zero2w)")
    ap.add_argument("--rbps", type=bd.parse_size, default=bd.parse_size("40M"))
    ap.add_argument("--riops", type=int, default=1500)
    ap.add_argument("--seconds", type=float, default=8.0, help="time per measurement (default 8)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workdir", help="where built packs go (on the disk to simulate)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--raw", help="an existing raw pack (with --packed: its compressed twin)")
    ap.add_argument("--packed", help="an existing compressed pack of the same records as --raw")
    ap.add_argument("--sizes-only", action="store_true", help="no cgroup run (no root needed)")
    ap.add_argument("--page-cache", action="store_true", help="also both packs from the page cache (no limits)")
    ap.add_argument("--qemu", action="store_true", help="also the decode cost under qemu-aarch64 and qemu-arm")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--majmin", help=argparse.SUPPRESS)
    ap.add_argument("--cg-dirs", nargs="*", default=[], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    args.mem = args.mem or bd.parse_size(bd.CASES[args.target]["mem"])
    if not (args.raw and args.packed) and not args.photos:
        ap.error("give --photos DIR, or --raw and --packed")
    work = Path(tempfile.mkdtemp(prefix="edgeaug-codec-", dir=args.workdir))
    try:
        if args.raw and args.packed:
            raw, packed = Path(args.raw), Path(args.packed)
        else:
            if not args.sizes_only:
                bd.block_device(str(work))  # fail before building anything
            raw, packed = build_pair(work, args.photos, args.compress, args.level, 2 * args.mem, args.target)
        if packed.stat().st_size < 2 * args.mem:
            print(f"warning: {packed} is smaller than twice the memory limit", file=sys.stderr)
        sz = sizes(raw, packed)
        cost = _script("bench_decode").decode_cost([raw, packed])
        cost["none"] = cost.pop("none")
        res = None if args.sizes_only else run_cgroup(raw, packed, args)
        report(sz, res, cost)
        out = {"sizes": sz, "decode_native": cost, "cgroup": res}
        if args.page_cache:
            out["page_cache"] = page_cache(raw, packed, args.seconds)
        if args.qemu and args.photos:
            out["qemu"] = _script("bench_decode").qemu_report(work, args.photos, args.level, copy_photos)
        if args.json:
            print(json.dumps(out, indent=1))
    except bd.NotMeasured as e:
        print(f"not measured: {e}", file=sys.stderr)
        return bd.NOT_MEASURED
    finally:
        if args.keep:
            print(f"kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
