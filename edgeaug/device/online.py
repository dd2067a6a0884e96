"""Online flip and shift on the device: exact, deterministic, numpy and stdlib only.

The hybrid: the pack holds the expensive augmentations (K precomputed variants);
the loader adds a horizontal mirror and an integer translation per record and
epoch.  Both only move stored values, so the output equals the stored tensor
mirrored and/or translated, with the target's quantized fill value in the
exposed border.  Nothing is resampled and nothing depends on the dtype.

The draws are a pure function of (pack seed, epoch, record index): a
counter-based hash (splitmix64 in uint64 numpy arithmetic), so they do not
depend on batch size, shuffling, call order or the numpy build::

    for X, Y in pack.batches(32, epoch=e, hflip=0.5, shift=4):       # Pack.batches + flip/shift
        ...
    rec = pack.record(i, epoch=e, hflip=0.5, shift=4)                # labels transformed alike

    flips, shifts = online_params(pack.seed, epoch, idx, hflip=0.5, shift=4)
    fill = fill_value(pack.manifest)
    apply_online(X, layout, flips, shifts, fill)        # X: a batch, in place

The labels (boxes, keypoints, masks) follow in :mod:`.online_labels`; the
flips and shifts done during a batch's read (:class:`~.online_read.OnlineBatch`) are in
:mod:`.online_read`.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

_UINT64 = np.uint64
_GOLDEN = _UINT64(0x9E3779B97F4A7C15)
_M1, _M2 = _UINT64(0xBF58476D1CE4E5B9), _UINT64(0x94D049BB133111EB)
_STREAMS = 3  # per record: flip, dx, dy
_QRANGE = {"uint8": (0, 255), "int8": (-128, 127)}


def _splitmix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer on a uint64 array (wrapping arithmetic, no warnings on arrays)."""
    z = (z ^ (z >> _UINT64(30))) * _M1
    z = (z ^ (z >> _UINT64(27))) * _M2
    return z ^ (z >> _UINT64(31))


def _uniform(seed: int, epoch: int, records: np.ndarray) -> np.ndarray:
    """(n, 3) float64 in [0, 1): one independent draw per (record, stream)."""
    for name, v in (("seed", seed), ("epoch", epoch)):
        if not 0 <= int(v) < 1 << 64:
            raise ValueError(f"online_params: {name} {v} must be in [0, 2**64)")
    key = _splitmix(np.array([int(seed)], _UINT64) + _GOLDEN)
    key = _splitmix(key ^ np.array([int(epoch)], _UINT64))
    r = np.asarray(records)
    if r.ndim != 1 or (r.size and (r.dtype.kind not in "iu" or int(r.min()) < 0)):
        raise ValueError("online_params: records must be a 1-d array of non-negative integer indices")
    counter = r.astype(_UINT64)[:, None] * _UINT64(_STREAMS) + np.arange(_STREAMS, dtype=_UINT64)
    h = _splitmix(_splitmix(key + counter * _GOLDEN))
    return (h >> _UINT64(11)).astype(np.float64) * (1.0 / (1 << 53))


def online_params(seed: int, epoch: int, records, hflip: float, shift: int) -> Tuple[np.ndarray, np.ndarray]:
    """Per-record mirror flags ``(n,) bool`` and shifts ``(n, 2) int64`` as ``(dx, dy)``.

    A record is mirrored with probability ``hflip``; ``dx`` and ``dy`` are
    uniform integers in ``[-shift, shift]``.  A pure function of
    ``(seed, epoch, record)``: each record's draw ignores the other indices.
    """
    if not 0.0 <= float(hflip) <= 1.0:
        raise ValueError(f"hflip {hflip} must be a probability in [0, 1]")
    if int(shift) != shift or shift < 0:
        raise ValueError(f"shift {shift} must be a non-negative integer (pixels)")
    u = _uniform(seed, epoch, records)
    flips = u[:, 0] < float(hflip)
    shifts = np.floor(u[:, 1:] * (2 * int(shift) + 1)).astype(np.int64) - int(shift)
    return flips, shifts


