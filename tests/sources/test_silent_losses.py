"""Inputs that used to lose data without a word: corrupt JPEG scan data, unused COCO fields,
a symlinked COCO images/ folder, an empty class folder. Each is now skipped, warned or refused by name."""

import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from test_annotated_kinds import make_coco
from typer.testing import CliRunner

from edgeaug.builder.render import SourceDecodeError, decode
from edgeaug.cli import app
from edgeaug.device.loader import Pack
from edgeaug.sources.scan import SourceError, scan

runner = CliRunner()


def photo(h=96, w=128, seed=0) -> np.ndarray:
    """A photo-like BGR image: smooth gradients and waves plus noise (JPEG spends real entropy data on it)."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x * 0.8 + 30 * np.sin(y / 9)) % 256, (y + 40 * np.cos(x / 13)) % 256, (x + y) / 2.2], -1)
    noise = np.random.default_rng(seed).integers(0, 20, img.shape)
    return cv2.GaussianBlur(np.clip(img + noise, 0, 255).astype(np.uint8), (3, 3), 0)


def corrupt_jpeg(seed=0) -> bytes:
    """A JPEG with a valid header and end marker whose entropy-coded data is broken in the middle."""
    ok, buf = cv2.imencode(".jpg", photo(seed=seed), [cv2.IMWRITE_JPEG_QUALITY, 90])
    b = bytearray(buf.tobytes())
    sos = b.find(b"\xff\xda")
    start = sos + 2 + int.from_bytes(b[sos + 2 : sos + 4], "big")  # first byte of the scan data
    mid = (start + len(b) - 2) // 2
    b[mid : mid + 200] = bytes(200)  # 200 zero bytes: libjpeg runs out of Huffman codes and hits a marker
    assert b[:2] == b"\xff\xd8" and b[-2:] == b"\xff\xd9"
    return bytes(b)


def test_opencv_decodes_the_corrupt_jpeg_with_only_a_warning_on_stderr():
    """The premise, on this machine: imdecode returns an image and libjpeg's warning goes to fd 2 unnamed."""
    code = (
        "import sys, cv2, numpy as np; "
        "img = cv2.imdecode(np.frombuffer(sys.stdin.buffer.read(), np.uint8), cv2.IMREAD_COLOR); "
        "print(img.shape)"
    )
    r = subprocess.run([sys.executable, "-c", code], input=corrupt_jpeg(), capture_output=True, check=True)
    assert r.stdout.decode().strip() == "(96, 128, 3)"
    assert "Corrupt JPEG data" in r.stderr.decode()


def test_decode_refuses_corrupt_jpeg_scan_data_and_keeps_good_jpegs():
    with pytest.raises(SourceDecodeError, match=r"corrupt JPEG data \(libjpeg: Corrupt JPEG data: premature end"):
        decode(corrupt_jpeg())
    ok, good = cv2.imencode(".jpg", photo())
    assert decode(good.tobytes()).shape == (96, 128, 3)


def test_stderr_is_restored_and_other_output_passes_through(capfd):
    from edgeaug.builder.render import captured_stderr

    with captured_stderr() as said:
        os.write(2, b"Corrupt JPEG data: hidden\nsomething else\n")
    os.write(2, b"after\n")
    assert said.text == "Corrupt JPEG data: hidden\nsomething else\n"
    assert capfd.readouterr().err == "something else\nafter\n"


def test_a_build_skips_the_corrupt_jpeg_by_name(tmp_path):
    src = tmp_path / "src"
    for k, c in enumerate(("a", "b")):
        (src / c).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(src / c / f"{i}.jpg"), photo(seed=10 * k + i))
    (src / "b" / "broken.jpg").write_bytes(corrupt_jpeg())
    out = tmp_path / "p.lmdb"
    r = runner.invoke(app, ["build", str(src), "-o", str(out), "-t", "rpi4", "-k", "1", "-w", "1", "-q"])
    assert r.exit_code == 0, r.output
    assert "skipped b/broken.jpg: not a decodable image: corrupt JPEG data" in r.output
    with Pack(str(out)) as p:
        assert [s["path"] for s in p.manifest["skipped"]] == ["b/broken.jpg"]
        assert "premature end of data segment" in p.manifest["skipped"][0]["reason"]
        assert p.manifest["records"] == 8  # 4 good sources x (original + 1 variant)


