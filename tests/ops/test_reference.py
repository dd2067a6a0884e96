"""Domain ops from a folder of reference images: histogram_match and fda."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeaug.builder.augment import Augmenter, Labels, record_rng
from edgeaug.builder.manifest import plan_fingerprint
from edgeaug.config.fields import ConfigError
from edgeaug.config.recipe import load_recipe, parse_recipe
from edgeaug.config.targets import load_target
from edgeaug.ops.reference import _CACHE
from edgeaug.sources.scan import scan

OPS_UNDER_TEST = ("histogram_match", "fda")


def write_refs(folder: Path, n: int = 3, seed: int = 0) -> Path:
    """Dark, bluish "device captures" with texture, as PNG files."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = rng.normal(60 + 20 * i, 25, (90, 120, 3))
        img[..., 0] += 60  # BGR: blue up
        cv2.imwrite(str(folder / f"cap{i}.png"), np.clip(img, 0, 255).astype(np.uint8))
    return folder


@pytest.fixture()
def recipe_dir(tmp_path):
    write_refs(tmp_path / "captures")
    return tmp_path


def image(h=96, w=128, seed=1):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 / w, y * 255 / h, 255 - x * 255 / w], -1) + rng.normal(0, 10, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def recipe(base: Path, name: str, **kw):
    return parse_recipe({"ops": [{"op": name, "reference": "captures", **kw}]}, "r.toml", base=base)


@pytest.mark.parametrize("name", OPS_UNDER_TEST)
def test_params_pick_a_pinned_reference_and_the_output_is_deterministic(name, recipe_dir):
    r = recipe(recipe_dir, name)
    d = r.to_dict()["ops"][0]
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((recipe_dir / "captures").glob("*.png"))]
    assert d["reference"] == "captures" and d["files"] == [[f"cap{i}.png", h] for i, h in enumerate(digests)]
    aug = Augmenter(r, load_target("rpi4"))
    outs, picked = set(), set()
    for seed in range(6):
        params = aug.sample(record_rng(seed, (1,), 1), (128, 96))
        p = params[0]
        assert p["name"] == d["files"][p["index"]][0]
        picked.add(p["name"])
        out, _ = aug.render(image(), Labels(), params, (128, 96))
        _CACHE.clear()  # a fresh worker: decoded again, same bytes
        again, _ = aug.render(image(), Labels(), params, (128, 96))
        assert out.tobytes() == again.tobytes()
        outs.add(out.tobytes())
    assert len(picked) > 1 and len(outs) > 1


@pytest.mark.parametrize("name", OPS_UNDER_TEST)
def test_the_image_moves_towards_the_reference(name, recipe_dir):
    op = recipe(recipe_dir, name, strength=1.0).ops[0].build()
    img = image()
    p = {**op.sample(np.random.default_rng(0), (128, 96)), "strength": 1.0}
    p["index"], p["name"] = 0, "cap0.png"
    if name == "fda":
        p["beta"] = 0.1
    out, _ = op.apply(img, None, p)
    import cv2

    ref = cv2.cvtColor(cv2.imread(str(recipe_dir / "captures" / "cap0.png")), cv2.COLOR_BGR2RGB)
    before = np.abs(img.mean((0, 1)) - ref.mean((0, 1))).sum()
    after = np.abs(out.mean((0, 1)) - ref.mean((0, 1))).sum()
    assert after < 0.2 * before  # the channel means (the 0-frequency amplitudes) become the reference's
    zero, _ = op.apply(img, None, {**p, "strength": 0.0})
    assert zero.tobytes() == img.tobytes()


def test_fda_matches_the_papers_definition(recipe_dir):
    """Full-spectrum numpy FFT: low-frequency amplitudes mixed, phase kept (within float32 rounding)."""
    import cv2

    op = recipe(recipe_dir, "fda").ops[0].build()
    img, b, s = image(), 0.05, 0.7
    out, _ = op.apply(img, None, {"index": 2, "name": "cap2.png", "beta": b, "strength": s})
    ref = cv2.cvtColor(cv2.imread(str(recipe_dir / "captures" / "cap2.png")), cv2.COLOR_BGR2RGB)
    ref = cv2.resize(ref, (128, 96), interpolation=cv2.INTER_AREA).astype(np.float64)
    f = np.fft.fft2(img.astype(np.float64), axes=(0, 1))
    k = int(b * 96)
    win = np.zeros((96, 128), bool)
    win[np.ix_(np.r_[0 : k + 1, 96 - k : 96], np.r_[0 : k + 1, 128 - k : 128])] = True
    amp = np.where(win[..., None], (1 - s) * np.abs(f) + s * np.abs(np.fft.fft2(ref, axes=(0, 1))), np.abs(f))
    want = np.clip(np.rint(np.fft.ifft2(amp * np.exp(1j * np.angle(f)), axes=(0, 1)).real), 0, 255)
    assert np.abs(want - out).max() <= 1


