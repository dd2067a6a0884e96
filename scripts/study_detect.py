"""Detection half of study_augment.py: digits pasted on real photographs, a tiny CenterNet, mAP@0.5.

Data: 96x96 crops of scikit-image's sample photographs (procedural textures
when scikit-image is missing), each with 1-3 real digits (scikit-learn's
scans, upscaled to 14-34 px, random colour) pasted with their strokes as
alpha; one class, boxes = the strokes' extent.  Train and val use different
photographs and different digits.  Packs are 64x64 RGB.

Conditions, one recipe: the shipped ``ultralytics`` recipe (Ultralytics'
default detection augmentation: mosaic 1.0, then affine scale 0.5 and
translate 0.1, hsv, fliplr 0.5; ``min_visibility`` 0.1), built for the
study's 64x64 target (its mosaic and affine params are fractions of the
output, so they carry over), without its ``mosaic`` op where a row says so:

* ``none``; ``offline K=8, no mosaic``;
* ``online with mosaic (Ultralytics-like)``: the whole recipe, the builder's
  canvas mosaic included, drawn fresh per (epoch, sample) through
  ``Augmentation.online`` with the train scenes as its partner pool; the
  recipe has ``variants`` = epochs and ``plain_variants`` = the close_mosaic
  epochs, so epoch ``e`` is variant ``1 + e`` and the last epochs are plain;
* ``online + batch mosaic``: a fresh draw per (epoch, sample) of the recipe
  without its mosaic (no pack, so the device's batch mosaic is called
  directly: ``edgeaug.device.online_mix``, p = 1.0, quadrant crops of four
  records of the batch), with ``close_mosaic`` (no mosaic in the last ~15%
  of epochs);
* ``offline K=8 + online batch mosaic``: ``Pack.batches(mosaic=1.0,
  with_labels=True)``, the same close_mosaic;
* ``offline K=8 with mosaic`` (+ online batch mosaic): the builder's canvas
  ``mosaic`` op in every variant but the last (``plain_variants = 1``);
  close_mosaic serves only that plain variant in the last epochs
  (read by record index).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
from study_common import build_pack, digits_split, folder_mb, write_target
from study_detector import OUT, STRIDE, average_precision, heat_targets, iou, train_detector  # noqa: F401

SRC, BATCH = 96, 32
DIGIT = (14, 34)  # pasted digit sizes in px at OUT = 64; --det-size scales them and SRC with the frame
CLOSE_MOSAIC = 0.15  # the share of the last epochs without mosaic (Ultralytics: 10 of 100)
TRAIN_BG = ["astronaut", "coffee", "chelsea", "rocket", "brick", "grass", "camera", "page"]
VAL_BG = ["gravel", "coins", "hubble_deep_field", "immunohistochemistry", "text", "moon"]


def ultralytics() -> dict:
    """The shipped ``ultralytics`` recipe as a plain dict (mosaic first, then affine, hsv, fliplr)."""
    import tomllib

    from edgeaug.config.recipe import RECIPE_DIR

    return tomllib.loads((RECIPE_DIR / "ultralytics.toml").read_text())


def recipe(k: int, mosaic: bool = False, plain: int = 1, tiles: str = "corner") -> dict:
    """The study's recipe with ``k`` variants (0: the originals); without ``mosaic`` its mosaic op is dropped.

    With the mosaic, the last ``plain`` variants of each source are plain (``plain_variants``: close_mosaic);
    ``tiles``: the mosaic op's ``windows`` (``corner``: Ultralytics'; ``boxes``: slid to cut the fewest boxes).
    """
    base = ultralytics()
    ops = [op for op in base["ops"] if mosaic or op["op"] != "mosaic"]
    ops = [{**op, "windows": tiles} if op["op"] == "mosaic" else op for op in ops]
    return {**base, "variants": k, "include_original": k == 0, "plain_variants": plain if mosaic else 0, "ops": ops}


def close_epochs(epochs: int) -> int:
    """How many last epochs run without mosaic (close_mosaic): ``CLOSE_MOSAIC`` of them, at least one."""
    return max(1, round(CLOSE_MOSAIC * epochs)) if epochs > 1 else 0


# --- data ------------------------------------------------------------------------------


def backgrounds(names: List[str], seed: int) -> List[np.ndarray]:
    """RGB uint8 photographs from scikit-image, or seeded procedural textures without it."""
    out = []
    try:
        import skimage.data as d
    except ImportError:
        d = None
    for i, n in enumerate(names):
        try:
            img = np.asarray(getattr(d, n)())
        except Exception:  # scikit-image missing, or a sample that needs a download
            img = _texture(np.random.default_rng([seed, i]))
        if img.dtype != np.uint8:
            img = np.clip(img / max(float(img.max()), 1e-9) * 255, 0, 255).astype(np.uint8)
        out.append(np.repeat(img[:, :, None], 3, 2) if img.ndim == 2 else img[:, :, :3])
    return out


def _texture(rng: np.random.Generator) -> np.ndarray:
    import cv2

    noise = rng.random((24, 24, 3)).astype(np.float32)
    return (cv2.resize(noise, (256, 256), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).astype(np.uint8)


def scaled(out: int) -> Tuple[int, int, int]:
    """(scene size, min digit px, max digit px) for an ``out`` x ``out`` frame: 96, 14, 34 at 64, in proportion."""
    f = out / OUT
    return int(round(SRC * f)), int(round(DIGIT[0] * f)), int(round(DIGIT[1] * f))


def scene(
    bg: np.ndarray, digits: List[np.ndarray], rng: np.random.Generator, out: int = OUT
) -> Tuple[np.ndarray, List[List[float]]]:
    """One scene (96 px at ``out`` = 64): a crop of ``bg`` with 1-3 digits; boxes ``[0, x0, y0, x1, y1]``."""
    import cv2

    src, lo_px, hi_px = scaled(out)
    lo = min(1.0, src / min(bg.shape[:2]))  # a crop of at least src pixels, up to 60% of the photo
    s = rng.uniform(lo, max(lo, 0.6))
    crop = int(round(min(bg.shape[:2]) * s))
    y, x = rng.integers(0, bg.shape[0] - crop + 1), rng.integers(0, bg.shape[1] - crop + 1)
    img = cv2.resize(bg[y : y + crop, x : x + crop], (src, src), interpolation=cv2.INTER_AREA).astype(np.float32)
    boxes = []
    for _ in range(int(rng.integers(1, 4))):
        d = digits[int(rng.integers(len(digits)))]
        size = int(rng.integers(lo_px, hi_px + 1))
        a = cv2.resize(d.astype(np.float32) / 255, (size, size), interpolation=cv2.INTER_LINEAR).clip(0, 1)
        px, py = (int(v) for v in rng.integers(0, src - size, 2))
        colour = rng.integers(0, 256, 3).astype(np.float32)
        region = img[py : py + size, px : px + size]
        region[:] = region * (1 - a[:, :, None]) + colour * a[:, :, None]
        ys, xs = np.nonzero(a > 0.25)
        boxes.append([0, px + xs.min(), py + ys.min(), px + xs.max() + 1, py + ys.max() + 1])
    return np.rint(img).astype(np.uint8), [[float(v) for v in b] for b in boxes]


def make_split(
    root: Path, bgs, digits, n: int, seed: int, out: int = OUT
) -> List[Tuple[str, np.ndarray, List[List[float]]]]:
    """``n`` scenes for ``out`` x ``out`` frames; written as PNGs with a JSONL manifest when ``root`` is given."""
    import cv2

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        img, boxes = scene(bgs[i % len(bgs)], digits, rng, out)
        rows.append((f"{i:04d}.png", img, boxes))
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
        for rel, img, _ in rows:
            cv2.imwrite(str(root / rel), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        lines = [json.dumps({"path": rel, "label": "digit", "boxes": b}) for rel, _, b in rows]
        (root / "set.jsonl").write_text("\n".join(lines) + "\n")
    return rows


# --- conditions ---------------------------------------------------------------------------


class DetCondition:
    """Batches of (x uint8 NHWC, [boxes (n, 5) per row]) for an epoch.

    ``mosaic``: the device's batch mosaic (p = 1.0); ``plain``: the pack's last
    variant is plain (its recipe's ``plain_variants``), served alone in the
    close_mosaic epochs; ``windows``: the batch mosaic's windows, ``centre``
    or ``boxes`` (``Pack.batches(mosaic_windows=)``: placed to cut the fewest boxes).
    """

    def __init__(
        self, name: str, pack: Optional[Path] = None, mosaic: bool = False, plain: bool = False, windows: str = "centre"
    ) -> None:
        self.name, self.pack, self.mosaic, self.plain, self.windows = name, pack, mosaic, plain, windows
        self.online = None  # (make(epochs) -> Augmentation, train rows, PartnerPool or None)
        self.epochs = 0  # set by the trainer: close_mosaic needs the total (0: never close)
        self._plain_recs: Optional[List[int]] = None
        self._augs: Dict[int, Any] = {}

    def closed(self, epoch: int) -> bool:
        """close_mosaic: no mosaic (batch or builder) in the last ``CLOSE_MOSAIC`` of the epochs."""
        return self.epochs > 1 and epoch >= self.epochs - close_epochs(self.epochs)

    def batches(self, seed: int, epoch: int) -> Iterator[Tuple[np.ndarray, List[np.ndarray]]]:
        close = self.closed(epoch)
        if self.online is not None:
            yield from self._online(seed, epoch, self.mosaic and not close)
            return
        from edgeaug.device.loader import Pack

        with Pack(str(self.pack), "train", seed=seed) as p:
            if self.plain and close:
                yield from self._plain_batches(p, seed, epoch)
                return
            mosaic = 1.0 if self.mosaic and not close else 0.0
            for x, _, labs in p.batches(
                BATCH, epoch=epoch, mosaic=mosaic, with_labels=True, mosaic_windows=self.windows
            ):
                yield x, [lab["boxes"].reshape(-1, 5) for lab in labs]

    def _plain_batches(self, p, seed: int, epoch: int) -> Iterator[Tuple[np.ndarray, List[np.ndarray]]]:
        """The plain variants only (the highest of each source), read by record index."""
        if self._plain_recs is None:  # the highest variant of each source (variants 1..K, no original)
            last: Dict[int, Tuple[int, int]] = {}
            for i in range(len(p)):
                r = p.record(i)
                if r["variant"] > last.get(r["source"], (-1, -1))[0]:
                    last[r["source"]] = (r["variant"], i)
            self._plain_recs = sorted(i for _, i in last.values())
        order = np.array(self._plain_recs)[np.random.default_rng([seed, epoch]).permutation(len(self._plain_recs))]
        for b in range(0, len(order), BATCH):
            recs = [p.record(int(i)) for i in order[b : b + BATCH]]
            yield np.stack([r["x"] for r in recs]), [np.asarray(r["boxes"], np.float32).reshape(-1, 5) for r in recs]

    def _online(self, seed: int, epoch: int, mosaic: bool) -> Iterator[Tuple[np.ndarray, List[np.ndarray]]]:
        """Fresh draws in-process; without a pack the device's batch mosaic functions are called directly."""
        from edgeaug.device.online_mix import mix_batch, mix_rng, plan_mix
        from edgeaug.device.online_mix_fit import fit_windows
        from edgeaug.device.online_mix_labels import mix_labels

        make, rows, pool = self.online
        if self.epochs not in self._augs:  # the builder-mosaic recipe's plain variants depend on the epoch count
            self._augs[self.epochs] = make(self.epochs)
        aug = self._augs[self.epochs]
        order = np.random.default_rng([seed, epoch]).permutation(len(rows))
        for b in range(0, len(order), BATCH):
            outs = [
                aug.online(rows[i][1], epoch, {"boxes": rows[i][2]}, source=rows[i][0], partners=pool)
                for i in order[b : b + BATCH]
            ]
            x, boxes = np.stack([o[0] for o in outs]), [o[1].boxes.reshape(-1, 5) for o in outs]
            if not mosaic:
                yield x, boxes
                continue
            plan = plan_mix(mix_rng(seed, epoch, b // BATCH), len(x), x.shape[1], x.shape[2], mosaic=1.0)
            if self.windows == "boxes":
                fit_windows(plan, boxes)
            labs = mix_labels([{"boxes": bx} for bx in boxes], plan, min_visibility=0.1)
            yield mix_batch(x, "NHWC", plan), [la["boxes"].reshape(-1, 5) for la in labs]

    def epoch_seconds(self) -> float:
        """Wall seconds of the data path alone for epoch 0 (a mosaic epoch for the mosaic rows)."""
        t0 = time.perf_counter()
        for _ in self.batches(0, 0):
            pass
        return time.perf_counter() - t0


def online_conditions(rows, target: Path, windows: str = "centre", tiles: str = "corner") -> List[DetCondition]:
    """The two online rows: the builder's mosaic drawn fresh per epoch (Ultralytics-like), and the batch mosaic.

    The first renders variant ``1 + e`` of a recipe with ``epochs`` variants whose last ``close_epochs`` are
    plain (close_mosaic), partners drawn among the train scenes in the JSONL's order, as the packs' builds do.
    """
    from edgeaug.augment import Augmentation, PartnerPool

    pool = PartnerPool([(rel, img, {"boxes": b}, 0) for rel, img, b in rows])
    ultra = DetCondition(f"online with mosaic (Ultralytics-like){_tiles(tiles)}, close_mosaic")
    ultra.online = (
        lambda e: Augmentation(recipe(max(e, 1), True, close_epochs(e), tiles), str(target), seed=0),
        rows,
        pool,
    )
    batch = DetCondition(f"online + batch mosaic 1.0{_tag(windows)}, close_mosaic", mosaic=True, windows=windows)
    batch.online = (lambda e: Augmentation(recipe(1), str(target), seed=0), rows, None)
    return [ultra, batch]


def _tag(windows: str) -> str:
    return " (box-aware windows)" if windows == "boxes" else ""


def _tiles(tiles: str) -> str:
    return " with box-aware tiles" if tiles == "boxes" else ""


def det_conditions(
    work: Path, data: Path, rows, target: Path, windows: str = "centre", tiles: str = "corner"
) -> List[DetCondition]:
    """The study's rows; ``windows``: the device batch mosaic's (``centre`` or ``boxes``); ``tiles``: the builder's."""
    t, m = _tag(windows), _tiles(tiles)
    conds = [DetCondition("none (originals)", build_pack(work, data / "set.jsonl", "k0", recipe(0), target)[0])]
    conds += online_conditions(rows, target, windows, tiles)
    k8 = build_pack(work, data / "set.jsonl", "k8", recipe(8), target)[0]
    conds += [
        DetCondition("offline K=8, no mosaic", k8),
        DetCondition(f"offline K=8 + online batch mosaic{t}", k8, True, windows=windows),
    ]
    name = "k8m" if tiles == "corner" else "k8m-" + tiles  # --work reuses packs by name
    k8m = build_pack(work, data / "set.jsonl", name, recipe(8, True, tiles=tiles), target)[0]
    conds.append(DetCondition(f"offline K=8 with mosaic{m}", k8m, plain=True))
    conds.append(DetCondition(f"offline K=8 with mosaic{m} + online batch mosaic{t}", k8m, True, True, windows))
    return conds


# --- the study ------------------------------------------------------------------------------


def detection(
    work: Path,
    quick: bool,
    seeds: int,
    epochs: int = 30,
    size: int = OUT,
    windows: str = "centre",
    only: Optional[List[str]] = None,
    tiles: str = "corner",
) -> Dict[str, Any]:
    """The detection table for ``size`` x ``size`` frames (scenes and digit sizes scale with it; default 64).

    ``windows``: the device batch mosaic's windows; ``only``: train just the rows whose name holds one of these;
    ``tiles``: the builder mosaic's ``windows`` option.
    """
    from edgeaug.augment import Augmentation

    work.mkdir(parents=True, exist_ok=True)
    train_d, val_d = digits_split()
    n_train, n_val = (120, 60) if quick else (480, 200)
    data = work / "scenes"
    rows = make_split(
        None if (data / "set.jsonl").exists() else data,
        backgrounds(TRAIN_BG, 1),
        [r[1] for r in train_d],
        n_train,
        11,
        size,
    )
    val = make_split(None, backgrounds(VAL_BG, 2), [r[1] for r in val_d], n_val, 12, size)
    target = write_target(work, size, "RGB")
    conds = det_conditions(work, data, rows, target, windows, tiles)
    if only:
        conds = [c for c in conds if any(o in c.name for o in only)]
    aug0 = Augmentation(recipe(0), str(target), seed=0)
    rendered = [aug0.record(img, {"boxes": b}, source=f"val/{rel}", variant=0) for rel, img, b in val]
    xv, gts = np.stack([r[0] for r in rendered]), [r[1].boxes[:, 1:5] for r in rendered]
    try:
        import torch  # noqa: F401

        why = "needs PyTorch (pip install edgeaug[study]); --quick never trains the detector" if quick else ""
    except ImportError:
        why = "needs PyTorch (pip install edgeaug[study])"
    out = []
    for c in conds:
        row: Dict[str, Any] = {"condition": c.name}
        row.update(storage_mb=c.pack.stat().st_size / 1e6 if c.pack else folder_mb(data), epoch_s=c.epoch_seconds())
        row["storage"] = "pack" if c.pack else "sources"
        if why:
            row["skipped"] = why
        else:
            t0 = time.monotonic()
            aps = [average_precision(train_detector(c, s, epochs, size)(xv), gts) for s in range(seeds)]
            row.update(accs=aps, mean=float(np.mean(aps)), sd=float(np.std(aps, ddof=1)) if seeds > 1 else 0.0)
            print(
                f"  {c.name}: mAP@0.5 {row['mean']:.3f} +- {row['sd']:.3f} ({time.monotonic() - t0:.0f}s)",
                file=sys.stderr,
            )
        out.append(row)
    return {"task": "detection", "model": "CenterNet-style CNN (PyTorch)", "epochs": epochs, "seeds": seeds,
            "train": n_train, "val": n_val, "size": size, "rows": out}  # fmt: skip