# --- the fill value ---------------------------------------------------------------


def quantized_value(target: Dict[str, Any], pixel: int) -> np.ndarray:
    """The stored tensor value, per channel, of a uint8 pixel ``(p, p, p)``.

    The same arithmetic as the builder's quantization table
    (``edgeaug.config.targets.quantization_lut``); a gray pixel of equal
    R, G and B converts to itself, so colour order does not matter.
    """
    if not 0 <= int(pixel) <= 255:
        raise ValueError(f"fill pixel {pixel} must be in [0, 255]")
    c, dtype = int(target["channels"]), str(target["dtype"])
    mean = np.asarray(target.get("mean", [0.0] * c), np.float64)
    std = np.asarray(target.get("std", [1.0] * c), np.float64)
    x = (np.full(c, float(pixel)) / 255.0 - mean) / std
    if dtype in _QRANGE:
        lo, hi = _QRANGE[dtype]
        x = np.clip(np.rint(x / float(target["scale"])) + int(target.get("zero_point", 0)), lo, hi)
    return x.astype({"uint8": "|u1", "int8": "|i1", "float16": "<f2", "float32": "<f4"}[dtype])


def fill_value(manifest: Dict[str, Any]) -> np.ndarray:
    """The target's quantized value of the recipe's ``fill`` pixel: what the builder pads with."""
    recipe = manifest.get("recipe") or {}
    return quantized_value(manifest["target"], int(recipe.get("fill", 0)))


# --- tensors ------------------------------------------------------------------------


def _spans(n: int, d: int, flip: bool) -> Tuple[slice, slice]:
    """Destination and source ranges along one axis of length ``n`` shifted by ``d``."""
    a, b = max(0, d), n + min(0, d)
    src = slice(n - (b - d), n - (a - d)) if flip else slice(a - d, b - d)
    return slice(a, b), src


def pixel_units(a: np.ndarray, layout: str) -> Optional[np.ndarray]:
    """A whole contiguous record as pixel units: (H, W) for NHWC, (C, H, W) for NCHW.

    An NHWC pixel of C channels becomes one element (an unsigned int when it
    is 1, 2, 4 or 8 bytes, else a fixed-size byte string), so a reversed copy
    keeps the channel order and moves one element per pixel, several times
    faster than reversing an axis with a short contiguous inner run.  None
    when ``a`` is not contiguous (numpy < 1.23 cannot re-view that).
    """
    if not a.flags.c_contiguous:
        return None
    size = a.shape[-1] * a.itemsize if layout == "NHWC" else a.itemsize
    u = a.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}.get(size, np.dtype(f"S{size}")))
    return u[..., 0] if layout == "NHWC" else u


def border_pattern(shape: Tuple[int, ...], layout: str, fill, dtype) -> np.ndarray:
    """What the exposed border is filled from: one image row for NHWC, (C, 1, 1) for NCHW.

    A row of whole pixels makes every border write a run of contiguous bytes,
    whatever the channels' fill values; :func:`apply_online` builds it once
    per batch, callers of :func:`fill_online` may too.
    """
    dtype = np.dtype(dtype)
    c = shape[-1] if layout == "NHWC" else shape[0]
    f = np.broadcast_to(np.asarray(fill).astype(dtype), (c,))
    if layout == "NCHW":
        return np.ascontiguousarray(f).reshape(c, 1, 1)
    row = np.empty((shape[1], c), dtype)
    row[...] = f
    return row


