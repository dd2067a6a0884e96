"""Camera profiles: `edgeaug camera from-opencv` on a real OpenCV calibration file, a build with the resulting
`camera` op that verifies, profile errors that name file and field, and worker-count determinism of the field ops."""

import hashlib

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeaug.builder.pipeline import build
from edgeaug.cli import app
from edgeaug.config.camera import list_cameras, load_camera
from edgeaug.config.fields import ConfigError
from edgeaug.config.recipe import load_recipe, parse_recipe

runner = CliRunner()
K = np.array([[610.5, 0.0, 318.2], [0.0, 612.25, 243.9], [0.0, 0.0, 1.0]])
D = np.array([[-0.31, 0.12, 0.0012, -0.0008, -0.02]])


@pytest.fixture
def few_shapes(shapes_dir, tmp_path):
    """Two images of each of two classes: builds with slow ops stay quick."""
    import shutil

    out = tmp_path / "few"
    for cls in sorted(p for p in shapes_dir.iterdir() if p.is_dir())[:2]:
        (out / cls.name).mkdir(parents=True)
        for img in sorted(cls.iterdir())[:2]:
            shutil.copy(img, out / cls.name / img.name)
    return out


def write_calibration(path, skip=()):
    """What OpenCV's calibration sample writes (cv2.FileStorage: %YAML:1.0 and !!opencv-matrix)."""
    import cv2

    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    for key, value in (
        ("image_width", 640),
        ("image_height", 480),
        ("camera_matrix", K),
        ("distortion_coefficients", D),
    ):
        if key not in skip:
            fs.write(key, value)
    fs.write("avg_reprojection_error", 0.21)
    fs.release()
    assert path.read_text().startswith("%YAML") and "!!opencv-matrix" in path.read_text()


OPENCV3_YAML = """%YAML:1.0
---
calibration_time: "Mon Dec  7 10:00:00 2026"
image_width: 1280
image_height: 720
camera_matrix: !!opencv-matrix
   rows: 3
   cols: 3
   dt: d
   data: [ 1.0155e+03, 0., 6.395e+02, 0., 1.0161e+03, 3.598e+02, 0., 0., 1. ]
distortion_coefficients: !!opencv-matrix
   rows: 5
   cols: 1
   dt: d
   data: [ -0.29, 0.11, 1.0e-03, -5.0e-04, -0.03 ]
avg_reprojection_error: 0.31
"""


def test_from_opencv_reads_the_older_yaml_1_0_header(tmp_path):
    (tmp_path / "old.yml").write_text(OPENCV3_YAML)
    r = runner.invoke(app, ["camera", "from-opencv", str(tmp_path / "old.yml"), "-o", str(tmp_path / "old.toml")])
    assert r.exit_code == 0, r.output
    prof = load_camera(str(tmp_path / "old.toml"))
    assert prof.image_size == (1280, 720) and prof.distortion == (-0.29, 0.11, 1.0e-03, -5.0e-04, -0.03)
    assert prof.camera_matrix[0] == (1015.5, 0.0, 639.5)


