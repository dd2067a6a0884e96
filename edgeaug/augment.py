"""In-process augmentation: the builder's records, one image at a time, for online training or checks.

:class:`Augmentation` runs the builder's own render path (the same working
image, parameter draws and single warp as :func:`edgeaug.builder.render.render_variant`)
on an image already in memory.  For the same (seed, source identity, variant)
it returns the **same bytes** as the record a build writes, on the same
machine and OpenCV build (OpenCV is not bit-exact across CPU families)::

    aug = Augmentation("my_recipe.toml", "rpi4", seed=0)
    x, labels, params = aug.record(rgb, source="cats/001.jpg", variant=3)   # == record of a build with seed 0

A source's identity is its relative path in the dataset (``source``), as in
a pack's manifest; ``source_key`` takes the four 32-bit words directly.

**Online training** (:meth:`Augmentation.online`) draws a fresh variant per
(epoch, sample): epoch ``e`` uses variant ``first_variant + e`` (default
``first_variant = 1``).  So online training for E epochs sees exactly the
records of a pack built with the same seed and ``variants = E``, one per
source per epoch; every draw still comes from (seed, source, variant) only,
never from a global RNG, worker ids or time.  Pass a large ``first_variant``
(e.g. ``10**6``) to keep online draws apart from a pack's variants.

**Multi-image recipes** (a recipe whose first op is ``mosaic``, ``mixup``,
``cutmix``, ``copy_paste`` ...) also need the record's partner candidates:
pass ``partners=`` (a :class:`PartnerPool`, or the list to make one of), the
sources of the record's split **in the builder's order** (a pack manifest's
order of that split; for a folder or manifest without ``val``, the scan
order).  The record's own source is skipped among them by its ``source``
path, as the builder does, and the partners drawn are the builder's::

    pool = PartnerPool([(rel, rgb, {"boxes": b}) for rel, rgb, b in train_rows])
    x, labels, params = aug.online(rgb, epoch, {"boxes": b}, source=rel, partners=pool)

Only numpy and the config layer load at import; OpenCV loads on first render.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from edgeaug.builder.augment import Augmenter, Labels
from edgeaug.builder.partners import Partner, Partners
from edgeaug.builder.render import load_source, render_variant, working_image
from edgeaug.config.recipe import Recipe, load_recipe, parse_recipe
from edgeaug.config.targets import Target, load_target

__all__ = ["Augmentation", "Labels", "Partner", "PartnerPool", "source_key"]


def source_key(rel: str) -> Tuple[int, ...]:
    """The seed identity of a source named ``rel`` (its dataset-relative POSIX path), as the builder's."""
    d = hashlib.sha256(str(rel).encode("utf-8")).digest()
    return tuple(int.from_bytes(d[i : i + 4], "little") for i in range(0, 16, 4))


class _Key:
    """The attributes of a source that :func:`render_variant` reads: its seed identity and class label."""

    def __init__(self, key: Tuple[int, ...], label: int) -> None:
        self.key, self.label = key, label


def _as_labels(labels: Any) -> Labels:
    """``None``, a :class:`Labels`, or a dict of ``boxes`` (n, 5), ``keypoints`` (n, 3), ``mask`` (h, w)."""
    if labels is None:
        return Labels()
    if isinstance(labels, Labels):
        return labels
    if not isinstance(labels, dict):
        raise TypeError(f"labels: expected None, Labels or a dict, got {type(labels).__name__}")
    unknown = set(labels) - {"boxes", "keypoints", "mask", "flip"}
    if unknown:
        raise ValueError(f"labels: unknown fields {sorted(unknown)} (boxes, keypoints, mask, flip)")
    out = Labels()
    for name, cols in (("boxes", 5), ("keypoints", 3)):
        if labels.get(name) is not None:
            a = np.asarray(labels[name], np.float32)
            if a.size and (a.ndim != 2 or a.shape[1] != cols):
                raise ValueError(f"labels: {name}: expected (n, {cols}), got {a.shape}")
            setattr(out, name, a.reshape(-1, cols))
    if labels.get("mask") is not None:
        out.mask = np.asarray(labels["mask"], np.uint8)
    if labels.get("flip") is not None:
        out.flip = np.asarray(labels["flip"], np.intp)
    return out


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3); a gray (H, W) or (H, W, 1) image is repeated to 3 channels, as the builder decodes it."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"image: expected uint8, got {a.dtype}")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"image: expected (H, W), (H, W, 1) or (H, W, 3), got {a.shape}")
    return np.ascontiguousarray(np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a)


def _as_partner(item: Any, where: str) -> Any:
    """A pool entry: a :class:`Partner` (in memory) or a scanned source with ``path``, ``rel`` and ``label``."""
    if isinstance(item, Partner):
        return Partner(str(item.rel), item.sha256, _as_rgb(item.image), _as_labels(item.labels), int(item.label))
    if isinstance(item, tuple) and len(item) in (3, 4):
        rel, image, labels = item[:3]
        label = int(item[3]) if len(item) == 4 else -1
        try:
            return Partner(str(rel), "", _as_rgb(image), _as_labels(labels), label)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{where} ({rel}): {e}") from None
    if all(hasattr(item, a) for a in ("path", "rel", "label")):
        return item  # read through the builder's own load_source when drawn
    raise TypeError(
        f"{where}: expected (rel, image, labels[, label]), a Partner or a scanned Source, got {type(item).__name__}"
    )