def _coco_with_segmentation(root):
    p = make_coco(root)
    data = json.loads(p.read_text())
    for a in data["annotations"]:
        a["caption_ids"] = [1]  # not used by edgeaug (segmentation is, since instance masks are read)
        a["area"] = 100.0
    data["annotations"][1]["attributes"] = {"occluded": True}
    p.write_text(json.dumps(data))
    return p


def test_unused_coco_fields_are_warned_once_per_build_by_name(tmp_path):
    p = _coco_with_segmentation(tmp_path / "c")
    n = len(json.loads(p.read_text())["annotations"])
    sset = scan(tmp_path / "c")
    assert [w.split(": ", 2)[2].split(" (")[0] for w in sset.warnings] == [
        "field 'attributes'",
        "field 'caption_ids'",
    ]
    out = tmp_path / "p.lmdb"
    r = runner.invoke(app, ["build", str(tmp_path / "c"), "-o", str(out), "-t", "rpi4", "-k", "1", "-w", "1", "-q"])
    assert r.exit_code == 0, r.output
    seg = [ln for ln in r.output.splitlines() if "'caption_ids'" in ln]
    assert len(seg) == 1
    assert seg[0] == (
        f"warning: {p}: annotations: field 'caption_ids' (in {n} of {n} annotations, first annotations[0]) "
        "is not used by edgeaug and is left out of the pack"
    )
    assert r.output.count("field 'attributes' (in 1 of") == 1


def test_standard_coco_fields_that_edgeaug_reads_give_no_warning(tmp_path):
    make_coco(tmp_path / "c")  # id, image_id, category_id, bbox, iscrowd, keypoints
    assert scan(tmp_path / "c").warnings == ()


def test_a_symlinked_coco_images_folder_works_as_for_yolo_and_class_folders(tmp_path):
    make_coco(tmp_path / "real")
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "images").symlink_to(tmp_path / "real" / "images", target_is_directory=True)
    shutil.copy(tmp_path / "real" / "instances.json", ds / "instances.json")
    sset = scan(ds)
    assert [s.rel for s in sset.sources] == ["images/a.png", "images/b.png", "images/d.png", "images/sub/c.png"]
    assert all(s.path.is_file() for s in sset.sources)
    out = tmp_path / "p.lmdb"
    r = runner.invoke(app, ["build", str(ds), "-o", str(out), "-t", "rpi4", "-k", "1", "-w", "1", "-q"])
    assert r.exit_code == 0, r.output
    with Pack(str(out)) as p:
        assert p.manifest["skipped"] == [] and p.manifest["records"] == 8


def test_a_coco_file_name_leaving_the_folder_is_still_refused(tmp_path):
    p = make_coco(tmp_path / "c")
    data = json.loads(p.read_text())
    data["images"][0]["file_name"] = "../../outside.png"
    p.write_text(json.dumps(data))
    (tmp_path / "outside.png").write_bytes(b"x")
    with pytest.raises(SourceError, match=r"images\[0\]\.file_name: '\.\./\.\./outside\.png' escapes the dataset"):
        scan(tmp_path / "c")


def test_an_empty_class_folder_is_refused_by_name(tmp_path):
    src = tmp_path / "src"
    for c in ("ant", "bee", "cat"):
        (src / c).mkdir(parents=True)
    for c in ("ant", "cat"):
        cv2.imwrite(str(src / c / "0.png"), photo())
    (src / "bee" / "notes.txt").write_text("no images here")
    r = runner.invoke(app, ["build", str(src), "-o", str(tmp_path / "p.lmdb"), "-t", "rpi4", "-k", "1", "-w", "1"])
    assert r.exit_code != 0
    msg = " ".join(r.output.split())
    assert f"{src / 'bee'}: class folder has no images" in msg
    assert "class 1 with no examples and shift the ids of the 1 classes after it" in msg
    assert not (tmp_path / "p.lmdb").exists()