def test_from_opencv_then_a_camera_build_verifies(few_shapes, tmp_path):
    calib, rdir = tmp_path / "calib.yaml", tmp_path / "recipes"
    rdir.mkdir()
    write_calibration(calib)
    r = runner.invoke(app, ["camera", "from-opencv", str(calib), "-o", str(rdir / "mycam.toml")])
    assert r.exit_code == 0, r.output
    prof = load_camera(str(rdir / "mycam.toml"))
    assert prof.name == "mycam" and prof.image_size == (640, 480)
    np.testing.assert_array_equal(np.array(prof.camera_matrix), K)
    np.testing.assert_array_equal(prof.distortion, D.ravel())
    # A recipe naming the profile relative to its own folder.
    (rdir / "r.toml").write_text('variants = 2\n[[ops]]\nop = "camera"\nprofile = "mycam.toml"\n')
    assert load_recipe(rdir / "r.toml").ops[0].to_dict()["values"]["lens"]["distortion"] == D.ravel().tolist()
    out = tmp_path / "cam.lmdb"
    args = ["build", str(few_shapes), "-o", str(out), "-t", "rpi4", "-r", str(rdir / "r.toml"), "-w", "1", "-q"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    (rdir / "mycam.toml").unlink()  # the manifest pins the profile's values: verify needs no file
    r = runner.invoke(app, ["verify", str(out), "--source", str(few_shapes)])
    assert r.exit_code == 0 and "regenerated records byte-identical" in r.output, r.output


@pytest.mark.parametrize("skip", ["camera_matrix", "distortion_coefficients", "image_width"])
def test_from_opencv_names_file_and_missing_field(tmp_path, skip):
    calib = tmp_path / "calib.yaml"
    write_calibration(calib, skip=(skip,))
    r = runner.invoke(app, ["camera", "from-opencv", str(calib), "-o", str(tmp_path / "c.toml")])
    assert r.exit_code == 2 and f"{calib}: {skip}: missing" in r.output, r.output
    calib.write_text("not: [an opencv file")
    r = runner.invoke(app, ["camera", "from-opencv", str(calib), "-o", str(tmp_path / "c.toml")])
    assert r.exit_code == 2 and str(calib) in r.output and not (tmp_path / "c.toml").exists()


@pytest.mark.parametrize(
    "edit,field",
    [
        (
            ("distortion = [-0.05, 0.0, 0.0, 0.0, 0.0]", "distortion = [-0.05, 0.0, 0.0]"),
            "lens.distortion: expected 4, 5 or 8",
        ),
        (("[0.0, 0.0, 1.0]]", "[0.0, 0.0, 2.0]]"), "lens.camera_matrix: only"),
        (("red = [0.9, 1.1]", "red = [1.2, 1.1]"), "white_balance.red: low 1.2 is greater"),
        (("quality = [85, 95]", "quality = [85, 101]"), "jpeg.quality: 101"),
        (("[noise]", "[noize]"), "noise: missing table"),
    ],
)
def test_profile_errors_name_file_and_field(tmp_path, edit, field):
    from edgeaug.config.camera import camera_dir

    text = (camera_dir() / "rpi_hq_camera_6mm.toml").read_text()
    assert edit[0] in text
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(*edit, 1))
    with pytest.raises(ConfigError) as e:
        parse_recipe({"ops": [{"op": "camera", "profile": "bad.toml"}]}, "r.toml", base=tmp_path)
    assert str(e.value).startswith(f"{bad}: {field}"), str(e.value)


def test_shipped_profiles_load_and_round_trip_through_a_recipe():
    assert set(list_cameras()) >= {"rpi_camera_module_3", "rpi_camera_module_3_wide", "rpi_hq_camera_6mm"}
    for name in list_cameras():
        r = parse_recipe({"ops": [{"op": "camera", "profile": name}]})
        assert r.ops[0].to_dict()["values"] == load_camera(name).to_dict()
        assert parse_recipe(r.to_dict()).to_dict() == r.to_dict()
    with pytest.raises(ConfigError, match="unknown camera 'pi_cam_9'"):
        parse_recipe({"ops": [{"op": "camera", "profile": "pi_cam_9"}]})


def test_field_ops_do_not_depend_on_the_worker_count(few_shapes, tmp_path):
    recipe = parse_recipe(
        {
            "variants": 3,
            "ops": [
                {"op": "rotate", "p": 0.5},
                {"op": "elastic", "p": 0.7},
                {"op": "grid_distortion", "p": 0.7},
                {"op": "lens_distortion", "p": 0.7, "k1": [-0.3, 0.3]},
                {"op": "chromatic_aberration", "p": 0.7},
                {"op": "vignette", "p": 0.7},
                {"op": "camera", "p": 0.7, "profile": "rpi_camera_module_3_wide"},
            ],
        }
    )
    a, b = tmp_path / "w1.lmdb", tmp_path / "w2.lmdb"
    build(few_shapes, a, "rpi4", recipe, seed=5, workers=1)
    build(few_shapes, b, "rpi4", recipe, seed=5, workers=2)
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()


def test_pinned_values_are_validated_like_a_profile_file():
    """A recipe (e.g. a pack's manifest) carrying the profile's values: errors name the recipe and the field."""
    values = load_camera("rpi_hq_camera_6mm").to_dict()
    values["lens"]["distortion"] = [0.1, 0.2]
    with pytest.raises(ConfigError) as e:
        parse_recipe({"ops": [{"op": "camera", "values": values}]}, "manifest.recipe")
    assert str(e.value).startswith("manifest.recipe: ops[0].values: lens.distortion: expected 4, 5 or 8")
