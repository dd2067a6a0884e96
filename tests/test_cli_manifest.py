"""A crafted manifest (re-signed: the fingerprint is a plain hash) gives one clear error naming the field."""

from __future__ import annotations

import pytest
from craft_manifest import craft_manifest, read_manifest
from craft_manifest import drop_field as _drop
from craft_manifest import set_field as _set
from typer.testing import CliRunner

from edgeaug.cli import app

runner = CliRunner()


AUDIT = {"channels": [{"clip_low": 0.0, "clip_high": 0.0, "mae": 0.001, "max_error": 0.002}], "warning": False}

# (the field as the message names it, the change)
BAD_FIELDS = [
    ("val_fraction", _set(["val_fraction"], "0.25")),
    ("val_fraction", _set(["val_fraction"], 7)),
    ("quantization_audit", _set(["quantization_audit"], ["channels"])),
    ("quantization_audit.channels", _set(["quantization_audit"], {"channels": {"clip_low": 0}})),
    ("quantization_audit.channels[0].mae", _set(["quantization_audit", "channels", 0, "mae"], "x")),
    ("quantization_audit.channels[0].clip_low", _set(["quantization_audit"], {"channels": [{"mae": 0.1}]})),
    ("quantization_audit.warning", _set(["quantization_audit"], {**AUDIT, "warning": "no"})),
    ("counts", _set(["counts"], [1, 2])),
    ("counts.train", _set(["counts"], {"train": [3]})),
    ("counts.train.a", _set(["counts"], {"train": {"a": "3"}})),
    ("versions", _set(["versions"], ["edgeaug"])),
    ("versions.numpy", _set(["versions"], {"numpy": [1, 21]})),
    ("skipped", _set(["skipped"], {"path": "x"})),
    ("skipped[0].reason", _set(["skipped"], [{"path": "x", "reason": 3}])),
    ("recipe", _set(["recipe"], ["hflip"])),
    ("recipe.variants", _set(["recipe", "variants"], "3")),
    ("recipe.include_original", _set(["recipe", "include_original"], 1)),
    ("recipe.resize", _set(["recipe", "resize"], 3)),
    ("recipe.ops", _set(["recipe", "ops"], {"op": "hflip"})),
    ("recipe.ops[0].op", _set(["recipe", "ops"], [{"op": 3}])),
    ("source_kind", _set(["source_kind"], ["folder"])),
    ("target.color", _set(["target", "color"], "CMYK")),
    ("target.device", _set(["target", "device"], ["rpi4"])),
    ("target.device.word_size", _set(["target", "device", "word_size"], "64")),
    ("target.name", _set(["target", "name"], 4)),
    ("classes[1]", _set(["classes", 1], {"name": "x"})),
    ("sources[0].path", _set(["sources", 0, "path"], 5)),
    ("sources[0].mask_sha256", _set(["sources", 0, "mask_sha256"], 5)),
]


@pytest.fixture(scope="module")
def audited_pack(small_pack, tmp_path_factory):
    """The small pack with a quantization audit and a skipped source listed, so every field is present."""
    m = read_manifest(small_pack)
    out = tmp_path_factory.mktemp("audited") / "a.lmdb"
    audit = m.get("quantization_audit") or AUDIT
    return craft_manifest(small_pack, out, _set(["quantization_audit"], audit))


def _commands(pack) -> list:
    return [["inspect", str(pack)], ["inspect", "--json", str(pack)], ["explain", str(pack), "0"]]


def _assert_clean_error(r, field: str) -> None:
    assert r.exit_code != 0, r.output
    assert isinstance(r.exception, SystemExit), repr(r.exception)  # an error line, not a traceback
    assert f"manifest: {field}" in r.output, r.output
    assert "Traceback" not in r.output


@pytest.mark.parametrize("field,change", BAD_FIELDS, ids=[f for f, _ in BAD_FIELDS])
def test_a_crafted_field_of_the_wrong_type_is_one_clear_error(field, change, audited_pack, tmp_path):
    crafted = craft_manifest(audited_pack, tmp_path / "crafted.lmdb", change)
    for args in _commands(crafted) + [["preview", str(crafted), "-o", str(tmp_path / "s.png")]]:
        _assert_clean_error(runner.invoke(app, args), field)


def test_the_untouched_pack_passes_every_command(audited_pack, tmp_path):
    for args in _commands(audited_pack):
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
    assert "quant ch0" in runner.invoke(app, ["inspect", str(audited_pack)]).output


def test_a_missing_field_names_the_packs_format_version(audited_pack, tmp_path):
    crafted = craft_manifest(audited_pack, tmp_path / "old.lmdb", _drop(["val_fraction"]))
    r = runner.invoke(app, ["inspect", str(crafted)])
    _assert_clean_error(r, "val_fraction: missing")
    assert "format version 1" in r.output, r.output


def test_verify_source_refuses_a_crafted_target(audited_pack, shapes_dir, tmp_path):
    crafted = craft_manifest(audited_pack, tmp_path / "t.lmdb", _set(["target", "device"], {"name": "x"}))
    r = runner.invoke(app, ["verify", str(crafted), "--source", str(shapes_dir), "--sample", "1", "-q"])
    _assert_clean_error(r, "target.device.arch")
