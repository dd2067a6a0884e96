"""`edgeaug ops`: every registered op is listed with its parameters, ranges and options."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from edgeaug.cli import app
from edgeaug.config.recipe import parse_recipe
from edgeaug.ops.registry import OPS

runner = CliRunner()


def test_ops_lists_every_registered_op_with_its_ranges():
    r = runner.invoke(app, ["ops", "--json"])
    assert r.exit_code == 0, r.output
    entries = {e["op"]: e for e in json.loads(r.output)}
    assert set(entries) == set(OPS)
    for name, cls in OPS.items():
        e = entries[name]
        assert set(e["ranges"]) == set(cls.RANGES)
        assert set(e["options"]) == set(cls.OPTIONS)
        for k, (default, bounds) in cls.RANGES.items():
            assert e["ranges"][k]["default"] == list(default)
            assert e["ranges"][k]["bounds"] == list(bounds)


def test_ops_text_names_each_op_and_parameter():
    r = runner.invoke(app, ["ops"])
    assert r.exit_code == 0, r.output
    first = {line.split(" ")[0] for line in r.output.splitlines() if line and not line.startswith(" ")}
    assert first == set(OPS)
    assert "    degrees = [-15, 15]  (allowed -180 .. 180)" in r.output.splitlines()


def test_ops_one_op_and_an_unknown_name():
    r = runner.invoke(app, ["ops", "rotate"])
    assert r.exit_code == 0 and r.output.startswith("rotate (geometric): ")
    r = runner.invoke(app, ["ops", "rotatee"])
    assert r.exit_code == 2 and "no op named 'rotatee'" in r.output


def test_listed_defaults_are_valid_recipe_values():
    """What `edgeaug ops` prints as a default range is accepted by the recipe validator, op by op."""
    for e in json.loads(runner.invoke(app, ["ops", "--json"]).output):
        required = [k for k, o in e["options"].items() if o["default"] is None]
        if required or e["kind"] in ("composite", "multi-image"):
            continue  # needs a file (onnx) or child ops
        table = {"op": e["op"], **{k: r["default"] for k, r in e["ranges"].items()}}
        parse_recipe({"ops": [table]}, "r.toml")