def mirror_into(dst: np.ndarray, src: np.ndarray, layout: str) -> None:
    """``dst = src`` with the width axis reversed (same shape, no overlap), the fastest numpy way per pixel size.

    Pixels of 1, 2, 4 or 8 bytes go as one element each (:func:`pixel_units`;
    rows of bytes as 8-byte words, :func:`reversed_into`); other NHWC pixels
    (3 uint8 channels) go one channel at a time, since a strided copy of
    single bytes beats a reversed copy of 3-byte elements (~50 vs ~75 us per
    224x224x3 record; the README's table of mirror costs per pixel unit).
    """
    nchw = layout == "NCHW"
    unit = src.itemsize * (1 if nchw else src.shape[-1])
    if unit in (1, 2, 4, 8) and dst.flags.c_contiguous and src.flags.c_contiguous:
        reversed_into(pixel_units(dst, layout), pixel_units(src, layout))
    elif not nchw:
        for c in range(src.shape[-1]):
            dst[..., c] = src[..., ::-1, c]
    else:
        dst[...] = src[..., ::-1]


def reversed_into(dst: np.ndarray, src: np.ndarray) -> None:
    """``dst[...] = src[..., ::-1]`` for arrays of pixel units (same shape, no overlap).

    numpy reverses single bytes about 4x slower than 8-byte words, so rows of
    bytes (1-byte pixels, width a multiple of 8) are reversed as words, then
    each word's bytes are swapped: the same bytes, on any byte order.
    """
    words = dst.dtype.itemsize == 1 and dst.shape[-1] % 8 == 0 and dst.flags.c_contiguous and src.flags.c_contiguous
    if not words:
        dst[...] = src[..., ::-1]
        return
    d = dst.view(np.uint64)
    np.copyto(d, src.view(np.uint64)[..., ::-1])
    d.byteswap(inplace=True)


def fill_borders(dst: np.ndarray, layout: str, dx: int, dy: int, pattern: np.ndarray) -> None:
    """Set the rows and columns a shift by (dx, dy) exposed to the fill pattern."""
    if layout == "NCHW":
        h, w = dst.shape[1:]
        rows, cols, pr, pc = (slice(None),), (slice(None), slice(None)), pattern, pattern
    else:
        h, w = dst.shape[:2]
        rows, cols, pr, pc = (), (slice(None),), pattern, None
    if dy:
        dst[rows + (slice(0, dy) if dy > 0 else slice(h + dy, h),)] = pr
    if dx:
        c = slice(0, dx) if dx > 0 else slice(w + dx, w)
        dst[cols + (c,)] = pattern[c] if pc is None else pc


def _flat_offset(dst: np.ndarray, layout: str, dx: int, dy: int) -> int:
    """Bytes a (dx, dy) shift moves a C-contiguous record; what wraps lands in the filled border."""
    w = dst.shape[-1] if layout == "NCHW" else dst.shape[1]
    unit = dst.itemsize * (dst.shape[-1] if layout == "NHWC" else 1)
    return (dy * w + dx) * unit


def _move(dst_mv: memoryview, src_mv: memoryview, off: int) -> None:
    """``dst = src`` moved by ``off`` bytes (memmove semantics: src may be dst)."""
    n = len(dst_mv)
    if off >= 0:
        dst_mv[off:] = src_mv[: n - off]
    else:
        dst_mv[: n + off] = src_mv[-off:]


def _check_shift(h: int, w: int, dx: int, dy: int) -> None:
    if not (-w < dx < w and -h < dy < h):
        raise ValueError(f"shift ({dx}, {dy}) is not smaller than the {w}x{h} image")


