"""A newcomer's first hour through the command line (issue 9): every kind of SOURCE read, shipped recipes by
name, progress in logs, Ctrl-C, preview formats, explain --json, LiteRT targets and eval."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeaug.cli import LineProgress, app
from edgeaug.device.loader import Pack

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
TFLITE = REPO / "tests" / "fixtures" / "tflite"


def _coco_folder(root: Path) -> Path:
    """``root/annotations.json`` and ``root/images/``: two images, three boxes."""
    import cv2

    (root / "images").mkdir(parents=True)
    for name, grey in (("a.png", 60), ("b.png", 180)):
        cv2.imwrite(str(root / "images" / name), np.full((48, 64, 3), grey, np.uint8))
    data = {
        "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 20]},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [30, 10, 20, 30]},
            {"id": 3, "image_id": 2, "category_id": 2, "bbox": [10, 10, 40, 30]},
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }
    (root / "annotations.json").write_text(json.dumps(data))
    return root


def test_build_help_names_every_kind_of_source():
    r = runner.invoke(app, ["build", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    text = " ".join(r.output.replace("│", " ").split())  # rich draws boxes around the help
    for kind in ("subfolder per class", "YOLO folder", "COCO folder", "segmentation folder", "CSV or JSONL"):
        assert kind in text, kind
    assert "0 builds the originals only" in text and "recipes" in text


def test_a_coco_folder_builds_with_its_boxes_and_verifies(tmp_path):
    src = _coco_folder(tmp_path / "coco")
    out = tmp_path / "p.lmdb"
    r = runner.invoke(app, ["build", str(src), "-o", str(out), "-t", "rpi4", "-k", "1", "-w", "1", "-q"])
    assert r.exit_code == 0, r.output
    with Pack(str(out)) as p:
        assert p.manifest["source_kind"] == "coco" and p.manifest["classes"] == ["cat", "dog"]
        assert sum(len(p.record_at(i)["boxes"]) for i in range(p.records) if p.record_at(i)["variant"] == 0) == 3
    r = runner.invoke(app, ["verify", str(out), "--source", str(src)])
    assert r.exit_code == 0 and "4/4 regenerated records byte-identical" in r.output


def test_bad_yolo_coordinates_stop_the_build_naming_file_and_line(tmp_path):
    import cv2

    root = tmp_path / "y"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    cv2.imwrite(str(root / "images" / "a.png"), np.zeros((20, 20, 3), np.uint8))
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n0 1.5 0.5 0.1 0.1\n")
    r = runner.invoke(app, ["build", str(root), "-o", str(tmp_path / "p.lmdb"), "-t", "rpi4"])
    assert r.exit_code == 2 and f"{root / 'labels' / 'a.txt'}:2: cx 1.5 is outside 0..1" in r.output
    assert not (tmp_path / "p.lmdb").exists()


def test_shipped_recipes_by_name(shapes_dir, tmp_path):
    r = runner.invoke(app, ["recipes"])
    assert r.exit_code == 0 and "default" in r.output and "detection" in r.output and "letterbox" in r.output
    out = tmp_path / "p.lmdb"
    args = ["build", str(shapes_dir), "-o", str(out), "-t", "rpi-zero2w", "-k", "1", "-w", "1", "-q"]
    r = runner.invoke(app, [*args, "--recipe", "detection"])
    assert r.exit_code == 0, r.output
    info = json.loads(runner.invoke(app, ["inspect", str(out), "--json"]).output)
    assert info["recipe"]["resize"] == "letterbox" and info["recipe"]["fill"] == 114
    r = runner.invoke(app, [*args, "--recipe", "detecton"])
    assert r.exit_code == 2 and "unknown recipe 'detecton'" in r.output and "detection" in r.output


def test_zero_variants_says_it_builds_originals_only(shapes_dir, tmp_path):
    out = tmp_path / "p.lmdb"
    r = runner.invoke(app, ["build", str(shapes_dir), "-o", str(out), "-t", "rpi4", "-k", "0", "-w", "1", "-q"])
    assert r.exit_code == 0, r.output
    assert "0 variants: building the originals only" in r.stderr
    with Pack(str(out)) as p:
        assert p.records == 24 and {p.record_at(i)["variant"] for i in range(p.records)} == {0}


def test_progress_lines_when_output_is_not_a_terminal(shapes_dir, tmp_path):
    out = tmp_path / "p.lmdb"
    r = runner.invoke(app, ["build", str(shapes_dir), "-o", str(out), "-t", "rpi4", "-k", "1", "-w", "1"])
    assert r.exit_code == 0, r.output
    assert "rendering: 24/24 sources (100%)" in r.stderr  # the first and every 10 s: see the LineProgress test
    r = runner.invoke(app, ["verify", str(out), "--source", str(shapes_dir), "--sample", "5"])
    assert r.exit_code == 0 and "regenerating: 5/5 records (100%)" in r.stderr
    quiet = runner.invoke(app, ["verify", str(out), "--source", str(shapes_dir), "--sample", "5", "-q"])
    assert "regenerating" not in quiet.stderr


def test_line_progress_prints_the_first_then_every_interval_and_the_last():
    import io

    now = [0.0]
    out = io.StringIO()
    p = LineProgress("rendering", "sources", out, interval=10.0, clock=lambda: now[0])
    for done, t in ((1, 1.0), (2, 5.0), (3, 11.5), (4, 12.0), (5, 22.0), (6, 23.0)):
        now[0] = t
        p(done, 6)
    assert [ln.split(" (")[0] for ln in out.getvalue().splitlines()] == [
        "rendering: 1/6 sources",
        "rendering: 3/6 sources",
        "rendering: 5/6 sources",
        "rendering: 6/6 sources",
    ]


HOOK = """
import os, signal, sys
import edgeaug.cli as cli

