"""edgeaug's device-side loader: numpy, lmdb and the standard library only.

Usage on the device::

    from edgeaug.device.loader import Pack
    pack = Pack("flowers-rpi4.lmdb")              # split="train" or "val"
    x, y = pack[0]                                 # one record (a copy), its class
    for X, Y in pack.batches(32, epoch=e):         # X is the model's input
        session.run(None, {pack.input_name: X})

    python -m edgeaug.loader info|verify|bench PACK

The pack is untrusted input: every size and offset is checked before use, the
file size is checked against LMDB's page count (an mmap read past the end of
the file would kill the process with SIGBUS), and only JSON and fixed
little-endian arrays are parsed.  Python >= 3.9, numpy >= 1.21.

On a 32-bit system, where the native liblmdb cannot open a pack written on a
64-bit machine, or without the lmdb package, the pure-Python reader
``edgeaug.device.lmdbpure`` is used instead (:mod:`.backends`).
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import platform
import struct
import sys
import threading
import time
from functools import partial
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from .backends import open_backend  # bundle: drop
from .batchread import (  # bundle: drop
    READERS,
    BatchReader,
    PackError,
    choose_reader,
    prefetched,
    prefetched_when_useful,
    reusable,
)
from .format import (  # bundle: drop
    FORMAT_VERSION,
    HEADER_SIZE,
    INDEX_DTYPE,
    INDEX_KEY,
    MANIFEST_KEY,
    MAX_MANIFEST_BYTES,
    MAX_RECORDS,
    MAX_TENSOR_BYTES,
    SPLITS,
    FormatError,
    RecordHeader,
    fingerprint,
    record_digest,
    record_key,
    tensor_dtype,
    tensor_shape,
    unpack_labels,
    validate_manifest,
)
from .online import (  # bundle: drop
    OnlineBatch,
    border_pattern,
    fill_value,
    online_params,
    read_moves,
)
from .online_labels import transform_record  # bundle: drop
from .runners import bench_model  # bundle: drop  # noqa: F401  (re-exported)


class Pack:
    """A read-only view of one split of a pack.

    ``pack[i]`` returns ``(x, y)``: a copy of the record's tensor (safe to keep
    after :meth:`close`) and its class label; :meth:`batches` is the fast path.
    ``backend`` is ``"auto"``, ``"lmdb"`` or ``"pure"``: how single records
    and the manifest are read.  ``reader`` is how batches are read:
    ``"pread"`` (one read per record, for packs larger than memory), ``"mmap"``
    (copies from a mapping, for packs that fit in the page cache) or
    ``"auto"``, which picks by file size against min(MemAvailable, the
    cgroup's memory limit); a 32-bit process maps packs of at most
    512 MB, and reads with pread when a mapping fails.
    """

    def __init__(
        self, path: str, split: str = "train", seed: Optional[int] = None, backend: str = "auto", reader: str = "auto"
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
        if reader not in READERS:
            raise ValueError(f"reader must be one of {READERS}, got {reader!r}")
        self.path, self.split = str(path), split
        try:
            size = os.path.getsize(self.path)
        except OSError as e:
            raise PackError(f"{self.path}: cannot open: {e.strerror or e}") from None
        if size == 0:
            raise PackError(f"{self.path}: empty file")
        self._db = open_backend(self.path, size, backend)
        try:
            self.manifest = self._read_manifest()
            self._index = self._read_index()
            self._setup_split()
            self._reader = self._batch_reader(choose_reader(size, reader), reader == "auto")
        except OSError as e:
            self._db.release()
            raise PackError(f"{self.path}: cannot open for batch reads: {e.strerror or e}") from None
        except BaseException:
            self._db.release()
            raise
        self.seed = int(self.manifest["seed"]) if seed is None else int(seed)
        self._spare: List[np.ndarray] = []  # batch buffers to recycle, across epochs
        self._spare_lock = threading.Lock()
        self.reader = self._reader.mode

    def _batch_reader(self, mode: str, may_fall_back: bool) -> BatchReader:
        idx = self._index
        args = (self.path, self._db.table, self.records, self.nbytes, (idx["source"], idx["variant"], idx["split"]))
        try:
            return BatchReader(*args, mode)
        except PackError:
            raise
        except (OSError, ValueError, OverflowError):
            # Mapping can fail where address space is short (a 32-bit process): read with pread instead.
            if mode != "mmap" or not may_fall_back:
                raise
            return BatchReader(*args, "pread")

    # --- opening and validation ---------------------------------------------------

    def _read_manifest(self) -> Dict[str, Any]:
        raw = self._db.get(MANIFEST_KEY)
        if raw is None:
            raise PackError(f"{self.path}: incomplete pack: no manifest (the build did not finish)")
        if len(raw) > MAX_MANIFEST_BYTES:
            raise PackError(f"{self.path}: manifest of {len(raw)} bytes is implausibly large")
        try:
            m = json.loads(bytes(raw).decode("utf-8"))
        except (ValueError, RecursionError) as e:
            raise PackError(f"{self.path}: manifest is not valid JSON: {e}") from None
        if not isinstance(m, dict):
            raise PackError(f"{self.path}: manifest is not a JSON object")
        if m.get("format_version") != FORMAT_VERSION:
            raise PackError(
                f"{self.path}: pack format version {m.get('format_version')!r}; "
                f"this loader reads version {FORMAT_VERSION}"
            )
        try:
            validate_manifest(m)  # types and ranges: a crafted manifest can carry a valid fingerprint
        except FormatError as e:
            raise PackError(f"{self.path}: {e}") from None
        try:
            t = m["target"]
            self.shape = tensor_shape(t)
            self.dtype = tensor_dtype(t["dtype"])
            self.records = int(m["records"])
            splits = {s: (int(m["splits"][s]["start"]), int(m["splits"][s]["count"])) for s in SPLITS}
            self.classes = [str(c) for c in m["classes"]]
            self.input_name = str(t.get("input_name", "input"))
        except (KeyError, TypeError, ValueError, FormatError) as e:
            raise PackError(f"{self.path}: manifest field missing or malformed: {e!r}") from None
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        if min(self.shape) < 1 or self.nbytes > MAX_TENSOR_BYTES or not 0 <= self.records < MAX_RECORDS:
            raise PackError(f"{self.path}: manifest: tensor {self.shape} or records {self.records} out of range")
        for s, (start, count) in splits.items():
            if start < 0 or count < 0 or start + count > self.records:
                raise PackError(f"{self.path}: manifest: split {s} [{start}, +{count}) outside {self.records} records")
        self._splits = splits
        return m

    def _read_index(self) -> np.ndarray:
        raw = self._db.get(INDEX_KEY)
        if raw is None or len(raw) != self.records * INDEX_DTYPE.itemsize:
            raise PackError(f"{self.path}: index missing or of the wrong size for {self.records} records")
        index = np.frombuffer(bytes(raw), INDEX_DTYPE)
        body = {k: v for k, v in self.manifest.items() if k != "fingerprint"}
        if fingerprint(body, index.tobytes()) != self.manifest.get("fingerprint"):
            raise PackError(f"{self.path}: fingerprint mismatch: manifest or index was altered")
        if len(index) and (
            int(index["source"].max()) >= len(self.manifest["sources"]) or int(index["split"].max()) >= len(SPLITS)
        ):
            raise PackError(f"{self.path}: index names a source or split the manifest does not have")
        return index

    def _setup_split(self) -> None:
        start, count = self._splits[self.split]
        rows = self._index[start : start + count]
        if count and (
            np.any(np.diff(rows["source"].astype(np.int64)) < 0) or np.any(rows["split"] != SPLITS[self.split])
        ):
            raise PackError(f"{self.path}: index of split {self.split} is not in source order")
        self._start, self._count = start, count
        self.labels = rows["label"].astype(np.int64)
        # Records of one source are contiguous: first record and variant count per source.
        _, self._first, self._nvar = np.unique(rows["source"], return_index=True, return_counts=True)

    # --- access -------------------------------------------------------------------

    def __len__(self) -> int:
        return self._count

    @property
    def sources(self) -> int:
        """Number of distinct sources in this split (one sample per epoch each)."""
        return len(self._first)

    def _value(self, i: int):
        i = operator.index(i)  # numpy integers too (e.g. from epoch_order)
        if not -self._count <= i < self._count:
            raise IndexError(f"record {i} out of range for {self._count} records in split {self.split}")
        i = i % self._count if i < 0 else i
        value = self._db.get(record_key(self._start + i))
        if value is None:
            raise PackError(f"{self.path}: record {self._start + i} is missing")
        return value

    def _tensor(self, value, r: int) -> np.ndarray:
        """The tensor of record ``r`` after checking its header against the target and the index."""
        try:
            h = RecordHeader(value)
        except FormatError as e:
            raise PackError(f"{self.path}: record {r}: {e}") from None
        row = self._index[r]
        if h.tensor_nbytes != self.nbytes or (h.source, h.variant, h.split) != (
            row["source"],
            row["variant"],
            row["split"],
        ):
            raise PackError(f"{self.path}: record {r}: header does not match the target or the index")
        # A copy: a view into py-lmdb's map would crash the process if read after close().
        return np.frombuffer(value, self.dtype, int(np.prod(self.shape)), HEADER_SIZE).reshape(self.shape).copy()

    def __getitem__(self, i: int) -> Tuple[np.ndarray, int]:
        value = self._value(i)  # bounds-checked
        return self._tensor(value, self._start + i % self._count), int(self.labels[i])

    def record(self, i: int, epoch: int = 0, hflip: float = 0.0, shift: int = 0) -> Dict[str, Any]:
        """Everything stored for record ``i`` of this split: tensor, labels, params, ids.

        With ``hflip``/``shift``, the tensor, boxes, keypoints (left/right pairs
        swapped on a mirror, from the manifest's ``keypoint_flip_idx``) and mask
        come transformed exactly as :meth:`batches` transforms record ``i`` in
        ``epoch`` (a copy; the stored record is not touched).
        """
        self._value(i)  # bounds check against the split
        i = operator.index(i) % self._count
        rec = self.record_at(self._start + i)
        if not (hflip or shift):
            return rec
        (flip,), (sh,) = online_params(self.seed, epoch, np.array([i]), float(hflip), int(shift))
        pairs = self.manifest.get("keypoint_flip_idx")
        min_vis = float((self.manifest.get("recipe") or {}).get("min_visibility", 0.0))
        layout = self.manifest["target"]["layout"]
        return transform_record(rec, layout, bool(flip), sh.tolist(), fill_value(self.manifest), pairs, min_vis)

    def record_at(self, r: int) -> Dict[str, Any]:
        """Like :meth:`record`, by index into the whole pack (both splits)."""
        r = operator.index(r)
        if not 0 <= r < self.records:
            raise IndexError(f"record {r} out of range for {self.records} records")
        value = self._db.get(record_key(r))
        if value is None:
            raise PackError(f"{self.path}: record {r} is missing")
        try:
            h = RecordHeader(value)
            labels = unpack_labels(memoryview(value)[h.labels_offset : h.params_offset], self._mask_shape())
            params = json.loads(bytes(value[h.params_offset :]).decode("utf-8"))
        except (FormatError, ValueError, RecursionError) as e:
            raise PackError(f"{self.path}: record {r}: {e}") from None
        return {
            "x": self._tensor(value, r),
            "label": h.label,
            "source": h.source,
            "variant": h.variant,
            "split": h.split,
            "digest": h.digest.hex(),
            "params": params,
            **labels,
        }

    def _mask_shape(self) -> Tuple[int, int]:
        t = self.manifest["target"]
        return int(t["height"]), int(t["width"])

    def epoch_order(self, epoch: int, shuffle: bool = True, all_variants: bool = False) -> np.ndarray:
        """Record indices of one epoch: each source once, variant chosen by (seed, epoch).

        Over K consecutive epochs a source with K records serves each of them once.
        With ``all_variants`` every record is served every epoch.
        """
        if all_variants:
            order = np.arange(self._count)
        else:
            k = int(self._nvar.max()) if len(self._nvar) else 1
            cycle_rng = _rng(self.seed, 1, epoch // k)
            perms = np.argsort(cycle_rng.random((len(self._first), k)), axis=1)
            # Sources with fewer than k records take the slot modulo their own count.
            order = self._first + perms[:, epoch % k] % self._nvar
        if shuffle:
            order = order[_rng(self.seed, 2, epoch).permutation(len(order))]
        return order

    def batches(
        self,
        batch_size: int,
        epoch: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        all_variants: bool = False,
        prefetch: Optional[bool] = None,
        hflip: float = 0.0,
        shift: int = 0,
        with_index: bool = False,
    ) -> Iterator[Tuple[np.ndarray, ...]]:
        """Yield ``(X, Y)``: X one contiguous array (batch, *shape) of the target dtype.

        ``prefetch`` reads the next batch on a background thread while the
        caller works on this one.  Default: on with the ``pread`` reader,
        where reads wait for storage; with ``mmap``, on once the caller's own
        work between batches is a quarter of the read time or more (a thread
        hand-off costs more than it saves when the caller only reads; see
        :func:`~edgeaug.device.batchread.prefetched_when_useful`).  Yielded
        arrays are never overwritten while the caller holds them.

        Online augmentation (the hybrid): ``hflip`` mirrors each record with
        that probability and ``shift`` translates it by up to that many pixels
        in x and y (pad-and-crop, the target's quantized fill in the border),
        as a function of (pack seed, epoch, record) only (see
        :mod:`edgeaug.device.online`).  ``with_index`` also yields the split
        record indices: ``pack.record(i, epoch=, hflip=, shift=)`` gives a
        record's boxes, keypoints and mask transformed the same way.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        order = self.epoch_order(epoch, shuffle, all_variants)
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        if self._reader is None:
            raise PackError(f"{self.path}: pack is closed")
        # Per epoch, not per batch: pack record numbers, labels and (mapped) tensor offsets, sliced per batch.
        ep = _Epoch(epoch, order[:stop], self._start, self.labels, self._reader)
        jobs = ((b, slice(b, min(b + batch_size, stop))) for b in range(0, stop, batch_size))
        if hflip or shift:
            read = self._online_reader(ep, float(hflip), int(shift))
        else:

            def read(job: Tuple[int, slice]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
                return self._read_batch(ep, job[1])

        if prefetch or (prefetch is None and self._reader.mode == "pread"):
            batches = prefetched(jobs, read)
        elif prefetch is None:
            batches = prefetched_when_useful(jobs, read)
        else:
            batches = map(read, jobs)
        for x, y, idx in batches:
            yield (x, y, idx) if with_index else (x, y)

    def _online_reader(self, epoch: "_Epoch", hflip: float, shift: int):
        """Reads ``(start, part)`` jobs of ``epoch`` with its flips and shifts done during the read.

        Each tensor is read at the byte offset that shifts it (see
        :func:`~edgeaug.device.online.read_moves`); flipped ones are read into a
        scratch batch and mirrored from there; then the exposed borders are
        filled.  The draws for the whole epoch are made once.
        """
        layout = self.manifest["target"]["layout"]
        pattern = border_pattern(self.shape, layout, fill_value(self.manifest), self.dtype)
        h, w = (self.shape[1], self.shape[2]) if layout == "NCHW" else (self.shape[0], self.shape[1])
        if not 0.0 <= hflip <= 1.0 or not 0 <= shift < min(h, w):
            raise ValueError(f"hflip must be in [0, 1] and shift in [0, {min(h, w) - 1}], got {hflip}, {shift}")
        flips, shifts = online_params(self.seed, epoch.number, epoch.order, hflip, shift)
        moves = read_moves(self.shape, layout, self.dtype.itemsize, flips, shifts)
        scratch = np.empty(self.shape, self.dtype)  # where a flipped record is read to (this generator's own)

        def read(job: Tuple[int, slice]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
            part = job[1]
            return self._read_batch(epoch, part, (layout, flips[part], shifts[part], moves[part], pattern, scratch))

        return read

    def _read_batch(self, epoch: "_Epoch", part: slice, online=None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The tensors, labels and split indices of ``epoch``'s records ``part``, every header checked.

        ``online``: ``(layout, flips, shifts, moves, pattern, scratch)`` of these
        records, done during the read (see :class:`~edgeaug.device.online.OnlineBatch`).
        """
        reader, idx, recs = self._reader, epoch.order[part], epoch.recs[part]
        moves = None if online is None else online[3]
        if reader.mode == "mmap" and reader.small:
            x = reader.gather(recs, moves, epoch.starts[part], checked=True)
            x = x.view(self.dtype).reshape((len(idx),) + self.shape)
            if online is not None:
                OnlineBatch(x, *online).finish_all()
        else:
            with self._spare_lock:
                x = reusable(self._spare, (len(idx),) + self.shape, self.dtype)
            # pread checks every header it reads; the mapping's were checked for the whole epoch.
            fill = reader.fill_pread if reader.mode == "pread" else partial(reader.fill_mapped, checked=True)
            if online is None:
                fill(x, recs)
            else:
                batch = OnlineBatch(x, *online)
                fill(x, recs, moves, batch.dest, batch.finish)
        return x, epoch.labels[part], idx

    # --- checks -------------------------------------------------------------------

    def verify(self, limit: Optional[int] = None) -> List[str]:
        """Check every record of the pack (both splits) against its digests.

        Returns a list of problems; empty means every byte checked out.
        """
        problems = []
        n = self.records if limit is None else min(limit, self.records)
        for r in range(n):
            try:
                value = self._db.get(record_key(r))
            except PackError as e:
                problems.append(f"record {r}: unreadable: {e}")
                continue
            row = self._index[r]
            if value is None:
                problems.append(f"record {r}: missing")
                continue
            try:
                h = RecordHeader(value)
            except FormatError as e:
                problems.append(f"record {r}: {e}")
                continue
            if record_digest(value) != h.digest or h.digest != row["digest"].tobytes():
                problems.append(f"record {r}: digest mismatch (payload altered)")
            elif h.tensor_nbytes != self.nbytes:
                problems.append(f"record {r}: tensor of {h.tensor_nbytes} bytes, the target's is {self.nbytes}")
            elif (h.source, h.variant, h.split, h.label) != (row["source"], row["variant"], row["split"], row["label"]):
                problems.append(f"record {r}: header disagrees with the index")
        return problems

    def device_warnings(self) -> List[str]:
        """Differences between the target's device and this process.

        Word size comes from the pointer size: a 32-bit Pi OS on a 64-bit
        kernel reports ``aarch64`` as its machine.
        """
        dev = self.manifest["target"].get("device", {})
        arch, bits = platform.machine().lower(), struct.calcsize("P") * 8
        family = _arch_family(arch)
        out = []
        want = str(dev.get("arch", "any")).lower()
        if want != "any" and _arch_family(want) != family:
            out.append(f"pack targets {want} but this machine is {arch}")
        if dev.get("word_size") not in (None, bits):
            out.append(f"pack targets a {dev.get('word_size')}-bit OS but this process is {bits}-bit")
        return out

    def info(self) -> Dict[str, Any]:
        m = self.manifest
        return {
            "path": self.path,
            "format_version": m["format_version"],
            "fingerprint": m["fingerprint"],
            "records": self.records,
            "splits": {s: c for s, (_, c) in self._splits.items()},
            "seed": m["seed"],
            "target": m["target"].get("name"),
            "shape": list(self.shape),
            "dtype": str(self.dtype),
            "classes": self.classes,
            "backend": self._db.name,
            "reader": self.reader,
        }

    def backend_name(self) -> str:
        return self._db.name

    def close(self) -> None:
        """Release the file; tensors returned earlier become invalid once no Pack uses it."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._db is not None:
            self._db.release()
            self._db = None

    def __enter__(self) -> "Pack":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Epoch:
    """One epoch's records, worked out once and sliced per batch (a few numpy calls fewer per batch).

    ``order``: split indices; ``recs``: pack record numbers; ``labels``; and
    for small mapped tensors their file offsets.  A mapped pack's headers of
    the whole epoch are checked here, so its batches skip that check.
    """

    def __init__(self, number: int, order: np.ndarray, start: int, labels: np.ndarray, reader: BatchReader) -> None:
        self.number, self.order = number, order
        self.recs = order + start
        self.labels = labels[order]
        self.starts = None
        if reader.mode == "mmap":
            reader.precheck(self.recs)
            if reader.small:
                self.starts = reader.offsets(self.recs)


def _arch_family(arch: str) -> str:
    return (
        "arm" if arch.startswith(("arm", "aarch")) else "x86" if arch in ("x86_64", "amd64", "i386", "i686") else arch
    )


def _rng(seed: int, stream: int, n: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(stream, n))))


def bench(pack: Pack, batch_size: int = 32, seconds: float = 3.0) -> Dict[str, float]:
    """Shuffled-batch throughput over whole epochs for about ``seconds``."""
    n, epoch, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for x, _ in pack.batches(batch_size, epoch=epoch):
            n += len(x)
        epoch += 1
    dt = time.perf_counter() - t0
    return {"records_per_s": n / dt, "mb_per_s": n * pack.nbytes / dt / 1e6, "epochs": epoch}


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m edgeaug.loader info|verify|bench PACK``."""
    ap = argparse.ArgumentParser(
        prog="python -m edgeaug.loader", description="Inspect, verify and benchmark an edgeaug pack on the device."
    )
    ap.add_argument(
        "command",
        choices=("info", "verify", "bench"),
        help="info: print the manifest summary; verify: check every record's digest; bench: shuffled-batch throughput",
    )
    ap.add_argument("pack", help="path to the .lmdb pack file")
    ap.add_argument("--split", default="train", choices=sorted(SPLITS))
    ap.add_argument("--batch", type=int, default=32, help="bench: batch size")
    ap.add_argument("--seconds", type=float, default=3.0, help="bench: how long to run")
    ap.add_argument("--backend", default="auto", choices=("auto", "lmdb", "pure"))
    ap.add_argument(
        "--reader",
        default="auto",
        choices=READERS,
        help="how batches are read: mmap (copies from a mapping, for packs that fit in memory), pread (one read "
        "per record, for larger packs), auto (picks by size against the memory available)",
    )
    ap.add_argument(
        "--model",
        help="bench: also run this model on every batch: .onnx (needs onnxruntime) or .tflite "
        "(needs ai-edge-litert or tflite-runtime)",
    )
    args = ap.parse_args(argv)
    try:
        with Pack(args.pack, args.split, backend=args.backend, reader=args.reader) as pack:
            for w in pack.device_warnings():
                print(f"warning: {w}", file=sys.stderr)
            if args.command == "info":
                print(json.dumps(pack.info(), indent=2))
            elif args.command == "verify":
                problems = pack.verify()
                for p in problems:
                    print(p)
                print(
                    f"{pack.records - len(problems)}/{pack.records} records ok "
                    f"(fingerprint {pack.manifest['fingerprint'][:16]})"
                )
                return 1 if problems else 0
            elif args.model:
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
            else:
                r = bench(pack, args.batch, args.seconds)
                print(
                    f"{r['records_per_s']:.0f} records/s, {r['mb_per_s']:.1f} MB/s "
                    f"(batch {args.batch}, {pack.backend_name()} backend, {pack.reader} reader, {r['epochs']} epochs)"
                )
    except PackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
