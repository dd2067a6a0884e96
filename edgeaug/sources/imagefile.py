"""Untrusted image files: identify and size them before decoding, normalize after.

* :func:`sniff` names the format from the file signature and, for PNG, JPEG,
  GIF, BMP, WebP and TIFF, reads the pixel size from the header, so a
  decompression bomb is refused before any pixel is allocated.
* :func:`exif_orientation` reads the EXIF Orientation tag and
  :func:`orient` applies it: images are used as a viewer displays them.
* :func:`to_rgb8` turns any decoded layout (gray, gray+alpha, BGR, BGRA;
  8/16-bit or float) into RGB uint8, compositing alpha over a background.

Only the standard library and numpy; every offset read from a file is
bounds-checked (``struct.error`` never escapes).
"""

from __future__ import annotations

import struct
from typing import Optional, Tuple

import numpy as np

#: (signature, offset, format name); checked in order.
SIGNATURES = (
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"GIF8", 0, "GIF"),
    (b"BM", 0, "BMP"),
    (b"WEBP", 8, "WebP"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
    (b"\x00\x00\x00\x0cjP  ", 0, "JPEG 2000"),
    (b"\xffO\xffQ", 0, "JPEG 2000"),
    (b"ftypavif", 4, "AVIF"),
    (b"ftypheic", 4, "HEIF"),
    (b"#?RADIANCE", 0, "HDR"),
    (b"#?RGBE", 0, "HDR"),
    (b"v/1\x01", 0, "EXR"),
    (b"\x59\xa6\x6a\x95", 0, "Sun raster"),
)
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def sniff(data: bytes) -> Tuple[Optional[str], Optional[Tuple[int, int]]]:
    """(format name or None, (width, height) from the header or None) without decoding."""
    fmt = next((name for sig, off, name in SIGNATURES if data[off : off + len(sig)] == sig), None)
    if fmt is None and data[:1] == b"P" and data[1:2] in b"1234567" and len(data) > 2:
        fmt = "PNM"
    try:
        size = _SIZE_READERS[fmt](data) if fmt in _SIZE_READERS else None
    except (struct.error, IndexError, ValueError):
        size = None
    return fmt, size


def _png_size(d: bytes) -> Optional[Tuple[int, int]]:
    return struct.unpack(">II", d[16:24]) if d[12:16] == b"IHDR" else None


def _gif_size(d: bytes) -> Tuple[int, int]:
    return struct.unpack("<HH", d[6:10])


def _bmp_size(d: bytes) -> Tuple[int, int]:
    if struct.unpack("<I", d[14:18])[0] == 12:  # BITMAPCOREHEADER
        return struct.unpack("<HH", d[18:22])
    w, h = struct.unpack("<ii", d[18:26])
    return abs(w), abs(h)