class PartnerPool:
    """The partner candidates of a multi-image recipe: the sources of one split, in the builder's order.

    Each item is an in-memory ``(rel, image, labels)`` or ``(rel, image,
    labels, label)`` tuple (RGB uint8 as displayed, labels as for
    :meth:`Augmentation.record`, ``label`` the class id, default -1), a
    :class:`~edgeaug.builder.partners.Partner` (its ``sha256`` of the file is
    then what the params record, as a build's), or a scanned
    :class:`~edgeaug.sources.base.Source`, which is read, hashed and decoded
    from its file through the builder's own path when drawn.  Tuples record
    an empty ``partner_sha``: the pixels and labels are the builder's, the
    params differ only there.
    """

    def __init__(self, items: Sequence[Any]) -> None:
        self.items = tuple(_as_partner(it, f"partners[{i}]") for i, it in enumerate(items))
        self.position: Dict[str, int] = {}
        for i, it in enumerate(self.items):
            self.position.setdefault(str(it.rel), i)

    def __len__(self) -> int:
        return len(self.items)

    def label(self, rel: Optional[str]) -> int:
        """The class label of the entry named ``rel``; -1 when it is not in the pool."""
        i = self.position.get(rel, -1) if rel is not None else -1
        return int(self.items[i].label) if i >= 0 else -1


class _PoolPartners(Partners):
    """The builder's :class:`Partners` over a pool: in-memory entries are used as they are."""

    def partner(self, k: int) -> Optional[Partner]:
        s = self.source(k)
        return s if isinstance(s, Partner) else super().partner(k)


class Augmentation:
    """The builder's augmentation for one (recipe, target, seed), callable in-process.

    ``recipe``: a :class:`Recipe`, a recipe file or shipped name, or a parsed
    TOML dict; ``target``: a :class:`Target` or a target file or shipped name.
    """

    def __init__(
        self, recipe: Union[Recipe, str, Path, dict, None], target: Union[Target, str, Path], seed: int = 0
    ) -> None:
        if not 0 <= int(seed) < 2**63:
            raise ValueError(f"seed: {seed} must be in [0, 2**63)")
        if isinstance(recipe, dict):
            recipe = parse_recipe(recipe, "<recipe dict>")
        elif not isinstance(recipe, Recipe):
            recipe = load_recipe(recipe)
        self.recipe = recipe
        self.target = target if isinstance(target, Target) else load_target(target)
        self.seed = int(seed)
        self._aug = Augmenter(self.recipe, self.target)

    def _key(self, source: Optional[str], key: Optional[Tuple[int, ...]]) -> Tuple[int, ...]:
        if (source is None) == (key is None):
            raise ValueError("give exactly one of source= (the relative path) or source_key=")
        return source_key(source) if source is not None else tuple(int(k) for k in key)

    def record(
        self,
        image: np.ndarray,
        labels: Any = None,
        source: Optional[str] = None,
        variant: int = 1,
        source_key: Optional[Tuple[int, ...]] = None,
        partners: Union[PartnerPool, Sequence[Any], None] = None,
        label: Optional[int] = None,
    ) -> Tuple[np.ndarray, Labels, List[Dict[str, Any]]]:
        """``(tensor, labels, params)`` of one record: variant 0 is the original (resize only).

        ``image`` is RGB uint8 as displayed (gray is accepted); ``labels`` in
        its pixel coordinates.  ``tensor`` has the target's shape, layout and
        dtype; ``params`` are the plain-JSON draws a pack stores with the record.
        With a multi-image recipe, ``partners`` are the split's candidates
        (:class:`PartnerPool`; the record's own ``source`` among them is
        skipped) and ``label`` the record's class id (default: its pool
        entry's, else -1); a variant that draws partners without them is an error.
        """
        if int(variant) != variant or variant < 0:
            raise ValueError(f"variant: {variant} must be a non-negative integer")
        rgb = _as_rgb(image)
        key = self._key(source, source_key)
        pool = self._pool(partners, int(variant))
        own = pool.position.get(source, -1) if pool is not None and source is not None else -1
        if label is None:
            label = pool.label(source) if pool is not None else -1
        found = _PoolPartners(pool.items, own, self.recipe.fill, load_source) if pool is not None else None
        work = working_image(rgb, self._aug)
        size = (rgb.shape[1], rgb.shape[0])
        src = _Key(key, int(label))
        return render_variant(self._aug, work, _as_labels(labels), size, self.seed, src, int(variant), None, rgb, found)

    def _pool(self, partners: Any, variant: int) -> Optional[PartnerPool]:
        """The pool a record draws from; a multi-image variant without one is refused, naming the op."""
        if partners is not None:
            return partners if isinstance(partners, PartnerPool) else PartnerPool(partners)
        if self._aug.multi is not None and variant != 0 and not self.recipe.plain(variant):
            name = self._aug.multi.name
            raise ValueError(
                f"partners: the recipe starts with the multi-image op {name!r}, so variant {variant} draws its "
                f"partners among the split's other sources: pass partners=PartnerPool([(rel, image, labels), ...]) "
                f"(the split's sources in the builder's order; see edgeaug.augment)"
            )
        return None

    def online(
        self,
        image: np.ndarray,
        epoch: int,
        labels: Any = None,
        source: Optional[str] = None,
        source_key: Optional[Tuple[int, ...]] = None,
        first_variant: int = 1,
        partners: Union[PartnerPool, Sequence[Any], None] = None,
        label: Optional[int] = None,
    ) -> Tuple[np.ndarray, Labels, List[Dict[str, Any]]]:
        """A fresh draw for (epoch, sample): :meth:`record` with variant ``first_variant + epoch``."""
        if int(epoch) != epoch or epoch < 0:
            raise ValueError(f"epoch: {epoch} must be a non-negative integer")
        v = int(first_variant) + int(epoch)
        return self.record(image, labels, source, v, source_key, partners, label)
