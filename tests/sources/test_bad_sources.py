"""Hostile and unusual source images: every one is either used correctly or skipped with its reason.

A table of files (corrupt, truncated, empty, not images, decompression bombs,
special files, odd depths and layouts, EXIF-rotated, duplicates) goes through
one build; the manifest and the CLI summary must account for every row.
"""

import json
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import edgeaug.builder.render as render
from edgeaug.builder.pipeline import build
from edgeaug.builder.plan import BuildError
from edgeaug.builder.render import SourceDecodeError, decode
from edgeaug.cli import app
from edgeaug.device.loader import Pack
from edgeaug.sources.imagefile import exif_orientation, jpeg_complete, orient, sniff

RNG = np.random.default_rng(0)
PHOTO = (RNG.random((48, 64, 3)) * 255).astype(np.uint8)


def enc(ext: str, img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def palette_png(w: int, h: int, transparent: bool) -> bytes:
    """An 8-bit palette PNG (OpenCV cannot write one): index 0 red, 1 blue; tRNS makes 1 clear."""
    idx = np.zeros((h, w), np.uint8)
    idx[:, w // 2 :] = 1
    raw = b"".join(b"\x00" + row.tobytes() for row in idx)
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
    out += png_chunk(b"PLTE", bytes([255, 0, 0, 0, 0, 255]))
    if transparent:
        out += png_chunk(b"tRNS", bytes([255, 0]))
    return out + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b"")


def exif_jpeg(img: np.ndarray, orientation: int) -> bytes:
    """A JPEG whose EXIF says how to display it, as phones write them."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd
    jpg = enc(".jpg", img)
    return jpg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpg[2:]


def bomb_png(w: int, h: int) -> bytes:
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


def bomb_jpeg(w: int, h: int) -> bytes:
    jpg = bytearray(enc(".jpg", PHOTO))
    sof = jpg.index(b"\xff\xc0")
    jpg[sof + 5 : sof + 9] = struct.pack(">HH", h, w)
    return bytes(jpg)


def bomb_header(ext: str, w: int, h: int) -> bytes:
    b = bytearray(enc(ext, PHOTO))
    if ext == ".gif":
        b[6:10] = struct.pack("<HH", w, h)
    elif ext == ".bmp":
        b[18:26] = struct.pack("<ii", w, h)
    elif ext == ".tiff":
        off = struct.unpack_from("<I", b, 4)[0]
        for i in range(struct.unpack_from("<H", b, off)[0]):
            tag, typ = struct.unpack_from("<HH", b, off + 2 + 12 * i)
            if tag in (256, 257):
                fmt = "<H" if typ == 3 else "<I"
                struct.pack_into(fmt, b, off + 10 + 12 * i, w if tag == 256 else h)
    return bytes(b)


def rgba() -> np.ndarray:
    img = np.zeros((20, 30, 4), np.uint8)
    img[..., :3] = (0, 200, 100)  # BGR
    img[:, :10, 3], img[:, 10:20, 3], img[:, 20:, 3] = 0, 128, 255
    return img


FLOAT = np.clip(RNG.normal(0.5, 0.4, (24, 32, 3)), -0.5, 1.5).astype(np.float32)

#: (file name, bytes or a special kind, expected reason substring; None = used).
TABLE = [
    ("good/photo.jpg", enc(".jpg", PHOTO), None),
    ("good/photo.png", enc(".png", PHOTO), None),
    ("good/gray.png", enc(".png", PHOTO[..., 0]), None),
    ("good/gray.jpg", enc(".jpg", PHOTO[..., 1]), None),
    ("good/rgba.png", enc(".png", rgba()), None),
    ("good/palette.png", palette_png(16, 8, False), None),
    ("good/palette-trns.png", palette_png(16, 8, True), None),
    ("good/16bit.png", enc(".png", (PHOTO.astype(np.uint16) * 257 + 3)), None),
    ("good/16bit-gray.png", enc(".png", PHOTO[..., 2].astype(np.uint16) * 200), None),
    ("good/16bit.tiff", enc(".tiff", PHOTO.astype(np.uint16) * 256), None),
    ("good/float32.tiff", enc(".tiff", FLOAT), None),
    ("good/float64.tiff", enc(".tiff", FLOAT.astype(np.float64)), None),
    ("good/float.pfm", enc(".pfm", FLOAT), None),
    ("good/radiance.hdr", enc(".hdr", FLOAT), None),
    ("good/rotated.jpg", exif_jpeg(PHOTO, 6), None),
    ("good/mirrored.jpg", exif_jpeg(PHOTO, 2), None),
    ("good/photo.webp", enc(".webp", PHOTO), None),
    ("good/photo.bmp", enc(".bmp", PHOTO), None),
    ("good/photo.gif", enc(".gif", PHOTO), None),
    ("good/rgba.webp", enc(".webp", rgba()), None),
    ("good/zz-copy-of-photo.png", enc(".png", PHOTO), "duplicate of good/photo.png"),
    ("zother/copy-in-other-class.jpg", enc(".jpg", PHOTO), "duplicate of good/photo.jpg"),
    ("bad/empty.jpg", b"", "empty file"),
    ("bad/empty.png", b"", "empty file"),
    ("bad/trunc-10.jpg", enc(".jpg", PHOTO)[:200], "not a decodable image"),
    ("bad/trunc-50.jpg", enc(".jpg", PHOTO)[: len(enc(".jpg", PHOTO)) // 2], "truncated JPEG"),
    ("bad/trunc-99.jpg", enc(".jpg", PHOTO)[:-3], "truncated JPEG"),
    ("bad/trunc-50.png", enc(".png", PHOTO)[: len(enc(".png", PHOTO)) // 2], "corrupt, truncated or unsupported PNG"),
    ("bad/trunc-99.png", enc(".png", PHOTO)[:-14], "corrupt, truncated or unsupported PNG"),
    ("bad/trunc.webp", enc(".webp", PHOTO)[:60], "corrupt, truncated or unsupported WebP"),
    ("bad/trunc.tiff", enc(".tiff", PHOTO)[:100], "corrupt, truncated or unsupported TIFF"),
    ("bad/trunc.bmp", enc(".bmp", PHOTO)[:500], "corrupt, truncated or unsupported BMP"),
    ("bad/noise.jpg", b"\xff\xd8\xff" + RNG.integers(0, 256, 3000, np.uint8).tobytes(), "not a decodable image"),
    ("bad/noise.png", b"\x89PNG\r\n\x1a\n" + RNG.integers(0, 256, 3000, np.uint8).tobytes(), "PNG"),
    ("bad/zero-size.png", bomb_png(0, 0), "not a decodable image"),
    ("bad/text.png", b"hello, I am not a picture\n" * 20, "no known image file signature"),
    ("bad/page.jpg", b"<!doctype html><html><body>404</body></html>", "no known image file signature"),
    ("bad/script.tif", b"#!/bin/sh\nrm -rf /\n", "no known image file signature"),
    ("bad/zeros.jpg", bytes(4096), "no known image file signature"),
    ("bad/bomb.png", bomb_png(30000, 30000), "30000x30000 image exceeds the limit"),
    ("bad/bomb.jpg", bomb_jpeg(65000, 65000), "65000x65000 image exceeds the limit"),
    ("bad/bomb.gif", bomb_header(".gif", 65535, 65535), "65535x65535 image exceeds the limit"),
    ("bad/bomb.bmp", bomb_header(".bmp", 40000, -40000), "40000x40000 image exceeds the limit"),
    ("bad/bomb.tiff", bomb_header(".tiff", 50000, 50000), "50000x50000 image exceeds the limit"),
    ("bad/int16.tiff", enc(".tiff", (PHOTO[..., 0].astype(np.int16) - 100)), "unsupported sample type int16"),
    ("bad/missing.jpg", "missing", "cannot read: No such file or directory"),
    ("bad/folder.jpg", "dir", "cannot read: not a regular file"),
    ("bad/pipe.jpg", "fifo", "cannot read: not a regular file"),
]


def make_table(root: Path) -> Path:
    """Write the table's files and a CSV listing them all (CSV can name special files)."""
    root.mkdir(parents=True)
    for name, content, _ in TABLE:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if content == "dir":
            p.mkdir()
        elif content == "fifo":
            os.mkfifo(p)
        elif content != "missing":
            p.write_bytes(content)
    rows = ["path,label"] + [f"{name},{name.split('/')[0]}" for name, _, _ in TABLE]
    (root / "list.csv").write_text("\n".join(rows) + "\n")
    return root / "list.csv"


@pytest.fixture(scope="module")
def table_pack(tmp_path_factory):
    csv = make_table(tmp_path_factory.mktemp("bad") / "data")
    out = csv.parent.parent / "pack.lmdb"
    res = build(csv, out, "rpi4", variants=1, seed=2, workers=2)
    return csv, out, res


def test_every_source_is_used_or_skipped_with_its_reason(table_pack):
    _, out, res = table_pack
    with Pack(str(out)) as p:
        m = p.manifest
    by_path = {e["path"]: e for e in m["sources"]}
    assert sorted(by_path) == sorted(name for name, _, _ in TABLE)  # nothing dropped silently
    for name, _, reason in TABLE:
        e = by_path[name]
        if reason is None:
            assert e["records"] == 2 and "skipped" not in e, (name, e)
        else:
            assert e["records"] == 0 and reason in e["skipped"], (name, e)
    assert {s["path"]: s["reason"] for s in m["skipped"]} == {
        e["path"]: e["skipped"] for e in m["sources"] if "skipped" in e
    }
    assert res.skipped == m["skipped"]
    assert by_path["good/zz-copy-of-photo.png"]["duplicate_of"] == "good/photo.png"
    assert m["records"] == 2 * sum(1 for *_, r in TABLE if r is None)


def test_cli_summary_lists_every_skipped_source(table_pack, tmp_path):
    csv, _, _ = table_pack
    r = CliRunner().invoke(
        app, ["build", str(csv), "-o", str(tmp_path / "p.lmdb"), "-t", "rpi-zero2w", "-k", "1", "-w", "1", "-q"]
    )
    assert r.exit_code == 0, r.output
    for name, _, reason in TABLE:
        if reason is not None:
            assert f"skipped {name}: " in r.output and reason in r.output.split(f"skipped {name}: ")[1].splitlines()[0]


def test_fail_policy_stops_at_the_first_bad_source(table_pack, tmp_path):
    csv, _, _ = table_pack
    with pytest.raises(BuildError, match=r"bad/bomb.bmp: .*40000x40000"):
        build(csv, tmp_path / "p.lmdb", "rpi-zero2w", variants=1, workers=1, on_error="fail")
    assert not (tmp_path / "p.lmdb").exists()


def test_duplicates_never_leak_across_splits(tmp_path):
    data = tmp_path / "d"
    for c in ("a", "b"):
        (data / c).mkdir(parents=True)
        for i in range(4):
            img = np.full((32, 32, 3), 10 + 60 * i + (c == "b") * 5, np.uint8)
            (data / c / f"{i}.png").write_bytes(enc(".png", img))
    (data / "b" / "same-as-a0.png").write_bytes((data / "a" / "0.png").read_bytes())
    res = build(data, tmp_path / "p.lmdb", "rpi-zero2w", variants=1, workers=1, val=0.5)
    assert [s["path"] for s in res.skipped] == ["b/same-as-a0.png"]
    with Pack(str(tmp_path / "p.lmdb")) as p:
        shas = {}
        for e in p.manifest["sources"]:
            if e["records"]:
                shas.setdefault(e["sha256"], set()).add(e["split"])
    assert all(len(s) == 1 for s in shas.values())


# --- decoding details ------------------------------------------------------------


def test_exif_orientation_matches_opencv_for_all_eight():
    for o in range(1, 9):
        data = exif_jpeg(PHOTO, o)
        ref = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert np.array_equal(decode(data), ref), o
    assert exif_orientation(b"garbage") == 1 and exif_orientation(b"II*\x00\xff\xff\xff\xff") == 1
    assert orient(np.arange(6).reshape(2, 3), 6).tolist() == [[3, 0], [4, 1], [5, 2]]


def test_labels_are_in_the_displayed_frame_of_a_rotated_photo(tmp_path):
    """A phone photo stored landscape with EXIF 'rotate 90 CW': the box is drawn on the upright view."""
    stored = np.zeros((40, 80, 3), np.uint8)
    stored[:10, :20] = 255  # stored top-left -> displayed top-right
    (tmp_path / "phone.jpg").write_bytes(exif_jpeg(stored, 6))
    (tmp_path / "list.jsonl").write_text(
        json.dumps({"path": "phone.jpg", "label": "x", "boxes": [[0, 30, 0, 40, 20]]}) + "\n"
    )
    (tmp_path / "plain.toml").write_text("variants = 0\ninclude_original = true\n")
    out = tmp_path / "p.lmdb"
    build(tmp_path / "list.jsonl", out, "rpi4", recipe=tmp_path / "plain.toml", workers=1)
    with Pack(str(out)) as p:
        rec = p.record(0)
        x = rec["x"].astype(int)  # copies: the record's views die with the Pack
        x0, y0, x1, y1 = rec["boxes"][0, 1:].tolist()
    assert np.allclose([x0, y0, x1, y1], [30 * 224 / 40, 0, 224, 20 * 224 / 80])
    inside = x[int(y0) + 3 : int(y1) - 3, int(x0) + 3 : int(x1) - 3]
    assert inside.min() > 200 and x[100:, :100].max() < 40  # the white block is where the box is


def test_alpha_is_composited_over_the_background():
    img = decode(enc(".png", rgba()), background=77)
    assert img[0, 0].tolist() == [77, 77, 77]  # fully transparent
    assert img[0, 25].tolist() == [100, 200, 0]  # opaque (BGR 0,200,100)
    assert img[0, 15].tolist() == [
        int(np.rint(100 * 128 / 255 + 77 * 127 / 255)),
        int(np.rint(200 * 128 / 255 + 77 * 127 / 255)),
        int(np.rint(77 * 127 / 255)),
    ]
    pal = decode(palette_png(16, 8, True), background=9)
    assert pal[0, 0].tolist() == [255, 0, 0] and pal[0, 15].tolist() == [9, 9, 9]
    assert decode(palette_png(16, 8, False))[0, 15].tolist() == [0, 0, 255]


def test_depths_and_gray_convert_exactly():
    u16 = (RNG.random((8, 8, 3)) * 65535).astype(np.uint16)
    assert np.array_equal(decode(enc(".png", u16)), np.rint(u16[..., ::-1] / 257).astype(np.uint8))
    f = decode(enc(".tiff", FLOAT))
    assert np.array_equal(f, np.rint(np.clip(FLOAT[..., ::-1], 0, 1) * 255).astype(np.uint8))
    g = decode(enc(".png", PHOTO[..., 0]))
    assert g.shape == (48, 64, 3) and np.array_equal(g[..., 0], PHOTO[..., 0]) and np.array_equal(g[..., 1], g[..., 2])
    nan = FLOAT.copy()
    nan[0, 0] = np.nan
    assert decode(enc(".tiff", nan))[0, 0].tolist() == [0, 0, 0]


def test_pixel_limit_before_and_after_decoding(monkeypatch):
    monkeypatch.setattr(render, "MAX_PIXELS", 1000)
    with pytest.raises(SourceDecodeError, match="64x48 image exceeds the limit of 1000"):
        decode(enc(".png", PHOTO))  # from the header
    called = []
    monkeypatch.setattr(cv2, "imdecodeWithMetadata", lambda *a: called.append(1))
    with pytest.raises(SourceDecodeError, match="exceeds"):
        decode(enc(".jpg", PHOTO))
    assert called == []  # refused before any decoding
    monkeypatch.undo()
    monkeypatch.setattr(render, "MAX_PIXELS", 1000)
    with pytest.raises(SourceDecodeError, match="64x48 image exceeds"):
        decode(enc(".ppm", PHOTO))  # no size in our header reader: checked after decoding
    assert sniff(enc(".ppm", PHOTO)) == ("PNM", None)


def test_file_size_limit(tmp_path, monkeypatch):
    p = tmp_path / "a.png"
    p.write_bytes(enc(".png", PHOTO))
    monkeypatch.setattr(render, "MAX_FILE_BYTES", 100)
    with pytest.raises(SourceDecodeError, match="exceeds the limit of 100"):
        render.read_source(p)


def test_unreadable_file_is_skipped_with_its_reason():
    """A file its user may not read (chmod 000); as root, run the build as 'nobody' in a child."""
    base = Path(tempfile.mkdtemp(prefix="edgeaug-perm-"))
    try:
        os.chmod(base, 0o777)
        for c in ("a", "b"):
            (base / "data" / c).mkdir(parents=True)
            (base / "data" / c / "ok.png").write_bytes(enc(".png", PHOTO + (c == "b")))
        secret = base / "data" / "a" / "secret.png"
        secret.write_bytes(enc(".png", PHOTO[::-1]))
        os.chmod(secret, 0)
        for d in (base / "data", base / "data" / "a", base / "data" / "b"):
            os.chmod(d, 0o755)
        out = base / "p.lmdb"
        if os.geteuid() != 0:
            res = build(base / "data", out, "rpi-zero2w", variants=1, workers=1)
            skipped = res.skipped
        else:
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    os.setgid(65534)
                    os.setuid(65534)
                    res = build(base / "data", out, "rpi-zero2w", variants=1, workers=1)
                    (base / "skipped.json").write_text(json.dumps(res.skipped))
                    code = 0
                except PermissionError:
                    code = 77
                finally:
                    os._exit(code)
            status = os.waitpid(pid, 0)[1]
            if os.WEXITSTATUS(status) == 77:
                pytest.skip("cannot switch to an unprivileged user here")
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
            skipped = json.loads((base / "skipped.json").read_text())
        assert skipped == [{"path": "a/secret.png", "reason": "cannot read: Permission denied"}]
    finally:
        shutil.rmtree(base, ignore_errors=True)


HEADS = [
    b"",
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    b"GIF89a",
    b"BM",
    b"RIFF\0\0\0\0WEBPVP8X",
    b"RIFF\0\0\0\0WEBPVP8L",
    b"II*\x00",
    b"MM\x00*",
    b"Exif\x00\x00II*\x00",
    b"P6",
]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(HEADS), st.binary(max_size=300))
def test_header_readers_never_fail_on_arbitrary_bytes(head, tail):
    """sniff, the JPEG scan and the EXIF reader parse untrusted bytes: answers, never exceptions."""
    data = head + tail
    fmt, size = sniff(data)
    assert fmt is None or isinstance(fmt, str)
    assert size is None or (len(size) == 2 and all(isinstance(v, int) and v >= 0 for v in size))
    assert jpeg_complete(data) in (True, False)
    assert 1 <= exif_orientation(data) <= 8