report = cli.LineProgress.__call__

def progress(self, done, total):  # build() reports sources once they are kept in OUT.partial
    report(self, done, total)
    if done < total:  # as a terminal's Ctrl-C: SIGINT to the whole process group, workers included
        os.killpg(os.getpgrp(), signal.SIGINT)

cli.LineProgress.__call__ = progress
if __name__ == "__main__":
    sys.argv = ["edgeaug", *sys.argv[1:]]
    cli.app()
"""


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="POSIX process groups")
def test_ctrl_c_exits_130_keeps_finished_sources_and_the_rerun_resumes(shapes_dir, tmp_path):
    hook = tmp_path / "hook.py"
    hook.write_text(HOOK)
    out = tmp_path / "p.lmdb"
    # 4 records per source: more than one of the builder's chunks of work, so a progress call comes mid-build
    args = ["build", str(shapes_dir), "-o", str(out), "-t", "rpi4", "-k", "3", "-w", "2"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # A terminal's Ctrl-C reaches a process that handles SIGINT: when the test runner itself was started in the
    # background of a shell without job control, it and its children inherit SIGINT ignored, so restore it.
    r = subprocess.run([sys.executable, str(hook), *args], capture_output=True, text=True, env=env, timeout=300,
                       start_new_session=True, preexec_fn=_sigint_default)  # fmt: skip
    assert r.returncode == 128 + signal.SIGINT, r.stderr
    assert f"interrupted: the sources finished so far are kept in {out}.partial" in r.stderr
    assert "rerun the same command to resume" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists() and Path(f"{out}.partial").exists()
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "resumed an interrupted build:" in again.stdout and "wrote" in again.stdout


def test_preview_writes_the_format_its_suffix_names(small_pack, tmp_path):
    for name, magic in (
        ("p.jpg", b"\xff\xd8\xff"),
        ("p.JPEG", b"\xff\xd8\xff"),
        ("p.png", b"\x89PNG"),
        ("p.webp", b"RIFF"),
    ):
        r = runner.invoke(app, ["preview", str(small_pack), "-o", str(tmp_path / name), "-n", "2"])
        assert r.exit_code == 0, r.output
        assert (tmp_path / name).read_bytes()[: len(magic)] == magic, name
    r = runner.invoke(app, ["preview", str(small_pack), "-o", str(tmp_path / "missing" / "p.jpg")])
    assert r.exit_code == 2 and f"the folder {tmp_path / 'missing'} does not exist" in r.output
    r = runner.invoke(app, ["preview", str(small_pack), "-o", str(tmp_path / "p.gif")])
    assert r.exit_code == 2 and "unknown image format '.gif'" in r.output


# --- LiteRT ----------------------------------------------------------------------------------


def test_target_from_tflite_writes_the_models_input(tmp_path):
    from edgeaug.config.targets import load_target

    out = tmp_path / "tpu.toml"
    r = runner.invoke(app, ["target", "from-tflite", str(TFLITE / "uint8_edgetpu.tflite"), "-o", str(out),
                            "--device", "coral", "--arch", "aarch64"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert f"wrote {out}: input uint8 NHWC 8x8 RGB, scale 0.0078125, zero point 128" in r.output
    t = load_target(out)
    assert (t.dtype, t.scale, t.zero_point, t.device.name, t.device.arch) == (
        "uint8",
        0.0078125,
        128,
        "coral",
        "aarch64",
    )
    r = runner.invoke(app, ["target", "from-tflite", str(TFLITE / "float32_rgb.tflite"), "-o", str(tmp_path / "f.toml"),
                            "--mean", "0.5", "--std", "0.25", "--color", "BGR", "--name", "cam"])  # fmt: skip
    assert r.exit_code == 0, r.output
    t = load_target(tmp_path / "f.toml")
    assert t.mean == (0.5,) * 3 and t.std == (0.25,) * 3 and t.color == "BGR"


def test_target_from_tflite_errors_are_one_line(tmp_path):
    r = runner.invoke(
        app, ["target", "from-tflite", str(TFLITE / "int8_per_channel.tflite"), "-o", str(tmp_path / "x.toml")]
    )
    assert r.exit_code == 2 and "quantized per channel" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x.toml").exists()
    r = runner.invoke(app, ["target", "from-tflite", str(TFLITE / "int8_gray.tflite"), "--size", "16x16",
                            "-o", str(tmp_path / "x.toml")])  # fmt: skip
    assert r.exit_code == 2 and "fixed at 8, not 16" in r.output


def test_eval_runs_a_tflite_model(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from scripts_under_test import load

    mk = load("make_tflite_fixtures")

    src = mk.brightness_images(tmp_path / "gray", 1, per_class=4)
    target = tmp_path / "int8.toml"
    assert (
        runner.invoke(app, ["target", "from-tflite", str(TFLITE / "int8_gray.tflite"), "-o", str(target)]).exit_code
        == 0
    )
    (tmp_path / "r.toml").write_text('variants = 0\ninclude_original = true\nresize = "squash"\n')
    pack = tmp_path / "p.lmdb"
    r = runner.invoke(app, ["build", str(src), "-o", str(pack), "-t", str(target), "-r", str(tmp_path / "r.toml"),
                            "--val", "0.25", "-w", "1", "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["eval", str(pack), "--model", str(TFLITE / "int8_gray.tflite"), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["split"] == "val" and res["samples"] == 3 and res["accuracy"] == 1.0
    r = runner.invoke(app, ["eval", str(pack), "--model", str(TFLITE / "float32_rgb.tflite")])
    assert r.exit_code == 2 and "the pack holds int8" in r.output


def test_pyproject_has_the_litert_extra():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib

    proj = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert proj["litert"] == ["ai-edge-litert>=1.0"] and "ai-edge-litert>=1.0" in proj["dev"]
