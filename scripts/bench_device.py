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

NOT_MEASURED = 3
HYBRID = {"hflip": 0.5, "shift": 8}
#: --mix: the online multi-image ops, each measured against plain batches of the same run.
MIXES = {
    "mix_mosaic": {"mosaic": 1.0},
    "mix_mixup": {"mixup": 0.5},
    "mix_cutmix": {"cutmix": 0.5},
    "mix_all": {"mosaic": 1.0, "mixup": 0.5, "cutmix": 0.5},
}
CASES = {  # the shipped target of the same name, and the Pi's memory
    "rpi4": {"mem": "512M"},
    "rpi-zero2w": {"mem": "128M"},
}
VARIANTS = 9  # records per source: --variants 8 with the original


class NotMeasured(Exception):
    """The limits cannot be imposed (or did not hold): nothing is measured."""


def parse_size(text: str) -> int:
    """``512M``, ``40M``, ``1G`` (powers of 1024, like numfmt --from=iec) or plain bytes."""
    text = text.strip().upper().rstrip("B").rstrip("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(text[-1:], 1)
    try:
        return int(float(text[:-1] if mult > 1 else text) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {text!r}") from None


# --- the cgroup -----------------------------------------------------------------------------------


def block_device(path: str) -> tuple[str, str]:
    """``(maj:min, name)`` of the whole disk holding ``path`` (throttles apply to disks, not partitions)."""
    st = os.stat(path)
    majmin = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    sysdir = Path("/sys/dev/block") / majmin
    if os.major(st.st_dev) == 0 or not sysdir.exists():
        raise NotMeasured(
            f"{path} is not on a block device (dev {majmin}: tmpfs, overlay, btrfs or NFS?); "
            f"use --workdir on the disk to measure"
        )
    sysdir = sysdir.resolve()
    if (sysdir / "partition").exists():
        sysdir = sysdir.parent
    majmin = (sysdir / "dev").read_text().strip()
    if (sysdir / "slaves").is_dir() and any((sysdir / "slaves").iterdir()):
        print(f"note: {sysdir.name} is a stacked device (dm/md); the throttle applies to it", file=sys.stderr)
    return majmin, sysdir.name


def _own_cgroup(controller: str | None) -> str:
    """This process's cgroup path for a v1 controller, or the v2 path when ``controller`` is None."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if (controller is None and ctrls == "") or (controller and controller in ctrls.split(",")):
            return path.lstrip("/")
    return ""


def _write(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


class Cgroup:
    """A fresh cgroup with the Pi's limits; ``enter_fn`` moves the calling process into it."""

    def __init__(self, mem: int, rbps: int, riops: int, majmin: str) -> None:
        if os.geteuid() != 0:
            raise NotMeasured("needs root (cgroup limits and dropping the page cache)")
        self.mem, self.rbps, self.riops, self.majmin = mem, rbps, riops, majmin
        self.dirs: list[Path] = []
        name = f"edgeaug-bench.{os.getpid()}"
        try:
            if Path("/sys/fs/cgroup/cgroup.controllers").exists():
                self._v2(name)
            elif Path("/sys/fs/cgroup/memory").is_dir() and Path("/sys/fs/cgroup/blkio").is_dir():
                self._v1(name)
            else:
                raise NotMeasured("neither cgroup v2 (memory+io) nor v1 memory and blkio hierarchies are mounted")
        except OSError as e:
            self.remove()
            raise NotMeasured(f"cannot set the cgroup limits: {e}") from None

    def _v2(self, name: str) -> None:
        self.version, root = 2, Path("/sys/fs/cgroup")
        errors = []
        # Nested under our own cgroup when it can delegate (no processes of its own), else at the root.
        for parent in dict.fromkeys([root / _own_cgroup(None), root]):
            try:
                have = (parent / "cgroup.subtree_control").read_text().split()
                for c in ("memory", "io"):
                    if c not in have:
                        _write(parent / "cgroup.subtree_control", f"+{c}")
            except OSError as e:
                errors.append(f"{parent}: {e.strerror or e}")
                continue
            g = parent / name
            g.mkdir()
            self.dirs = [g]
            _write(g / "memory.max", str(self.mem))
            if (g / "memory.swap.max").exists():
                _write(g / "memory.swap.max", "0")
            _write(g / "io.max", f"{self.majmin} rbps={self.rbps} riops={self.riops}")
            self.procs = [g / "cgroup.procs"]
            self.where = str(g)
            return
        raise NotMeasured("cgroup v2: cannot enable the memory and io controllers: " + "; ".join(errors))

    def _v1(self, name: str) -> None:
        self.version = 1
        m = Path("/sys/fs/cgroup/memory") / _own_cgroup("memory") / name
        b = Path("/sys/fs/cgroup/blkio") / _own_cgroup("blkio") / name
        m.mkdir()
        self.dirs.append(m)
        b.mkdir()
        self.dirs.append(b)
        _write(m / "memory.limit_in_bytes", str(self.mem))
        if (m / "memory.memsw.limit_in_bytes").exists():  # no swapping out of the limit either
            _write(m / "memory.memsw.limit_in_bytes", str(self.mem))
        _write(b / "blkio.throttle.read_bps_device", f"{self.majmin} {self.rbps}")
        _write(b / "blkio.throttle.read_iops_device", f"{self.majmin} {self.riops}")
        self.procs = [m / "cgroup.procs", b / "cgroup.procs"]
        self.where = f"{m} + {b}"

    def enter_fn(self):
        procs = [str(p) for p in self.procs]

        def enter() -> None:  # runs in the child between fork and exec
            for p in procs:
                with open(p, "w") as f:
                    f.write("0")

        return enter

    def describe(self) -> str:
        return (
            f"cgroup v{self.version} {self.where}: memory {self.mem >> 20} MiB incl. page cache, "
            f"reads {self.rbps / 1e6:.1f} MB/s and {self.riops} IO/s on {self.majmin}"
        )

    def remove(self) -> None:
        for d in reversed(self.dirs):
            for _ in range(50):  # the child's exit may still be in flight
                try:
                    d.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)
        self.dirs = []


# --- reading the cgroup from inside (child) ---------------------------------------------------------


class CgroupStats:
    """Anonymous memory and device bytes read, from the cgroup files the child was placed in."""

    def __init__(self, dirs: list[str], majmin: str) -> None:
        self.dirs, self.majmin = [Path(d) for d in dirs], majmin

    def anon(self) -> int:
        for d in self.dirs:
            for name in ("memory.stat",):
                if (d / name).exists():
                    stat = dict(line.split() for line in (d / name).read_text().splitlines())
                    return int(stat.get("anon", stat.get("total_rss", stat.get("rss", 0))))
        return 0

    def read_bytes(self) -> int:
        for d in self.dirs:
            if (d / "io.stat").exists():
                for line in (d / "io.stat").read_text().splitlines():
                    if line.startswith(self.majmin + " "):
                        return int(dict(kv.split("=") for kv in line.split()[1:]).get("rbytes", 0))
                return 0
            if (d / "blkio.throttle.io_service_bytes").exists():
                for line in (d / "blkio.throttle.io_service_bytes").read_text().splitlines():
                    parts = line.split()
                    if len(parts) == 3 and parts[0] == self.majmin and parts[1] == "Read":
                        return int(parts[2])
                return 0
        return 0


def rss_anon() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) << 10
    return 0


