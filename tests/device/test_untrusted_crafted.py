"""Untrusted packs, crafted: manifests and indexes re-signed like an attacker would.  A clear PackError.

The packs (``packs``) are built once in tests/device/conftest.py; each crafted file is read in a child
process by every backend (tests/pack_probe.py).
"""

import shutil

import numpy as np
import pytest
from craft_manifest import drop_field as _drop
from craft_manifest import set_field as _set
from pack_probe import BACKENDS, assert_no_crash, craft, probe

from edgeaug.device import format as F
from edgeaug.device.loader import Pack, PackError

MANIFEST_CRAFTS = {
    "not-an-object": lambda m: [1, 2, 3],
    "a-string": lambda m: "manifest",
    "null": lambda m: None,
    "not-json": lambda m: b"{this is not json",
    "not-utf8": lambda m: b'{"a": "\xff\xfe"}',
    "deep-nesting": lambda m: b'{"x": ' + b"[" * 100000 + b"]" * 100000 + b"}",
    "deep-in-target": lambda m: b'{"format_version": 1, "target": ' + b"[" * 50000 + b"]" * 50000 + b"}",
    "huge-int": lambda m: b'{"format_version": 1, "records": ' + b"9" * 5000 + b"}",
    "nan-records": lambda m: _set(["records"], float("nan"))(m),
    "version-4": _set(["format_version"], 4),
    "version-0": _set(["format_version"], 0),
    "version-string": _set(["format_version"], "1"),
    "version-true": _set(["format_version"], True),
    "records-negative": _set(["records"], -5),
    "records-huge": _set(["records"], 2**40),
    "records-float-inf": _set(["records"], 1e999),
    "records-string": _set(["records"], "28"),
    "records-more-than-index": lambda m: _set(["records"], m["records"] + 1)(m),
    "no-target": _drop(["target"]),
    "target-list": _set(["target"], [224, 224, 3]),
    "height-zero": _set(["target", "height"], 0),
    "height-negative": _set(["target", "height"], -96),
    "height-huge": _set(["target", "height"], 10**12),
    "height-float": _set(["target", "height"], 96.5),
    "channels-9": _set(["target", "channels"], 9),
    "dtype-object": _set(["target", "dtype"], "object"),
    "dtype-float64": _set(["target", "dtype"], "float64"),
    "layout-odd": _set(["target", "layout"], "CHWN"),
    "device-list": _set(["target", "device"], ["x"]),
    "shape-mismatch": _set(["target", "height"], 95),
    "splits-missing": _drop(["splits"]),
    "split-negative-count": _set(["splits", "val", "count"], -1),
    "split-beyond": _set(["splits", "val", "start"], 10**6),
    "split-string": _set(["splits", "train"], "all"),
    "classes-dict": _set(["classes"], {"a": 1}),
    "classes-ints": _set(["classes"], [1, 2]),
    "seed-negative": _set(["seed"], -1),
    "seed-float": _set(["seed"], 1.5),
    "seed-list": _set(["seed"], [1]),
    "sources-not-list": _set(["sources"], {"0": "x"}),
    "sources-empty": _set(["sources"], []),
    "source-escapes": lambda m: _set(["sources", 0, "path"], "../../etc/passwd")(m),
    "source-absolute": lambda m: _set(["sources", 0, "path"], "/etc/passwd")(m),
    "source-nul": lambda m: _set(["sources", 0, "path"], "a\u0000b.png")(m),
    "source-label-str": lambda m: _set(["sources", 0, "label"], "cat")(m),
    "recipe-list": _set(["recipe"], []),
    "recipe-ops-str": _set(["recipe", "ops"], "hflip"),
    "skipped-str": _set(["skipped"], "none"),
    "fingerprint-int": _set(["fingerprint"], 5),
    # fields the online flip/shift reads (the border's fill value, keypoint pairs)
    "scale-missing": _drop(["target", "scale"]),
    "scale-zero": _set(["target", "scale"], 0),
    "scale-string": _set(["target", "scale"], "1/255"),
    "zero-point-out-of-range": _set(["target", "zero_point"], 300),
    "std-zero": lambda m: _set(["target", "std"], [0.0] * m["target"]["channels"])(m),
    "mean-too-few": _set(["target", "mean"], []),
    "mean-wrong-length": lambda m: _set(["target", "mean"], [0.0] * (m["target"]["channels"] + 1))(m),
    "fill-300": _set(["recipe", "fill"], 300),
    "min-visibility-2": _set(["recipe", "min_visibility"], 2),
    "flip-idx-out-of-range": _set(["keypoint_flip_idx"], [0, 5]),
    "flip-idx-strings": _set(["keypoint_flip_idx"], ["left", "right"]),
    "wrong-fingerprint": None,  # below: not re-signed
}


