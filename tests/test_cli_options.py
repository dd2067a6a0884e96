"""CLI options: choices typer checks and lists in --help, warnings for empty splits, messages that name paths."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeaug.cli import app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def _build(shapes_dir, out, *more):
    args = ["build", str(shapes_dir), "-o", str(out), "-t", "rpi-zero2w", "-k", "0", "-w", "1", "-q", *more]
    return runner.invoke(app, args)


@pytest.mark.parametrize(
    "val,empty,counts",
    [("0.99", "train", "(train 0, val 24 records)"), ("0.01", "val", "(val 0, train 24 records)")],
)
def test_a_val_fraction_that_empties_a_split_is_warned_about(val, empty, counts, shapes_dir, tmp_path):
    r = _build(shapes_dir, tmp_path / "p.lmdb", "--val", val)
    assert r.exit_code == 0, r.output
    assert f"warning: --val {val} held out" in r.output and f"the {empty} split is empty {counts}" in r.output


def test_a_val_fraction_that_leaves_both_splits_says_nothing(shapes_dir, tmp_path):
    r = _build(shapes_dir, tmp_path / "p.lmdb", "--val", "0.25")
    assert r.exit_code == 0 and "split is empty" not in r.output, r.output


@pytest.mark.parametrize(
    "command,choices",
    [
        (["build"], ["skip|fail", "I/N"]),
        (["eval"], ["train|val"]),
        (["target", "from-onnx"], ["NCHW|NHWC", "RGB|BGR|GRAY", "32|64", "HxW"]),
        (["target", "from-tflite"], ["NCHW|NHWC", "RGB|BGR|GRAY", "32|64", "HxW"]),
        (["adapt-model"], ["NCHW|NHWC"]),
    ],
)
def test_help_lists_the_choices(command, choices):
    r = runner.invoke(app, [*command, "--help"])
    assert r.exit_code == 0
    for c in choices:
        assert c in r.output, (c, r.output)


@pytest.mark.parametrize(
    "args,option",
    [
        (["build", "SRC", "-o", "x.lmdb", "-t", "rpi4", "--on-error", "ignore"], "--on-error"),
        (["build", "SRC", "-o", "x.lmdb", "-t", "rpi4", "--shard", "4/4"], "--shard"),
        (["build", "SRC", "-o", "x.lmdb", "-t", "rpi4", "--shard", "a/b"], "--shard"),
        (["build", "SRC", "-o", "x.lmdb", "-t", "rpi4", "--val", "1"], "--val"),
        (["build", "SRC", "-o", "x.lmdb", "-t", "rpi4", "--val", "-0.1"], "--val"),
        (["eval", "p.lmdb", "-m", "m.onnx", "--split", "test"], "--split"),
        (["target", "from-onnx", "m.onnx", "--layout", "NWHC"], "--layout"),
        (["target", "from-onnx", "m.onnx", "--color", "CMYK"], "--color"),
        (["target", "from-onnx", "m.onnx", "--word-size", "16"], "--word-size"),
        (["target", "from-tflite", "m.tflite", "--size", "0x224"], "--size"),
        (["adapt-model", "m.onnx", "-o", "a.onnx", "--layout", "nchw"], "--layout"),
        (["preview", "p.lmdb", "-o", "s.png", "--count", "0"], "--count"),
    ],
)
def test_a_bad_choice_is_a_usage_error_naming_the_option(args, option, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing is read or written: typer refuses before the command runs
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert "Invalid value" in r.output and option in r.output, r.output
    assert list(tmp_path.iterdir()) == []


def test_build_help_shows_the_dask_extra():
    assert "'edgeaug[dask]'" in runner.invoke(app, ["build", "--help"]).output


def test_preview_help_names_every_format_it_writes():
    from edgeaug.preview import SHEET_FORMATS

    out = runner.invoke(app, ["preview", "--help"]).output
    for suffix in SHEET_FORMATS:
        assert suffix in out, suffix


def test_explain_takes_a_negative_record_number(small_pack):
    from edgeaug.device.loader import Pack

    with Pack(str(small_pack)) as p:
        n = p.records
    last = runner.invoke(app, ["explain", str(small_pack), "-1"])
    assert last.exit_code == 0, last.output
    assert last.output == runner.invoke(app, ["explain", str(small_pack), str(n - 1)]).output
    assert f"record {n - 1}:" in last.output
    r = runner.invoke(app, ["explain", str(small_pack), str(-n - 1)])
    assert r.exit_code == 2 and f"outside the pack's {n} records (0..{n - 1}, or -{n}..-1 from the end)" in r.output


def test_an_os_error_without_a_file_name_names_the_output(shapes_dir, tmp_path, monkeypatch):
    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("edgeaug.builder.pipeline.build", full_disk)
    out = tmp_path / "p.lmdb"
    r = _build(shapes_dir, out)
    assert r.exit_code == 2 and f"error: {out}: No space left on device" in r.output, r.output


def test_an_os_error_with_a_file_name_names_it(small_pack, tmp_path, monkeypatch):
    def denied(*a, **k):
        raise PermissionError(13, "Permission denied", str(tmp_path / "sheet.png"))

    monkeypatch.setattr("edgeaug.preview.write_preview", denied)
    r = runner.invoke(app, ["preview", str(small_pack), "-o", str(tmp_path / "sheet.png")])
    assert r.exit_code == 2 and f"error: {tmp_path / 'sheet.png'}: Permission denied" in r.output, r.output


def test_cannot_resume_says_how_to_start_over(shapes_dir, tmp_path):
    out = tmp_path / "p.lmdb"
    r = _build(shapes_dir, out, "--resume")
    assert r.exit_code == 2 and "cannot resume" in r.output, r.output
    assert "--no-resume" in r.output and f"{out}.partial" in r.output, r.output
    assert _build(shapes_dir, out, "--no-resume").exit_code == 0


def test_the_console_script_without_the_build_extra_says_what_to_install():
    code = "import sys; sys.modules['typer'] = None; from edgeaug.console import main; sys.exit(main(['targets']))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "no module named 'typer'" in r.stderr and "pip install 'edgeaug[build]'" in r.stderr


def test_the_console_script_is_the_stdlib_entry_point():
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"edgeaug": "edgeaug.console:main"}
    code = "import sys, edgeaug.console; print(sorted(m for m in ('typer', 'numpy', 'rich') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr


def test_target_from_a_model_writes_to_the_current_folder_not_the_shipped_profiles(tmp_path, monkeypatch):
    from edgeaug.config.targets import list_targets, load_target, shipped_target_dir

    (tmp_path / "targets").mkdir()  # as in a checkout's root: the shipped profiles' folder
    monkeypatch.chdir(tmp_path)
    shipped = sorted(p.name for p in list_targets())
    model = REPO / "tests" / "fixtures" / "tflite" / "uint8_edgetpu.tflite"
    r = runner.invoke(app, ["target", "from-tflite", str(model), "--name", "coral-test"])
    assert r.exit_code == 0, r.output
    assert "wrote coral-test.toml" in r.output and load_target(tmp_path / "coral-test.toml").dtype == "uint8"
    assert list((tmp_path / "targets").iterdir()) == []
    assert sorted(p.name for p in list_targets()) == shipped and shipped_target_dir() == REPO / "targets"
