"""Target profiles: validation, quantization, and every dtype/layout round-trip."""

import numpy as np
import pytest

from edgeaug.builder.pipeline import build
from edgeaug.config.fields import ConfigError
from edgeaug.config.targets import list_targets, load_target, parse_target, quantization_lut, quantize
from edgeaug.device.loader import Pack

SHIPPED = ["coral-edgetpu", "generic", "jetson-nano", "rpi-zero2w", "rpi4"]


def test_shipped_targets_load():
    assert [p.stem for p in list_targets()] == SHIPPED
    t = load_target("rpi4")
    assert (t.dtype, t.layout, t.shape, t.color) == ("uint8", "NHWC", (224, 224, 3), "RGB")
    z = load_target("rpi-zero2w")
    assert (z.dtype, z.shape, z.color, z.device.word_size, z.device.arch) == ("int8", (96, 96, 1), "GRAY", 32, "armv7l")
    j = load_target("jetson-nano")
    assert (j.dtype, j.layout, j.shape) == ("float16", "NCHW", (3, 224, 224))
    assert load_target("generic").dtype == "float32"
    assert load_target("coral-edgetpu").dtype == "uint8"


def test_quantization_tables():
    lut = quantization_lut(load_target("rpi4"))
    np.testing.assert_array_equal(lut[:, 0], np.arange(256))  # identity for scale 1/255
    z = quantization_lut(load_target("rpi-zero2w"))
    assert z.dtype == np.int8 and z[0, 0] == -128 and z[255, 0] == 127
    c = quantization_lut(load_target("coral-edgetpu"))
    assert c[0, 0] == 0 and c[255, 0] == 255 and c[128, 0] == 129  # rint((2*128/255-1)*128)+128
    g = quantization_lut(load_target("generic"))
    assert g.dtype == np.float32
    assert g[0, 0] == pytest.approx(-0.485 / 0.229, rel=1e-6)


def test_quantize_layouts_and_colour():
    img = np.zeros((224, 224, 3), np.uint8)
    img[..., 0] = 200  # pure red
    x = quantize(img, load_target("generic"))
    assert x.shape == (3, 224, 224) and x.flags.c_contiguous
    assert x[0, 0, 0] > x[1, 0, 0]  # red plane first in RGB order
    small = np.full((96, 96, 3), 255, np.uint8)
    assert quantize(small, load_target("rpi-zero2w")).shape == (96, 96, 1)
    with pytest.raises(ValueError):
        quantize(small, load_target("rpi4"))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_target_roundtrips_through_a_pack(name, shapes_dir, tmp_path):
    t = load_target(name)
    out = tmp_path / f"{name}.lmdb"
    build(shapes_dir, out, name, variants=1, seed=1, workers=1)
    with Pack(str(out)) as p:
        x, y = p[0]
        assert x.shape == t.shape and x.dtype == np.dtype(t.dtype).newbyteorder("<")
        rec = p.record(0)
        assert rec["variant"] == 0 and rec["params"] == {"ops": []}
        # The stored tensor is exactly quantize() of the rendered original.
        from edgeaug.builder.augment import Augmenter
        from edgeaug.builder.render import decode, render_variant, source_labels, working_image
        from edgeaug.config.recipe import load_recipe
        from edgeaug.sources.scan import scan

        src = scan(shapes_dir).sources[
            p.manifest["sources"].index(next(s for s in p.manifest["sources"] if s["split"] == "train"))
        ]
        aug = Augmenter(load_recipe().with_variants(1), t)
        img = decode(src.path.read_bytes())
        want, _, _ = render_variant(
            aug, working_image(img, aug), source_labels(src), (img.shape[1], img.shape[0]), 1, src, 0
        )
        assert want.tobytes() == x.tobytes()
        X, Y = next(p.batches(4, epoch=0))
        assert X.shape == (4,) + t.shape and X.dtype == x.dtype


def _valid():
    return {
        "device": {"name": "d", "arch": "aarch64", "word_size": 64},
        "input": {
            "height": 8,
            "width": 8,
            "channels": 3,
            "layout": "NHWC",
            "color": "RGB",
            "dtype": "uint8",
            "scale": 0.5,
        },
    }


@pytest.mark.parametrize(
    "path,value,field",
    [
        (("input", "dtype"), "float64", "input.dtype"),
        (("input", "layout"), "HWC", "input.layout"),
        (("input", "channels"), 1, "input.channels"),
        (("input", "height"), 0, "input.height"),
        (("input", "height"), "224", "input.height"),
        (("input", "mean"), [0.5], "input.mean"),
        (("input", "std"), [0, 1, 1], "input.std"),
        (("input", "zero_point"), 300, "input.zero_point"),
        (("input", "colour"), "RGB", "input.colour"),
        (("device", "word_size"), 16, "device.word_size"),
    ],
)
def test_bad_targets_name_the_field(path, value, field):
    d = _valid()
    d[path[0]][path[1]] = value
    with pytest.raises(ConfigError, match=f"my.toml: {field}"):
        parse_target(d, "t", "my.toml")


def test_unknown_target_name():
    with pytest.raises(ConfigError, match="unknown target 'nope'"):
        load_target("nope")


def test_pack_table_sets_how_build_stores_tensors():
    d = _valid()
    assert parse_target(d, "t").compress == ("none", 0)
    d["pack"] = {"compress": "zstd"}
    assert parse_target(d, "t").compress == ("zstd", 1)  # the codec's default level
    d["pack"] = {"compress": "zlib", "level": 3}
    assert parse_target(d, "t").compress == ("zlib", 3)
    assert "compress" not in parse_target(d, "t").to_dict()  # not a device property: not in the manifest's target


@pytest.mark.parametrize(
    "pack,field",
    [
        ({"compress": "lz4"}, "pack.compress"),
        ({"compress": "zlib", "level": 12}, "pack.level"),
        ({"codec": 1}, "pack.codec"),
    ],
)
def test_bad_pack_table_names_the_field(pack, field):
    d = _valid()
    d["pack"] = pack
    with pytest.raises(ConfigError, match=f"my.toml: {field}"):
        parse_target(d, "t", "my.toml")


def test_build_stores_as_the_profile_says_unless_told(shapes_dir, tmp_path):
    import tomli_w

    d = _valid()
    d["input"].update(height=32, width=32)
    d["pack"] = {"compress": "zlib", "level": 2}
    prof = tmp_path / "mine.toml"
    prof.write_text(tomli_w.dumps(d))
    build(shapes_dir, tmp_path / "a.lmdb", prof, variants=0, seed=1, workers=1)
    build(shapes_dir, tmp_path / "b.lmdb", prof, variants=0, seed=1, workers=1, compress="none")
    build(shapes_dir, tmp_path / "c.lmdb", prof, variants=0, seed=1, workers=1, level=7)
    with Pack(str(tmp_path / "a.lmdb")) as a, Pack(str(tmp_path / "b.lmdb")) as b, Pack(str(tmp_path / "c.lmdb")) as c:
        assert a.info()["compression"] == {"codec": "zlib", "level": 2} and a.manifest["format_version"] == 2
        assert b.info()["compression"] == {"codec": "none"} and b.manifest["format_version"] == 1
        assert c.info()["compression"] == {"codec": "zlib", "level": 7}
        assert all(np.array_equal(a[i][0], b[i][0]) for i in range(len(a)))
