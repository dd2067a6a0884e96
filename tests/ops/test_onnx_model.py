"""The ``onnx`` recipe op: a user's image-to-image model as a seeded augmentation."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeaug.config.fields import ConfigError
from edgeaug.config.recipe import load_recipe, parse_recipe

REPO = Path(__file__).resolve().parents[2]


def test_importing_ops_does_not_import_onnxruntime():
    code = (
        "import sys, edgeaug.ops.registry, edgeaug.config.recipe; "
        "print('onnxruntime' in sys.modules, 'onnx' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]


ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from onnx_models import image_model  # noqa: E402

from edgeaug.builder.augment import Augmenter, Labels  # noqa: E402
from edgeaug.builder.pipeline import build  # noqa: E402
from edgeaug.config.targets import load_target  # noqa: E402
from edgeaug.device.loader import Pack  # noqa: E402
from edgeaug.verify import verify_pack  # noqa: E402


@pytest.fixture(scope="module")
def recipe_dir(tmp_path_factory):
    """A recipe folder with models/: invert, blur at a fixed 20x20, and noise-adding models."""
    d = tmp_path_factory.mktemp("recipe")
    (d / "models").mkdir()
    image_model(d / "models" / "invert.onnx", "invert")
    image_model(d / "models" / "blur20.onnx", "blur", size=(20, 20))
    image_model(d / "models" / "noisy.onnx", "invert", layout="NHWC", noise=True)
    return d


def write_recipe(d: Path, body: str, name: str = "r.toml") -> Path:
    p = d / name
    p.write_text("variants = 3\ninclude_original = true\n" + body)
    return p


def one_op(recipe_dir, **kw):
    table = {"op": "onnx", "model": "models/invert.onnx", **kw}
    return parse_recipe({"ops": [table]}, "r.toml", base=recipe_dir).ops[0].build()


def test_model_path_resolves_against_the_recipe_folder(recipe_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the recipe's folder
    r = load_recipe(write_recipe(recipe_dir, '[[ops]]\nop = "onnx"\nmodel = "models/invert.onnx"\n'))
    d = r.to_dict()["ops"][0]
    digest = hashlib.sha256((recipe_dir / "models" / "invert.onnx").read_bytes()).hexdigest()
    assert d["model"] == "models/invert.onnx" and d["sha256"] == digest
    text = json.dumps(r.to_dict())
    assert str(recipe_dir) not in text  # the manifest never holds the absolute path
    op = r.ops[0].build()
    assert Path(op.options["model"].path) == (recipe_dir / "models" / "invert.onnx").resolve()
    back = pickle.loads(pickle.dumps(r))  # what worker processes receive
    assert back.ops[0].build().options["model"].path == op.options["model"].path


@pytest.mark.parametrize(
    "table,field",
    [
        ({"model": "models/nope.onnx"}, "ops[0].model: 'models/nope.onnx': no such file"),
        ({"model": "models/invert.onnx", "sha256": "ab" * 32}, "ops[0].sha256: the recipe pins"),
        ({"model": "models/invert.onnx", "input_range": "0-2"}, "ops[0].input_range:"),
        ({"model": "models/invert.onnx", "layout": "CHW"}, "ops[0].layout:"),
        ({"model": "models/noisy.onnx", "noise_input": "z"}, "ops[0].model: models/noisy.onnx: no input named 'z'"),
        ({"model": "models/noisy.onnx"}, "ops[0].model: models/noisy.onnx: expected one image input"),
        ({}, "ops[0].model: missing required field"),
    ],
)
def test_bad_onnx_ops_name_file_and_field(recipe_dir, table, field):
    with pytest.raises(ConfigError) as e:
        parse_recipe({"ops": [{"op": "onnx", **table}]}, "r.toml", base=recipe_dir)
    assert str(e.value).startswith(f"r.toml: {field}")


def image(h=24, w=20, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_invert_model_output(recipe_dir):
    op, img = one_op(recipe_dir), image()
    out, labels = op.apply(img, "labels", op.sample(np.random.default_rng(0), (20, 24)))
    assert out.dtype == np.uint8 and out.shape == img.shape and labels == "labels"
    assert np.array_equal(out, 255 - img)
    part, _ = op.apply(img, None, {"strength": 0.25})  # 0.75 p + 0.25 (255 - p): never a .5 tie
    assert np.array_equal(part, np.rint(img * 0.75 + (255 - img.astype(float)) * 0.25))
    assert np.array_equal(op.apply(img, None, {"strength": 0.0})[0], img)


def test_input_ranges_scale_in_and_out(recipe_dir):
    img = image().astype(np.float64)
    out = {
        r: one_op(recipe_dir, input_range=r).apply(image(), None, {"strength": 1.0})[0].astype(np.float64)
        for r in ("0-1", "0-255", "-1-1")
    }
    assert np.array_equal(out["0-1"], 255 - img)  # 1 - p/255, back * 255
    assert np.array_equal(out["0-255"], np.clip(1 - img, 0, 255))  # 1 - p on raw values
    assert np.abs(out["-1-1"] - np.clip(382.5 - img, 0, 255)).max() <= 0.5  # 1 - (p/127.5 - 1)


def test_fixed_size_model_is_resized_in_and_out(recipe_dir):
    op = one_op(recipe_dir, model="models/blur20.onnx")
    img = image(32, 48)
    out, _ = op.apply(img, None, {"strength": 1.0})
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - img.astype(int)).mean() > 5  # it did something (blurred twice-resized)
    flat = np.full((32, 48, 3), 77, np.uint8)
    assert np.all(np.abs(op.apply(flat, None, {"strength": 1.0})[0].astype(int)[4:-4, 4:-4] - 77) <= 1)


def test_noise_seed_is_sampled_stored_and_deterministic(recipe_dir):
    op = one_op(recipe_dir, model="models/noisy.onnx", noise_input="noise", layout="NHWC", strength=[0.5, 1.0])
    p1 = op.sample(np.random.default_rng(4), (20, 24))
    assert set(p1) == {"strength", "seed"} and 0.5 <= p1["strength"] <= 1.0
    assert p1 == op.sample(np.random.default_rng(4), (20, 24))
    img = image()
    a, b = op.apply(img, None, p1)[0], op.apply(img, None, p1)[0]
    c = op.apply(img, None, {**p1, "seed": p1["seed"] + 1})[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_changed_model_file_is_refused_at_build(recipe_dir, tmp_path):
    import shutil

    d = tmp_path / "r"
    shutil.copytree(recipe_dir, d)
    r = parse_recipe({"ops": [{"op": "onnx", "model": "models/invert.onnx"}]}, "r.toml", base=d)
    image_model(d / "models" / "invert.onnx", "blur")  # replaced after the recipe pinned it
    op = r.ops[0].build()
    from edgeaug.ops import onnx_model as ops_onnx

    ops_onnx._SESSIONS.clear()
    with pytest.raises(ValueError, match="changed since the recipe pinned"):
        op.apply(image(), None, {"strength": 1.0})


RECIPE = """
[[ops]]
op = "hflip"
p = 0.5