def _webp_size(d: bytes) -> Optional[Tuple[int, int]]:
    kind = d[12:16]
    if kind == b"VP8 ":
        w, h = struct.unpack("<HH", d[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if kind == b"VP8L":
        b = struct.unpack("<I", d[21:25])[0]
        return (b & 0x3FFF) + 1, ((b >> 14) & 0x3FFF) + 1
    if kind == b"VP8X":
        return int.from_bytes(d[24:27], "little") + 1, int.from_bytes(d[27:30], "little") + 1
    return None


def _tiff_size(d: bytes) -> Optional[Tuple[int, int]]:
    e = "<" if d[:2] == b"II" else ">"
    off = struct.unpack(e + "I", d[4:8])[0]
    n = struct.unpack(e + "H", d[off : off + 2])[0]
    found = {}
    for i in range(min(n, 512)):
        tag, typ, _, value = struct.unpack(e + "HHI4s", d[off + 2 + 12 * i : off + 14 + 12 * i])
        if tag in (256, 257):
            found[tag] = struct.unpack(e + ("H" if typ == 3 else "I"), value[: 2 if typ == 3 else 4])[0]
    return (found[256], found[257]) if len(found) == 2 else None


def _jpeg_size(d: bytes) -> Optional[Tuple[int, int]]:
    h, w, _ = _jpeg_scan(d)
    return None if h is None else (w, h)


def _jpeg_scan(d: bytes) -> Tuple[Optional[int], Optional[int], Optional[int]]:
    """(height, width, offset of the first start-of-scan) by walking the marker segments."""
    pos, h, w = 2, None, None
    for _ in range(4096):  # real files have a few dozen segments before the scan
        if pos + 4 > len(d):
            break
        if d[pos] != 0xFF:
            return h, w, None
        marker = d[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # no length field
            pos += 2
            continue
        length = struct.unpack(">H", d[pos + 2 : pos + 4])[0]
        if marker in _JPEG_SOF:
            h, w = struct.unpack(">HH", d[pos + 5 : pos + 9])
        if marker == 0xDA:
            return h, w, pos
        pos += 2 + length
    return h, w, None


_SIZE_READERS = {
    "PNG": _png_size,
    "JPEG": _jpeg_size,
    "GIF": _gif_size,
    "BMP": _bmp_size,
    "WebP": _webp_size,
    "TIFF": _tiff_size,
}


def jpeg_complete(d: bytes) -> bool:
    """Whether a JPEG's scan data ends with an end-of-image marker (not truncated).

    OpenCV 4 decodes a truncated JPEG with a grey bottom and only a warning.
    """
    try:
        sos = _jpeg_scan(d)[2]
    except (struct.error, IndexError):
        return False
    return sos is not None and d.find(b"\xff\xd9", sos) != -1


def exif_orientation(exif: bytes) -> int:
    """The Orientation tag (1..8) of a TIFF-structured EXIF block; 1 if absent or malformed."""
    try:
        if exif[:6] == b"Exif\x00\x00":
            exif = exif[6:]
        e = {b"II": "<", b"MM": ">"}[exif[:2]]
        off = struct.unpack(e + "I", exif[4:8])[0]
        n = struct.unpack(e + "H", exif[off : off + 2])[0]
        for i in range(min(n, 512)):
            tag, typ, count, value = struct.unpack(e + "HHI4s", exif[off + 2 + 12 * i : off + 14 + 12 * i])
            if tag == 0x0112 and typ == 3 and count == 1:
                o = struct.unpack(e + "H", value[:2])[0]
                return o if 1 <= o <= 8 else 1
    except (KeyError, struct.error, IndexError):
        pass
    return 1


def orient(img: np.ndarray, o: int) -> np.ndarray:
    """Apply EXIF orientation ``o``: the stored frame becomes the displayed frame."""
    if o in (5, 6, 7, 8):
        img = np.swapaxes(img, 0, 1)  # transpose: orientation 5
        img = {5: img, 6: img[:, ::-1], 7: img[::-1, ::-1], 8: img[::-1]}[o]
    else:
        img = {1: img, 2: img[:, ::-1], 3: img[::-1, ::-1], 4: img[::-1]}.get(o, img)
    return np.ascontiguousarray(img)


def to_rgb8(raw: np.ndarray, background: int = 0) -> np.ndarray:
    """RGB uint8 (H, W, 3) from a decoded BGR-order image of 1-4 channels.

    16-bit values are scaled by 1/257 (65535 -> 255); float values are taken
    as [0, 1] and clipped (NaN -> 0; no tone mapping); an alpha channel is
    composited over the grey level ``background``.
    """
    img = raw[:, :, None] if raw.ndim == 2 else raw
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"unsupported layout {raw.shape}")
    ch = img.shape[2]
    if img.dtype == np.uint8 and ch in (1, 3):  # the common case: no arithmetic
        if ch == 3:
            import cv2

            return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)  # the same bytes as img[:, :, ::-1], ~10x faster
        return np.ascontiguousarray(np.repeat(img, 3, axis=2))
    x = _as_255(img)
    color = np.repeat(x[:, :, :1], 3, axis=2) if ch <= 2 else x[:, :, 2::-1]
    if ch in (2, 4):
        a = x[:, :, -1:] / 255.0
        color = color * a + float(background) * (1.0 - a)
    return np.rint(color).astype(np.uint8)


def _as_255(img: np.ndarray) -> np.ndarray:
    """Sample values as float64 on the 0..255 scale."""
    if img.dtype == np.uint8:
        return img.astype(np.float64)
    if img.dtype == np.uint16:
        return img / 257.0
    if img.dtype.kind == "f":
        return np.clip(np.nan_to_num(img.astype(np.float64), nan=0.0), 0.0, 1.0) * 255.0
    raise ValueError(f"unsupported sample type {img.dtype}")
