"""Tests of scripts/readme_training.py: the training examples of docs/training.md and the pack they train from."""

import math
import sys

import pytest
from scripts_under_test import load

from edgeaug.loader import Pack

readme_training = load("readme_training")


def test_the_training_page_has_one_pytorch_and_one_keras_example_and_both_are_valid_python():
    blocks = readme_training.examples()
    assert sorted(blocks) == ["tensorflow", "torch"]
    for name, block in blocks.items():
        compile(block, f"docs/training.md {name} example", "exec")
        assert 'Pack("digits.lmdb")' in block


@pytest.fixture(scope="module")
def digits_pack(tmp_path_factory):
    return readme_training.make_pack(tmp_path_factory.mktemp("rt"))


def test_the_examples_pack_has_what_they_assume(digits_pack):
    """NHWC uint8 32x32x1 with a val split, and epochs of ceil(sources / 64) batches (Keras's steps_per_epoch)."""
    pack, val = Pack(str(digits_pack)), Pack(str(digits_pack), split="val")
    t = pack.manifest["target"]
    assert (t["layout"], t["dtype"], t["height"], t["width"], t["channels"]) == ("NHWC", "uint8", 32, 32, 1)
    assert 0 < val.sources < pack.sources
    for epoch in range(3):
        sizes = [len(y) for _, y in pack.batches(64, epoch=epoch, shift=3)]
        assert len(sizes) == math.ceil(pack.sources / 64) and sum(sizes) == pack.sources
    assert sum(len(y) for _, y in val.batches(256, shuffle=False)) == len(val)


def test_a_missing_framework_is_skipped_and_a_failing_block_fails(tmp_path):
    assert readme_training.run(
        "import no_such_framework_here", "no_such_framework_here", sys.executable, tmp_path
    ).startswith("skipped")
    with pytest.raises(SystemExit, match="failed"):
        readme_training.run("raise ValueError('boom')", "json", sys.executable, tmp_path)
    assert readme_training.run("print('done')", "json", sys.executable, tmp_path) == "ok (last line: done)"