@pytest.mark.parametrize("name", OPS_UNDER_TEST)
def test_the_fingerprint_follows_the_reference_files(name, recipe_dir, shapes_dir):
    sset = scan(shapes_dir)
    tasks = []  # the fingerprint's recipe part is what changes

    def fp():
        r = recipe(recipe_dir, name)
        return plan_fingerprint(sset, tasks, r, load_target("rpi4"), 0, 0.25)

    first = fp()
    assert fp() == first
    write_refs(recipe_dir / "captures", n=1, seed=9)  # cap0.png's content changes
    assert fp() != first


@pytest.mark.parametrize(
    "setup, match",
    [
        (lambda d: None, "r.toml: ops\\[0\\].reference: 'nowhere': no such folder"),
        (lambda d: (d / "nowhere").mkdir(), "ops\\[0\\].reference: .*nowhere: no images"),
        (lambda d: (d / "nowhere").mkdir() or (d / "nowhere" / "bad.jpg").write_bytes(b"junk"), "bad.jpg: not a"),
    ],
)
def test_bad_folders_name_the_field_and_file(setup, match, tmp_path):
    setup(tmp_path)
    with pytest.raises(ConfigError, match=match):
        parse_recipe({"ops": [{"op": "fda", "reference": "nowhere"}]}, "r.toml", base=tmp_path)


def test_a_pinned_list_that_differs_names_the_file(recipe_dir):
    d = recipe(recipe_dir, "histogram_match").to_dict()["ops"][0]
    (recipe_dir / "captures" / "cap1.png").write_bytes((recipe_dir / "captures" / "cap2.png").read_bytes())
    with pytest.raises(ConfigError, match=r"ops\[0\].reference: .*cap1.png changed"):
        parse_recipe({"ops": [d]}, "manifest.recipe", base=(recipe_dir,))


def test_build_is_identical_across_workers_and_verify_checks_the_folder(recipe_dir, shapes_dir, tmp_path):
    from edgeaug.builder.pipeline import build
    from edgeaug.verify import verify_pack

    body = 'variants = 2\n[[ops]]\nop = "fda"\nreference = "captures"\n[[ops]]\nop = "histogram_match"\np = 0.5\n'
    body += 'reference = "captures"\n'
    (recipe_dir / "dom.toml").write_text(body)
    rcp = load_recipe(recipe_dir / "dom.toml")
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"p{workers}.lmdb"
        build(shapes_dir, out, load_target("rpi-zero2w"), rcp, seed=3, workers=workers, val=0.25)
        outs.append(hashlib.sha256(out.read_bytes()).hexdigest())
    assert outs[0] == outs[1]
    rep = verify_pack(tmp_path / "p1.lmdb", shapes_dir, sample=6, recipe_dir=recipe_dir)
    assert rep.ok and rep.regenerated == 6, rep.summary()
    with pytest.raises(ConfigError, match="no such folder"):  # neither SOURCE's folder nor --recipe-dir
        verify_pack(tmp_path / "p1.lmdb", shapes_dir, sample=2)
    moved = tmp_path / "moved"
    shutil.copytree(recipe_dir / "captures", moved / "captures")
    write_refs(moved / "captures", n=1, seed=4)
    with pytest.raises(ConfigError, match="cap0.png changed"):
        verify_pack(tmp_path / "p1.lmdb", shapes_dir, sample=2, recipe_dir=moved)


def test_a_pack_may_not_point_the_folder_outside(recipe_dir, tmp_path):
    d = recipe(recipe_dir, "fda").to_dict()["ops"][0]
    for bad, match in ((str(recipe_dir / "captures"), "relative path inside"), ("../captures", "relative path")):
        with pytest.raises(ConfigError, match=match):
            parse_recipe({"ops": [{**d, "reference": bad}]}, "manifest.recipe", base=(tmp_path / "inner",))
