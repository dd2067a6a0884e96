"""Recipes: defaults, canonical form, and errors that name file and field."""

import pytest

from edgeaug.config.fields import ConfigError
from edgeaug.config.recipe import load_recipe, parse_recipe
from edgeaug.ops.registry import OPS


def test_default_recipe_is_valid_and_canonical():
    r = load_recipe()
    assert r.variants == 4 and r.include_original
    d = r.to_dict()
    assert parse_recipe(d).to_dict() == d  # the manifest form round-trips
    assert all(o["op"] in OPS for o in d["ops"])


def test_scalar_means_fixed_value_and_variants_override():
    r = parse_recipe({"ops": [{"op": "rotate", "degrees": 5}]})
    assert dict(r.ops[0].ranges)["degrees"] == (5.0, 5.0)
    assert r.with_variants(9).variants == 9


@pytest.mark.parametrize(
    "data,field",
    [
        ({"ops": [{"op": "twirl"}]}, "ops[0].op: unknown op"),
        ({"ops": [{"op": "rotate", "angle": [1, 2]}]}, "ops[0].angle: unknown field"),
        ({"ops": [{"op": "rotate", "degrees": [10, -10]}]}, "ops[0].degrees: low 10.0 is greater"),
        ({"ops": [{"op": "rotate", "degrees": [0, 400]}]}, "ops[0].degrees: 400 is above"),
        ({"ops": [{"op": "rotate", "degrees": "big"}]}, "ops[0].degrees: expected a number"),
        ({"ops": [{"op": "hflip", "p": 1.5}]}, "ops[0].p: 1.5 is above"),
        ({"ops": [{"op": "hflip", "p": True}]}, "ops[0].p: expected a finite number"),
        ({"ops": [{"p": 0.5}]}, "ops[0].op: missing required field"),
        ({"ops": {"op": "hflip"}}, "ops: expected an array"),
        ({"variants": -1}, "variants: -1 is below"),
        ({"variants": 2.5}, "variants: expected an integer"),
        ({"resize": "stretch"}, "resize: 'stretch' is not one of"),
        ({"include_original": "yes"}, "include_original: expected true or false"),
        ({"variants": 0, "include_original": False}, "variants: 0 variants"),
        ({"varients": 3}, "varients: unknown field"),
    ],
)
def test_bad_recipes_name_file_and_field(data, field):
    with pytest.raises(ConfigError) as e:
        parse_recipe(data, "r.toml")
    assert str(e.value).startswith(f"r.toml: {field}")


def test_toml_syntax_error_names_the_file(tmp_path):
    p = tmp_path / "broken.toml"
    p.write_text("variants = = 3\n")
    with pytest.raises(ConfigError, match="broken.toml: invalid TOML"):
        load_recipe(p)
    with pytest.raises(ConfigError, match="cannot read"):
        load_recipe(tmp_path / "missing.toml")


def test_shipped_recipes_load_by_name(tmp_path, monkeypatch):
    from edgeaug.config.recipe import list_recipes, recipe_path

    names = [p.stem for p in list_recipes()]
    assert {"default", "detection"} <= set(names)
    assert load_recipe("detection") == load_recipe(recipe_path("detection")) and load_recipe("detection").variants == 8
    assert load_recipe("default") == load_recipe()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "detection").write_text("variants = 1\ninclude_original = true\n")  # a file by that name wins
    assert load_recipe("detection").variants == 1
    with pytest.raises(ConfigError, match=r"unknown recipe 'detecton': not a file and not one of .*default, detection"):
        load_recipe("detecton")