@pytest.mark.parametrize("which", ["big", "tiny"])
def test_crafted_manifests(packs, tmp_path, which):
    files = {}
    for name, fn in MANIFEST_CRAFTS.items():
        dst = tmp_path / f"{name}.lmdb"
        if fn is None:
            files[name] = craft(packs[which], dst, _set(["seed"], 99), refingerprint=False)
        else:
            files[name] = craft(packs[which], dst, fn, refingerprint=name != "fingerprint-int")
    for backend in BACKENDS:
        res = probe(list(files.values()), backend)
        assert_no_crash(res, backend)
        for name, path in files.items():
            d = res[str(path)]
            if name == "shape-mismatch":  # a consistent lie: it opens, but no record reads as that shape
                n = len(d["getitem"])
                assert d["open"] == "ok" and n > 0 and n == len(d["record"]) and d["batches"] == "PackError"
                assert len(d["verify"]) > n and d["cli"] == 1, d
            else:
                assert d["open"] == "PackError" and d["cli"] == 2, (backend, name, d)


def test_crafted_index(packs, tmp_path):
    def source_beyond(idx):
        a = np.frombuffer(idx, F.INDEX_DTYPE).copy()
        a["source"][0] = 10**6
        return a.tobytes()

    def split_7(idx):
        a = np.frombuffer(idx, F.INDEX_DTYPE).copy()
        a["split"][0] = 7
        return a.tobytes()

    def out_of_order(idx):
        a = np.frombuffer(idx, F.INDEX_DTYPE).copy()
        a["source"][0], a["source"][-1] = a["source"][-1], a["source"][0]
        return a.tobytes()

    files = {
        n: craft(packs["tiny"], tmp_path / f"{n}.lmdb", index=f)
        for n, f in [
            ("source-beyond", source_beyond),
            ("split-7", split_7),
            ("unordered", out_of_order),
            ("short", lambda idx: idx[:-44]),
            ("odd-size", lambda idx: idx + b"x"),
        ]
    }
    for backend in BACKENDS:
        res = probe(list(files.values()), backend)
        assert_no_crash(res, backend)
        assert all(d["open"] == "PackError" for d in res.values()), res


# --- security: source paths ----------------------------------------------------------


def test_manifest_paths_cannot_leave_the_source_root(packs, tmp_path, shapes_dir):
    """A crafted (re-signed) pack naming ../ or absolute source paths is refused by the loader and verify."""
    from typer.testing import CliRunner

    from edgeaug.cli import app

    secret = shapes_dir.parent / "secret.png"
    shutil.copy(next(shapes_dir.rglob("*.png")), secret)
    for bad in ("../secret.png", str(secret), "circle/../../secret.png"):
        p = craft(packs["big"], tmp_path / "escape.lmdb", _set(["sources", 0, "path"], bad))
        with pytest.raises(PackError, match="not a relative path inside the source root"):
            Pack(str(p))
        r = CliRunner().invoke(app, ["verify", str(p), "--source", str(shapes_dir)])
        assert r.exit_code == 2 and "not a relative path inside the source root" in r.output
    secret.unlink()
