"""The cgroup of scripts/bench_device.py: a Raspberry Pi's memory and card limits imposed on one child process.

The parent makes a fresh cgroup (v2 ``memory.max`` + ``io.max``, or v1 ``memory.limit_in_bytes`` +
``blkio.throttle.read_{bps,iops}_device``) on the whole disk that holds the pack; the child reads its anonymous
memory and device bytes back (:class:`CgroupStats`) and drops the page cache before each cold measurement.
When a limit cannot be imposed, :class:`NotMeasured` says why (the benchmark then exits ``NOT_MEASURED``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

NOT_MEASURED = 3


class NotMeasured(Exception):
    """The limits cannot be imposed (or did not hold): nothing is measured."""


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
