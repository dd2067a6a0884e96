"""Rendering one source: decode once, then every variant's record bytes.

Shared by the builder's workers and by ``edgeaug verify --source``, which
regenerates records and compares them byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from edgeaug.builder.audit import histogram
from edgeaug.builder.augment import Augmenter, Labels, record_rng
from edgeaug.builder.partners import Partners
from edgeaug.builder.tasks import SourceResult, Task
from edgeaug.device.codec import encode
from edgeaug.device.format import SPLITS, encode_record
from edgeaug.device.labels import is_extended, pack_labels
from edgeaug.sources.base import majority
from edgeaug.sources.imagefile import exif_orientation, jpeg_complete, orient, sniff, to_rgb8

MAX_PIXELS = 120_000_000  # refuse decompression bombs
MAX_FILE_BYTES = 2 << 30
# libjpeg warnings that mean the pixels are wrong (missing or garbled blocks): the file is skipped.
JPEG_CORRUPT = ("Corrupt JPEG data", "Premature end of JPEG file", "Inconsistent progression sequence")


class SourceDecodeError(ValueError):
    """A source image cannot be used; the message is the reason."""


def read_source(path: Any) -> bytes:
    """A source file's bytes: regular files only (a FIFO would block the build), bounded size."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise SourceDecodeError(f"cannot read: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SourceDecodeError("cannot read: not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise SourceDecodeError(f"file of {st.st_size} bytes exceeds the limit of {MAX_FILE_BYTES}")
        with open(fd, "rb", closefd=False) as f:
            return f.read()
    except OSError as e:
        raise SourceDecodeError(f"cannot read: {e.strerror or e}") from None
    finally:
        os.close(fd)


def decode(data: bytes, background: int = 0) -> np.ndarray:
    """Decode image bytes to RGB uint8 (H, W, 3) as a viewer displays them.

    The pixel count is checked from the header before decoding where the
    format allows (PNG, JPEG, GIF, BMP, WebP, TIFF) and again after.  EXIF
    orientation is applied, so labels are in the displayed frame.  Gray,
    palette, 16-bit and float images are converted (see
    :func:`edgeaug.imagefile.to_rgb8`); alpha is composited over
    ``background`` (the recipe's ``fill``).  A JPEG whose scan data libjpeg
    reports as corrupt (it would fill the rest grey) is refused.
    """
    if not data:
        raise SourceDecodeError("empty file")
    fmt, size = sniff(data)
    if size and size[0] * size[1] > MAX_PIXELS:
        raise SourceDecodeError(f"{size[0]}x{size[1]} image exceeds the limit of {MAX_PIXELS} pixels")
    if fmt == "JPEG" and not jpeg_complete(data):
        raise SourceDecodeError("not a decodable image: truncated JPEG (no end-of-image marker)")
    if fmt == "JPEG":  # libjpeg only warns (on stderr) about corrupt scan data and fills the rest grey
        with captured_stderr() as said:
            raw, o = _imdecode(data)
        bad = [line for line in said.text.splitlines() if line.startswith(JPEG_CORRUPT)]
        if bad:
            raise SourceDecodeError(f"not a decodable image: corrupt JPEG data (libjpeg: {bad[0]})"[:200])
    else:
        raw, o = _imdecode(data)
    if raw is None or raw.size == 0:
        raise SourceDecodeError(
            f"not a decodable image: corrupt, truncated or unsupported {fmt}"
            if fmt
            else "not a decodable image: no known image file signature"
        )
    if raw.shape[0] * raw.shape[1] > MAX_PIXELS:
        raise SourceDecodeError(f"{raw.shape[1]}x{raw.shape[0]} image exceeds the limit of {MAX_PIXELS} pixels")
    try:
        return orient(to_rgb8(raw, background), o)
    except ValueError as e:
        raise SourceDecodeError(f"not a decodable image: {fmt or 'image'} with {e}") from None


def _imdecode(data: bytes) -> Tuple[Optional[np.ndarray], int]:
    """OpenCV's decode of ``data`` and the EXIF orientation still to apply; (None, 1) when it fails."""
    import cv2

    buf = np.frombuffer(data, np.uint8)
    try:
        if hasattr(cv2, "imdecodeWithMetadata"):  # OpenCV >= 4.12: alpha, depth and EXIF
            raw, types, meta = cv2.imdecodeWithMetadata(buf, cv2.IMREAD_UNCHANGED)
            exif = [m for t, m in zip(types, meta) if t == cv2.IMAGE_METADATA_EXIF]
            return raw, exif_orientation(np.asarray(exif[0]).tobytes()) if exif else 1
        return cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH), 1  # older OpenCV orients, drops alpha
    except cv2.error:
        return None, 1


class _Said:
    text = ""


_capture_lock = threading.Lock()  # fd 2 is the process's: one capture at a time (Dask workers run threads)
_capture_file: Dict[str, Any] = {}  # pid -> the temporary file fd 2 points to while capturing