def drop_cache(path: str) -> None:
    """Drop the pack's pages from the page cache (all clean pages, like simpi), or refuse to measure."""
    os.sync()
    try:
        _write(Path("/proc/sys/vm/drop_caches"), "1")
    except OSError as e:
        raise NotMeasured(f"cannot drop the page cache: {e.strerror or e}") from None
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# --- record offsets: a minimal walk of the LMDB B-tree (64-bit LMDB 0.9 layout) ---------------------


def record_extents(path: str) -> tuple[np.ndarray, np.ndarray]:
    """File offset and size of every record value (keys b"r" + u64 BE), from the bounds-checked B-tree walk."""
    from edgeaug.device.lmdbpure import PureEnvironment

    with PureEnvironment(path) as env:
        ext = [(off, size) for key, off, size, _ in env.extents(start=b"r") if key[:1] == b"r" and len(key) == 9]
    n = len(ext)
    return np.array([e[0] for e in ext], np.int64).reshape(n), np.array([e[1] for e in ext], np.int64).reshape(n)


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


def report(res: dict[str, Any]) -> None:
    card = res["card"]
    print(f"\n## {res['label']}: {res['pack']} ({res['pack_mb']:.0f} MB)")
    print(f"{res['cgroup']}; /dev/{res['disk']} read_ahead_kb={res['read_ahead_kb']}")
    if (res["read_ahead_kb"] or 0) > 128:
        print(
            f"note: read_ahead_kb {res['read_ahead_kb']} is larger than the kernel's usual 128 for an SD card: "
            f"readers that do not disable readahead (mmap faults, small preads) read more here than on a Pi"
        )
    print(
        "\n| measurement | records/s | MB/s delivered | device MB read / delivered | CPU s / wall s "
        "| x card | open s | peak RssAnon / cgroup anon MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rows = (
        ("card_first", "card limit (1st)"),
        ("default", "Pack.batches, default backend"),
        ("pure", "Pack.batches, pure backend"),
        ("default_step", "Pack.batches + model step (default)"),
        ("hybrid", "Pack.batches(hflip=0.5, shift=8) (default)"),
        *((key, "Pack.batches(" + ", ".join(f"{k}={v:g}" for k, v in mix.items()) + ")") for key, mix in MIXES.items()),
        ("card_last", "card limit (2nd)"),
    )
    for key, name in rows:
        if key not in res:
            continue
        m = res[key]
        amp = m["device_read_mb"] / m["delivered_mb"] if m["delivered_mb"] else float("nan")
        mem = f"{m['peak_rss_anon_mb']:.0f} / {m['peak_cgroup_anon_mb']:.0f}" if "open_s" in m else ""
        name = f"{name} ({m['backend']}, {m['reader']} reader)" if m.get("reader") else name
        name = f"{name} ({m['backend']})" if "backend" in m and not m.get("reader") else name
        print(
            f"| {name} | {m['records_per_s']:,.1f} | {m['delivered_mb'] / m['seconds']:.1f} | {amp:.2f} "
            f"| {m['cpu_s']:.1f} / {m['seconds']:.1f} | {m['records_per_s'] / card:.2f} "
            f"| {m.get('open_s', float('nan')):.2f} | {mem} |"
        )
    if "mix_all" in res:
        report_mix(res)
        return
    print(
        f"\nratios against the card limit (mean of 1st and 2nd, {card:,.1f} records/s): "
        f"default/card = {res['default']['records_per_s'] / card:.2f}, "
        f"pure/card = {res['pure']['records_per_s'] / card:.2f} (goal >= 0.8)"
    )
    st = res["default_step"]
    print(
        f"with a model step of {st['step_s'] * 1e3:.0f} ms per batch (one batch's read time at the card's limit): "
        f"{st['records_per_s'] / card:.2f} x card; reading without overlap would give 0.50"
    )
    if "hybrid" in res:
        h = res["hybrid"]
        print(
            f"online flip 0.5 + shift 8 during the read: {h['records_per_s'] / res['default']['records_per_s']:.2f}"
            f" x plain batches (goal >= 0.85), {h['cpu_s'] / max(h['records'], 1) * 1e6:.0f} vs "
            f"{res['default']['cpu_s'] / max(res['default']['records'], 1) * 1e6:.0f} CPU us per record"
        )


def report_mix(res: dict[str, Any]) -> None:
    """--mix: each op against the plain batches of the same run, with CPU per record."""
    base = res["default"]
    print(f"\nplain batches against the card limit: {base['records_per_s'] / res['card']:.2f}")
    cpu = base["cpu_s"] / max(base["records"], 1) * 1e6
    print(f"\nplain batches: {base['records_per_s']:,.1f} records/s, {cpu:.0f} CPU us per record (the baseline)")
    for key, mix in MIXES.items():
        m = res[key]
        ops = ", ".join(f"{k}={v:g}" for k, v in mix.items())
        print(
            f"{ops}: {m['records_per_s'] / base['records_per_s']:.2f} x plain batches (goal >= 0.9), "
            f"{m['cpu_s'] / max(m['records'], 1) * 1e6:.0f} CPU us per record"
        )


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
