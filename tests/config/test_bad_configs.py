"""Bad recipes and targets, as TOML files on disk: every one is a ConfigError naming file and field.

Each case goes through the loader (``load_recipe`` / ``load_target``) and
through ``edgeaug build`` (exit code 2, the same ``file: field`` message).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeaug.cli import app
from edgeaug.config.fields import ConfigError
from edgeaug.config.recipe import load_recipe
from edgeaug.config.targets import load_target

REPO = Path(__file__).resolve().parents[2]

#: (TOML text, the field the error must name)
BAD_RECIPES = [
    ('variants = "4"', "variants"),
    ("variants = 10001", "variants"),
    ("variants = -1", "variants"),
    ("variants = 2.5", "variants"),
    ("variants = true", "variants"),
    ("variants = 99999999999999999999", "variants"),
    ("variants = 0\ninclude_original = false", "variants"),
    ("include_original = 1", "include_original"),
    ('resize = "stretch"', "resize"),
    ("resize = 3", "resize"),
    ('border = "wrap"', "border"),
    ("fill = 256", "fill"),
    ("fill = -1", "fill"),
    ("fill = 1.5", "fill"),
    ("min_visibility = 1.5", "min_visibility"),
    ("min_visibility = nan", "min_visibility"),
    ("min_visibility = inf", "min_visibility"),
    ("seed = 3", "seed"),
    ('ops = "hflip"', "ops"),
    ("ops = [1, 2]", "ops[0]"),
    ('[ops]\nop = "hflip"', "ops"),
    ('[[ops]]\nop = "twirl"', "ops[0].op"),
    ("[[ops]]\np = 0.5", "ops[0].op"),
    ("[[ops]]\nop = 5", "ops[0].op"),
    ("[[ops]]\nop = \"__import__('os').system('touch /tmp/edgeaug-pwned')\"", "ops[0].op"),
    ('[[ops]]\nop = "hflip"\np = 2', "ops[0].p"),
    ('[[ops]]\nop = "hflip"\np = -0.1', "ops[0].p"),
    ('[[ops]]\nop = "hflip"\np = "half"', "ops[0].p"),
    ('[[ops]]\nop = "hflip"\ndegrees = [1, 2]', "ops[0].degrees"),
    ('[[ops]]\nop = "rotate"\ndegrees = [10, -10]', "ops[0].degrees"),
    ('[[ops]]\nop = "rotate"\ndegrees = [0, 400]', "ops[0].degrees"),
    ('[[ops]]\nop = "rotate"\ndegrees = [1, 2, 3]', "ops[0].degrees"),
    ('[[ops]]\nop = "rotate"\ndegrees = []', "ops[0].degrees"),
    ('[[ops]]\nop = "rotate"\ndegrees = [1, "a"]', "ops[0].degrees"),
    ('[[ops]]\nop = "rotate"\ndegrees = {low = 1, high = 2}', "ops[0].degrees"),
    ('[[ops]]\nop = "rotate"\ndegrees = [0, 1e308]', "ops[0].degrees"),
    ('[[ops]]\nop = "rotate"\nangle = [1, 2]', "ops[0].angle"),
    ('[[ops]]\nop = "hflip"\n[[ops]]\nop = "gaussian_blur"\nsigma = [-1, 1]', "ops[1].sigma"),
    ('[[ops]]\nop = "one_of"', "ops[0].ops"),
    ('[[ops]]\nop = "one_of"\nops = []', "ops[0].ops"),
    (
        '[[ops]]\nop = "one_of"\n[[ops.ops]]\nop = "hflip"\n[[ops.ops]]\nop = "rotate"\ndegrees = [5, 1]',
        "ops[0].ops[1].degrees",
    ),
    ("variants = = 3", "invalid TOML"),
    ("[[ops]\nop = 'x'", "invalid TOML"),
    ("variants = " + "[" * 600 + "]" * 600, "invalid TOML: arrays or tables nested too deeply"),
    ("x = " + "{a = " * 3000 + "1" + "}" * 3000, "invalid TOML: arrays or tables nested too deeply"),
    ('[[ops]]\nop = "hflip"\np = nan', "ops[0].p"),
]

#: (replacement for a key of a valid profile: section, key, TOML value or None to delete), field
BAD_TARGETS = [
    (("device", None, None), "device"),
    (("input", None, None), "input"),
    (("device", "word_size", "16"), "device.word_size"),
    (("device", "word_size", '"64"'), "device.word_size"),
    (("device", "name", None), "device.name"),
    (("device", "arch", "64"), "device.arch"),
    (("device", "os", '"linux"'), "device.os"),
    (("input", "dtype", '"float64"'), "input.dtype"),
    (("input", "layout", '"HWC"'), "input.layout"),
    (("input", "channels", "1"), "input.channels"),
    (("input", "channels", "5"), "input.channels"),
    (("input", "height", "0"), "input.height"),
    (("input", "height", "100000"), "input.height"),
    (("input", "width", '"224"'), "input.width"),
    (("input", "width", "224.0"), "input.width"),
    (("input", "mean", "[0.5]"), "input.mean"),
    (("input", "mean", '"0.5"'), "input.mean"),
    (("input", "mean", "[nan, 0, 0]"), "input.mean"),
    (("input", "std", "[0, 1, 1]"), "input.std"),
    (("input", "std", "[-1, 1, 1]"), "input.std"),
    (("input", "scale", "0"), "input.scale"),
    (("input", "scale", None), "input.scale"),
    (("input", "scale", "inf"), "input.scale"),
    (("input", "zero_point", "300"), "input.zero_point"),
    (("input", "zero_point", "1.5"), "input.zero_point"),
    (("input", "colour", '"RGB"'), "input.colour"),
    (("input", "color", '"RGBA"'), "input.color"),
    (("input", "color", None), "input.color"),
    (("input", "name", "5"), "input.name"),
    (("model", "path", '"m.onnx"'), "model"),
]

VALID_TARGET = {
    "device": {"name": '"Pi"', "arch": '"aarch64"', "word_size": "64"},
    "input": {
        "name": '"input"',
        "height": "224",
        "width": "224",
        "channels": "3",
        "layout": '"NHWC"',
        "color": '"RGB"',
        "dtype": '"uint8"',
        "mean": "[0.0, 0.0, 0.0]",
        "std": "[1.0, 1.0, 1.0]",
        "scale": "0.00392156862745098",
        "zero_point": "0",
    },
}


def target_toml(section, key, value) -> str:
    tables = {k: dict(v) for k, v in VALID_TARGET.items()}
    if key is None:
        tables.pop(section)
    elif value is None:
        tables[section].pop(key)
    else:
        tables.setdefault(section, {})[key] = value
    return "\n".join(f"[{t}]\n" + "".join(f"{k} = {v}\n" for k, v in kv.items()) for t, kv in tables.items())


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text + "\n")
    return p


@pytest.mark.parametrize("text,field", BAD_RECIPES)
def test_bad_recipe_files(tmp_path, text, field):
    p = _write(tmp_path, "bad-recipe.toml", text)
    with pytest.raises(ConfigError) as e:
        load_recipe(p)
    assert f"bad-recipe.toml: {field}" in str(e.value), str(e.value)  # syntax errors: full path
    assert not Path("/tmp/edgeaug-pwned").exists()  # configs are data, never code


@pytest.mark.parametrize("change,field", BAD_TARGETS)
def test_bad_target_files(tmp_path, change, field):
    p = _write(tmp_path, "bad-target.toml", target_toml(*change))
    with pytest.raises(ConfigError) as e:
        load_target(p)
    assert str(e.value).startswith(f"bad-target.toml: {field}"), str(e.value)


def test_the_valid_profile_used_above_is_valid(tmp_path):
    t = load_target(_write(tmp_path, "ok.toml", target_toml("input", "name", '"input"')))
    assert t.shape == (224, 224, 3)


def test_unreadable_and_undecodable_config_files(tmp_path):
    (tmp_path / "latin1.toml").write_bytes(b'resize = "squ\xe9sh"\n')
    (tmp_path / "dir.toml").mkdir()
    for name, msg in (("latin1.toml", "invalid TOML"), ("dir.toml", "cannot read"), ("absent.toml", "cannot read")):
        with pytest.raises(ConfigError, match=f"{name}: {msg}"):
            load_recipe(tmp_path / name)
    with pytest.raises(ConfigError, match="latin1.toml: invalid TOML"):
        load_target(tmp_path / "latin1.toml")


def test_every_bad_config_through_the_cli(tmp_path, shapes_dir):
    runner, n = CliRunner(), 0
    for i, (text, field) in enumerate(BAD_RECIPES):
        p = _write(tmp_path, f"r{i}.toml", text)
        r = runner.invoke(
            app, ["build", str(shapes_dir), "-o", str(tmp_path / "x.lmdb"), "-t", "rpi4", "-r", str(p), "-q"]
        )
        assert r.exit_code == 2 and f"r{i}.toml: {field}" in r.output, (text, r.output)
        assert r.output.startswith("error: ") and "Traceback" not in r.output
        n += 1
    for i, (change, field) in enumerate(BAD_TARGETS):
        p = _write(tmp_path, f"t{i}.toml", target_toml(*change))
        r = runner.invoke(app, ["build", str(shapes_dir), "-o", str(tmp_path / "x.lmdb"), "-t", str(p), "-q"])
        assert r.exit_code == 2 and f"error: t{i}.toml: {field}" in r.output, (change, r.output)
        n += 1
    assert n >= 30 and not list(tmp_path.glob("x.lmdb*"))


def test_a_bad_config_in_a_real_process(tmp_path, shapes_dir):
    p = _write(tmp_path, "r.toml", '[[ops]]\nop = "rotate"\ndegrees = [0, 400]')
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeaug.cli",
            "build",
            str(shapes_dir),
            "-o",
            str(tmp_path / "x.lmdb"),
            "-t",
            "rpi4",
            "-r",
            str(p),
            "-q",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 2 and "r.toml: ops[0].degrees: 400" in r.stderr
    assert "Traceback" not in r.stderr