[[ops]]
op = "onnx"
p = 0.6
model = "models/noisy.onnx"
layout = "NHWC"
noise_input = "noise"
strength = [0.3, 1.0]
"""


def test_builds_are_identical_across_runs_and_workers(recipe_dir, shapes_dir, tmp_path, monkeypatch):
    recipe = write_recipe(recipe_dir, RECIPE, "style.toml")
    target = load_target("rpi-zero2w")  # 96x96 int8 grayscale: the op runs on RGB before quantization
    outs = []
    for i, workers in enumerate((1, 2, 1)):
        out = tmp_path / f"p{i}.lmdb"
        build(shapes_dir, out, target, recipe, seed=3, workers=workers, val=0.25)
        outs.append(hashlib.sha256(out.read_bytes()).hexdigest())
    assert outs[0] == outs[1] == outs[2]
    with Pack(str(tmp_path / "p0.lmdb")) as pack:
        ops = pack.manifest["recipe"]["ops"]
        assert ops[1]["model"] == "models/noisy.onnx" and len(ops[1]["sha256"]) == 64
        recs = [pack.record(i) for i in range(len(pack))]
        fired = [r["params"]["ops"][1] for r in recs if r["variant"] > 0]  # variant 0: the original
        on = [f for f in fired if f.get("on")]
        assert on and all("seed" in f and 0.3 <= f["strength"] <= 1.0 for f in on)
    monkeypatch.chdir(tmp_path)  # not the recipe's folder: --recipe-dir names it
    rep = verify_pack(tmp_path / "p0.lmdb", shapes_dir, sample=10, recipe_dir=recipe_dir)
    assert rep.ok and rep.regenerated == 10, rep.summary()


def test_augmenter_applies_the_op_on_rgb(recipe_dir):
    r = parse_recipe({"variants": 1, "ops": [{"op": "onnx", "model": "models/invert.onnx"}]}, "r.toml", base=recipe_dir)
    aug = Augmenter(r, load_target("rpi4"))
    img = image(224, 224)
    params = aug.sample(np.random.default_rng(0), (224, 224))
    out, _ = aug.render(img, Labels(), params, (224, 224))
    assert np.array_equal(out, 255 - img)


def test_inside_one_of_the_model_path_still_resolves(recipe_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = load_recipe(
        write_recipe(
            recipe_dir,
            '[[ops]]\nop = "one_of"\nops = [{op = "hflip"}, {op = "onnx", model = "models/invert.onnx"}]\n',
            "nested.toml",
        )
    )
    child = r.to_dict()["ops"][0]["ops"][1]
    assert child["model"] == "models/invert.onnx" and len(child["sha256"]) == 64


@pytest.fixture(scope="module")
def onnx_pack(recipe_dir, shapes_dir, tmp_path_factory):
    """A small pack whose recipe runs models/invert.onnx, built from a recipe in ``recipe_dir``."""
    recipe = write_recipe(recipe_dir, '[[ops]]\nop = "onnx"\nmodel = "models/invert.onnx"\n', "inv.toml")
    out = tmp_path_factory.mktemp("onnxpack") / "inv.lmdb"
    build(shapes_dir, out, load_target("rpi-zero2w"), recipe, variants=1, seed=1, workers=1)
    return out


def _set_model(path: str):
    def change(m):
        m["recipe"]["ops"][0]["model"] = path

    return change


def test_verify_finds_the_model_in_the_recipe_dir_given(onnx_pack, recipe_dir, shapes_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from edgeaug.cli import app

    monkeypatch.chdir(tmp_path)
    args = ["verify", str(onnx_pack), "--source", str(shapes_dir), "--sample", "3", "-q"]
    r = CliRunner().invoke(app, args + ["--recipe-dir", str(recipe_dir)])
    assert r.exit_code == 0 and "3/3 regenerated" in r.output, r.output
    r = CliRunner().invoke(app, args)  # neither SOURCE's folder nor the current one holds models/
    assert r.exit_code == 2 and "models/invert.onnx" in r.output and "--recipe-dir" in r.output, r.output


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink"])
def test_verify_refuses_a_pack_whose_model_path_leaves_the_folders(kind, onnx_pack, recipe_dir, shapes_dir, tmp_path):
    """A pack is untrusted: its recipe may not make verify open files outside SOURCE's or the recipe's folder."""
    from craft_manifest import craft_manifest
    from typer.testing import CliRunner

    from edgeaug.cli import app

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    image_model(outside / "invert.onnx", "invert")  # the same model bytes: only the path is wrong
    root = tmp_path / "recipe"
    (root / "models").mkdir(parents=True)
    path = {
        "absolute": str(outside / "invert.onnx"),
        "dotdot": "../elsewhere/invert.onnx",
        "symlink": "models/link.onnx",
    }[kind]
    (root / "models" / "link.onnx").symlink_to(outside / "invert.onnx")
    crafted = craft_manifest(onnx_pack, tmp_path / "crafted.lmdb", _set_model(path))
    args = ["verify", str(crafted), "--source", str(shapes_dir), "--recipe-dir", str(root), "--sample", "2", "-q"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2, r.output
    assert "model" in r.output and "Traceback" not in r.output
    assert ("outside" in r.output) if kind == "symlink" else ("relative path inside" in r.output), r.output