def fill_online(dst: np.ndarray, src: np.ndarray, layout: str, flip: bool, dx: int, dy: int, fill) -> None:
    """Write record ``src`` mirrored and/or shifted into ``dst`` (same shape; no overlap when ``flip``).

    The copy the loader does anyway, done with the transform: a shift alone is
    one memmove of the C-contiguous bytes (rows wrap into the border, which is
    filled next); a mirror is one reversed copy of whole pixels.  ``fill`` is
    one value per channel or a :func:`border_pattern`.
    """
    nchw = layout == "NCHW"
    h, w = dst.shape[-2:] if nchw else dst.shape[:2]
    dx, dy, flip = int(dx), int(dy), bool(flip)
    _check_shift(h, w, dx, dy)
    pattern = fill if np.ndim(fill) >= 2 else border_pattern(dst.shape, layout, fill, dst.dtype)
    contiguous = dst.flags.c_contiguous and src.flags.c_contiguous
    if not flip and contiguous:
        _move(
            memoryview(dst.reshape(-1).view(np.uint8)),
            memoryview(src.reshape(-1).view(np.uint8)),
            _flat_offset(dst, layout, dx, dy),
        )
    else:
        rd, rs = _spans(h, dy, False)
        cd, cs = _spans(w, dx, flip)
        pre = (slice(None),) * int(nchw)
        if flip and not nchw and dst.itemsize * dst.shape[-1] not in (1, 2, 4, 8):
            mirror_into(dst[rd, cd], src[rs, cs], layout)  # one channel at a time
        elif flip and contiguous:
            pixel_units(dst, layout)[pre + (rd, cd)] = pixel_units(src, layout)[pre + (rs, cs)][..., ::-1]
        else:
            part = src[pre + (rs, cs)]
            dst[pre + (rd, cd)] = np.flip(part, axis=1 + int(nchw)) if flip else part
    fill_borders(dst, layout, dx, dy, pattern)


def apply_online(
    batch: np.ndarray,
    layout: str,
    flips,
    shifts,
    fill,
    scratch: Optional[np.ndarray] = None,
) -> None:
    """Mirror and/or shift each record of ``batch`` (N, *record shape) in place.

    ``fill`` is a scalar, one value per channel (see :func:`fill_value`) or a
    :func:`border_pattern`.  Records that neither flip nor move are not touched; a shift alone moves
    the record's bytes in place (one memmove); a mirror reads from a copy of
    the record in ``scratch`` (optional: one record's shape and dtype).
    """
    if layout not in ("NHWC", "NCHW") or batch.ndim != 4:
        raise ValueError(f"apply_online: expected a 4-d NHWC or NCHW batch, got {layout} {batch.shape}")
    flips = np.asarray(flips, bool).reshape(-1)
    shifts = np.asarray(shifts, np.int64).reshape(-1, 2)
    if len(flips) != len(batch) or len(shifts) != len(batch):
        raise ValueError(f"apply_online: {len(flips)} flips / {len(shifts)} shifts for {len(batch)} records")
    h, w = batch.shape[-2:] if layout == "NCHW" else batch.shape[1:3]
    if len(shifts):
        _check_shift(h, w, int(np.abs(shifts[:, 0]).max()), int(np.abs(shifts[:, 1]).max()))
    moved = np.flatnonzero(flips | (shifts != 0).any(axis=1))
    if not len(moved):
        return
    if not batch.flags.c_contiguous:
        raise ValueError("apply_online: the batch must be C-contiguous (as Pack.batches yields it)")
    pattern = fill if np.ndim(fill) >= 2 else border_pattern(batch.shape[1:], layout, fill, batch.dtype)
    if flips.any() and (scratch is None or scratch.shape != batch.shape[1:] or scratch.dtype != batch.dtype):
        scratch = np.empty(batch.shape[1:], batch.dtype)
    flat = memoryview(batch.reshape(-1).view(np.uint8))
    nb = batch[0].nbytes
    for j in moved.tolist():
        rec, (dx, dy) = batch[j], shifts[j].tolist()
        if flips[j]:
            memoryview(scratch.reshape(-1).view(np.uint8))[:] = flat[j * nb : (j + 1) * nb]
            fill_online(rec, scratch, layout, True, dx, dy, pattern)
        else:
            mv = flat[j * nb : (j + 1) * nb]
            _move(mv, mv, _flat_offset(rec, layout, dx, dy))
            fill_borders(rec, layout, dx, dy, pattern)