@contextmanager
def captured_stderr() -> Iterator[_Said]:
    """What native code writes on fd 2 inside the block (libjpeg's warnings), in ``.text`` afterwards.

    fd 2 points to a per-process temporary file meanwhile (a few syscalls, ~8 us),
    and back after.  Lines that report corrupt JPEG data (:data:`JPEG_CORRUPT`)
    stay out of stderr, since :func:`decode` turns them into the skip reason;
    any other text is written back to stderr.
    """
    said = _Said()
    with _capture_lock:
        fd = _capture_fd()
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            saved = os.dup(2)
        except OSError:  # fd 2 closed: nothing to capture into or restore
            yield said
            return
        try:
            os.dup2(fd, 2)
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.lseek(fd, 0, os.SEEK_SET)  # (os.pread is POSIX-only)
            said.text = os.read(fd, 1 << 16).decode("utf-8", "replace")
    rest = "".join(line for line in said.text.splitlines(True) if not line.startswith(JPEG_CORRUPT))
    if rest:  # warnings that do not spoil the pixels still reach stderr, as before
        os.write(2, rest.encode())


def _capture_fd() -> int:
    """This process's capture file (a forked child makes its own: the parent's shares its offset)."""
    key = str(os.getpid())
    if key not in _capture_file:
        import tempfile

        _capture_file.clear()
        _capture_file[key] = tempfile.TemporaryFile()
    return _capture_file[key].fileno()


def working_image(image: np.ndarray, aug: Augmenter) -> np.ndarray:
    """Shrink very large sources once with area averaging, shared by all variants.

    The one warp then interpolates from an image 2x to 3x the target, which
    avoids aliasing; params stay in original-image coordinates.  The result
    is in the augmenter's warp layout (:meth:`Augmenter.prepare`).
    """
    import cv2

    h, w = image.shape[:2]
    f = min(w / aug.target.width, h / aug.target.height) / 2.0
    if f < 2.0:
        return aug.prepare(image)
    f = int(f)  # whole factors take OpenCV's fast area path (>10x faster when they divide)
    size = (max(1, int(round(w / f))), max(1, int(round(h / f))))
    return aug.prepare(cv2.resize(image, size, interpolation=cv2.INTER_AREA))


def source_labels(source: Any, size: Tuple[int, int] | None = None) -> Labels:
    """Source annotations in original-image pixel coordinates.

    ``size`` (w, h) of the decoded image scales normalized (YOLO) coordinates.
    """
    lab = Labels()
    f = np.ones(2, np.float64)
    if getattr(source, "normalized", False):
        if size is None:
            raise ValueError(f"{source.rel}: normalized labels need the image size")
        f = np.asarray(size, np.float64)
    if source.boxes:
        b = np.asarray(source.boxes, np.float64).reshape(-1, 5)
        b[:, 1:] *= np.tile(f, 2)
        lab.boxes = b.astype(np.float32)
    if getattr(source, "segments", None) and size is not None:
        lab.boxes, lab.instances = _instances(source, size)
    if source.keypoints:
        k = np.asarray(source.keypoints, np.float64).reshape(-1, 3)
        k[:, :2] *= f
        lab.keypoints = k.astype(np.float32)
        flip = getattr(source, "keypoint_flip", None)
        if flip is not None:
            if len(flip) != len(k):
                raise ValueError(f"{source.rel}: keypoint_flip has {len(flip)} entries for {len(k)} keypoints")
            lab.flip = np.asarray(flip, np.intp)
    return lab


