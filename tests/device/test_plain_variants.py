"""Serving a subset of variants: ``Pack.batches(variants=)`` and ``Pack.plain_variants`` (close_mosaic)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeaug.device.format import FormatError
from edgeaug.device.loader import Pack
from edgeaug.device.manifest import validate_manifest

RECIPE = """variants = 4
plain_variants = 2
[[ops]]
op = "mixup"
[[ops]]
op = "hflip"
p = 0.5
"""


@pytest.fixture(scope="module")
def plain_pack(shapes_dir, tmp_path_factory):
    """A classification pack whose recipe mixes every variant but the last two (3 and 4)."""
    from edgeaug.builder.pipeline import build

    d = tmp_path_factory.mktemp("plain")
    (d / "r.toml").write_text(RECIPE)
    build(shapes_dir, d / "p.lmdb", "rpi4", recipe=d / "r.toml", seed=7, workers=1, val=0.25)
    return d / "p.lmdb"


def _mixed(rec) -> bool:
    """Whether the record's multi-image stage (its first op) fired."""
    return bool(rec["params"]["ops"][0].get("on"))


def test_plain_variants_come_from_the_recipe(plain_pack, small_pack):
    with Pack(str(plain_pack)) as p:
        assert p.plain_variants == (3, 4)
    with Pack(str(small_pack)) as p:  # a recipe without plain_variants marks none
        assert p.plain_variants == ()


def test_serving_only_plain_variants_serves_no_mixed_record(plain_pack):
    with Pack(str(plain_pack)) as p:
        variants = [p.record(i)["variant"] for i in range(len(p))]
        assert {v for v in variants} == {0, 1, 2, 3, 4}
        assert any(_mixed(p.record(i)) for i in range(len(p)) if variants[i] in (1, 2))  # mixing is on elsewhere
        seen = set()
        for epoch in range(4):
            order = p.epoch_order(epoch, variants=p.plain_variants)
            recs = [p.record(int(i)) for i in order]
            assert sorted(r["source"] for r in recs) == sorted(set(r["source"] for r in recs))  # each source once
            assert len(recs) == p.sources
            assert all(r["variant"] in (3, 4) and not _mixed(r) for r in recs)
            seen |= {(r["source"], r["variant"]) for r in recs}
            served = np.concatenate([idx for *_, idx in p.batches(5, epoch=epoch, variants=[3, 4], with_index=True)])
            assert np.array_equal(served, order)  # batches serve the same epoch
        assert len(seen) == 2 * p.sources  # over two cycles every plain record is served
        every = p.epoch_order(0, shuffle=False, all_variants=True, variants=p.plain_variants)
        assert [variants[i] for i in every] == [3, 4] * p.sources


def test_variant_sets_are_deterministic_and_none_is_unchanged(plain_pack):
    with Pack(str(plain_pack)) as a, Pack(str(plain_pack)) as b:
        for e in range(3):
            assert np.array_equal(a.epoch_order(e, variants=(2,)), b.epoch_order(e, variants=np.array([2])))
            assert np.array_equal(a.epoch_order(e), a.epoch_order(e, variants=None))
        only_two = a.epoch_order(1, shuffle=False, variants=[2])
        assert [a.record(int(i))["variant"] for i in only_two] == [2] * a.sources


@pytest.mark.parametrize(
    "variants, message",
    [
        ((), "variants is empty"),
        ([9], r"no record of split train has a variant in \[9\]"),
        ([-1], "-1 is not a variant index"),
        ([True], "True is not a variant index"),
        ("3", "must be a sequence"),
    ],
)
def test_bad_variant_sets_are_clear_errors(plain_pack, variants, message):
    with Pack(str(plain_pack)) as p:
        with pytest.raises(ValueError, match=message):
            next(p.batches(4, variants=variants))


def test_the_val_split_has_no_plain_variant(plain_pack):
    with Pack(str(plain_pack), split="val") as p:  # val sources store only their original (variant 0)
        with pytest.raises(ValueError, match=r"no record of split val has a variant in \[3, 4\]"):
            p.epoch_order(0, variants=p.plain_variants)


def test_manifest_plain_variants_is_validated(plain_pack):
    with Pack(str(plain_pack)) as p:
        m = json.loads(json.dumps(p.manifest))
    validate_manifest(m)
    for bad, what in ((5, "outside"), (-1, "outside"), ("2", "expected int"), (True, "expected int")):
        m["recipe"]["plain_variants"] = bad
        with pytest.raises(FormatError, match=f"manifest: recipe.plain_variants: .*{what}"):
            validate_manifest(m)


def test_loader_info_lists_the_plain_variants(plain_pack, capsys):
    from edgeaug.device import loader

    assert loader.main(["info", str(plain_pack)]) == 0
    assert json.loads(capsys.readouterr().out)["plain_variants"] == [3, 4]


def test_inspect_names_the_plain_variants(plain_pack, small_pack):
    from typer.testing import CliRunner

    from edgeaug.cli import app

    shown = CliRunner().invoke(app, ["inspect", str(plain_pack)])
    assert shown.exit_code == 0 and "plain (no multi-image op): variants 3..4" in shown.output
    assert "plain (no multi-image op)" not in CliRunner().invoke(app, ["inspect", str(small_pack)]).output