def _instances(source: Any, size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Boxes (each its mask's bounding box) and instance masks of a source with segments."""
    from edgeaug.sources.segments import instance_labels

    try:
        return instance_labels(source.segments, size[0], size[1])
    except ValueError as e:  # an RLE whose size is not the image's
        raise SourceDecodeError(f"segmentation: {e}") from None


@dataclass
class LoadedSource:
    """One source read, hashed, decoded and labelled; ``error`` says why not (``sha256`` is kept once read)."""

    sha256: str = ""
    image: Optional[np.ndarray] = None  # RGB uint8 (H, W, 3), as displayed
    labels: Optional[Labels] = None  # in ``image``'s pixel coordinates
    error: Optional[str] = None
    mask_sha256: str = ""  # of the mask file, if the source has one


def load_source(
    source: Any, fill: int = 0, expect_sha256: Optional[str] = None, expect_mask_sha256: Optional[str] = None
) -> LoadedSource:
    """Read, hash, decode and label one source: the one path shared by the build and ``verify --source``.

    With ``expect_sha256`` (``expect_mask_sha256``), an image (mask) file whose
    content changed is refused before decoding.
    """
    out = LoadedSource()
    try:
        data = read_source(source.path)
        out.sha256 = hashlib.sha256(data).hexdigest()
        if expect_sha256 is not None and out.sha256 != expect_sha256:
            raise SourceDecodeError("content differs from the build's")
        image = decode(data, fill)
        labels = source_labels(source, image.shape[1::-1])
        mask_data = read_mask(source)
        out.mask_sha256 = hashlib.sha256(mask_data).hexdigest() if mask_data is not None else ""
        if expect_mask_sha256 is not None and out.mask_sha256 != expect_mask_sha256:
            raise SourceDecodeError("mask: content differs from the build's")
        labels.mask = load_mask(source, mask_data)
        if labels.mask is not None and labels.mask.shape != image.shape[:2]:
            raise SourceDecodeError(
                f"mask: size {labels.mask.shape[::-1]} differs from the image's {image.shape[1::-1]}"
            )
    except SourceDecodeError as e:
        out.error = str(e)
        return out
    out.image, out.labels = image, labels
    return out


def render_variant(
    aug: Augmenter,
    work: np.ndarray,
    labels: Labels,
    src_size: Tuple[int, int],
    seed: int,
    source: Any,
    variant: int,
    hist: np.ndarray | None = None,
    image: Optional[np.ndarray] = None,
    partners: Optional[Partners] = None,
) -> Tuple[np.ndarray, Labels, List[Dict]]:
    """One variant: (tensor, labels, sampled params). Variant 0 is the original.

    ``hist`` (channels, 256), if given, accumulates the quantization audit's counts.
    With a multi-image op, ``image`` is the decoded source (RGB) and
    ``partners`` its candidates; the op's params then also record the partners'
    indices (after any fallback), paths and content hashes.
    """
    # Variant 0 has no params, so render applies only the resize (zip stops early).
    n = partners.n if partners is not None else 0
    params = (
        []
        if variant == 0
        else aug.sample(record_rng(seed, source.key, variant), src_size, n, aug.recipe.plain(variant))
    )
    fired = aug.fires_multi(params)
    if fired is not None:
        got = partners.resolve(fired[1]) if partners is not None else []
        if image is None:
            raise ValueError("a multi-image op needs the decoded source image")
        images = [image] + [g.image for g in got]
        labs = [labels] + [g.labels for g in got]
        classes = [source.label] + [g.label for g in got]
        img, lab = aug.render_multi(images, labs, classes, params)
    else:
        img, lab = aug.render(work, labels, params, src_size)
    if hist is not None:
        hist += histogram(img, aug.target)
    return aug.tensor(img), lab, params


def render_source(task: Task, aug: Augmenter, seed: int) -> SourceResult:
    """All records of one planned task, or the reason it was skipped."""
    res = SourceResult(task.index)
    loaded = load_source(task.source, aug.recipe.fill)
    res.sha256, res.error, res.mask_sha256 = loaded.sha256, loaded.error, loaded.mask_sha256
    if loaded.error:
        return res
    image, labels = loaded.image, loaded.labels
    src_size = (image.shape[1], image.shape[0])
    work = working_image(image, aug)
    res.hist = np.zeros((aug.target.channels, 256), np.int64)
    codec, level = aug.target.compress  # compressed here, in the render workers, not in the writer
    partners = Partners(task.candidates, task.position, aug.recipe.fill, load_source) if aug.multi is not None else None
    for v in task.variants:
        tensor, lab, params = render_variant(
            aug, work, labels, src_size, seed, task.source, v, res.hist, image, partners
        )
        packed = pack_labels(lab.boxes, lab.keypoints, lab.mask, instances=lab.instances, mix=lab.mix)
        label = record_label(task.source, lab)
        stored = encode(tensor, codec, level, aug.target.layout) if codec != "none" else None
        extended = is_extended(lab.instances, lab.mix)
        res.records.append(
            encode_record(tensor, label, task.index, v, SPLITS[task.split], packed, {"ops": params}, stored, extended)
        )
    if partners is not None:
        res.partner_sha256 = dict(sorted(partners.used.items()))
    return res


def record_label(source: Any, labels: Labels) -> int:
    """A record's class label: the source's, or for detection sources (YOLO, COCO) that of its boxes.

    Those take the majority class of the boxes left after augmentation
    (lowest id on ties; -1 when none is left), as their sources do of theirs.
    """
    if getattr(source, "label_from_boxes", False):
        return majority(labels.boxes)
    return source.label


def read_mask(source: Any) -> Optional[bytes]:
    """The bytes of the source's mask file, or None when it has none."""
    if not source.mask:
        return None
    try:
        return read_source(source.mask)
    except SourceDecodeError as e:
        raise SourceDecodeError(f"mask: {e}") from None  # no absolute path into the manifest


def mask_digest(source: Any) -> str:
    """sha256 of the source's mask file ("" without a mask): a changed mask is a changed source."""
    data = read_mask(source)
    return hashlib.sha256(data).hexdigest() if data is not None else ""


def load_mask(source: Any, data: Optional[bytes] = None):
    """The source's segmentation mask (class ids, uint8), or None; ``data``: its file's bytes, if read."""
    if not source.mask:
        return None
    import cv2

    data = read_mask(source) if data is None else data
    m = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if m is None:
        raise SourceDecodeError("mask: not a readable PNG")  # no absolute path into the manifest
    if m.ndim != 2 or m.dtype not in (np.uint8, np.uint16) or m.max(initial=0) > 255:
        raise SourceDecodeError("mask: expected a single-channel PNG of class ids 0..255")
    return m.astype(np.uint8)
