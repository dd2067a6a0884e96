"""Auto augmentation policies: RandAugment, TrivialAugmentWide and AugMix, as torchvision's.

Op sets, magnitude bins and sampling follow ``torchvision/transforms/autoaugment.py``.
``sample`` records each record's chosen members and magnitudes, e.g. ``{"chain":
[{"name": "Rotate", "magnitude": -12.0}, ...]}``; ``apply`` replays them without any RNG.
Translations of RandAugment and AugMix are recorded as a fraction of the frame
(``"unit": "frac"``: torchvision's 150/331 and 1/3 of the size), TrivialAugment's in
output pixels (``"unit": "px"``: its 0..32), since the output size is unknown when sampling.

Geometric members run after the pipeline's one warp, so they resample the image a
second time (nearest neighbour, as torchvision); labels follow them exactly (see
:mod:`edgeaug.ops.policy_ops`).  AugMix blends differently warped copies, which
no label can follow: with boxes, keypoints or masks it needs ``geometric = false``.
"""

from __future__ import annotations

import numpy as np

from edgeaug.ops.base import Op, OpError, register
from edgeaug.ops.policy_ops import GEOMETRIC, apply_member, has_labels

# member -> (magnitude at the top bin, signed); None: no magnitude; Posterize: (start bits, span).
RANDAUGMENT = {
    "Identity": (None, False),
    "ShearX": (0.3, True),
    "ShearY": (0.3, True),
    "TranslateX": (150.0 / 331.0, True),
    "TranslateY": (150.0 / 331.0, True),
    "Rotate": (30.0, True),
    "Brightness": (0.9, True),
    "Color": (0.9, True),
    "Contrast": (0.9, True),
    "Sharpness": (0.9, True),
    "Posterize": ((8, 4), False),  # bits 8 - round(bin / ((n - 1) / 4))
    "Solarize": (255.0, False),  # linspace(255, 0): the threshold falls with the bin
    "AutoContrast": (None, False),
    "Equalize": (None, False),
}
TRIVIAL = {
    **RANDAUGMENT,
    "ShearX": (0.99, True),
    "ShearY": (0.99, True),
    "TranslateX": (32.0, True),
    "TranslateY": (32.0, True),
    "Rotate": (135.0, True),
    "Brightness": (0.99, True),
    "Color": (0.99, True),
    "Contrast": (0.99, True),
    "Sharpness": (0.99, True),
    "Posterize": ((8, 6), False),
}
AUGMIX = {k: RANDAUGMENT[k] for k in ("ShearX", "ShearY", "Rotate", "Solarize", "AutoContrast", "Equalize")}
AUGMIX.update({"TranslateX": (1 / 3, True), "TranslateY": (1 / 3, True), "Posterize": ((4, 4), False)})
AUGMIX_ALL = ("Brightness", "Color", "Contrast", "Sharpness")


def member(rng: np.random.Generator, space: dict, name: str, index: int, bins: int, unit: str) -> dict:
    """One member's entry at magnitude bin ``index`` of ``bins``, with torchvision's random sign."""
    top, signed = space[name]
    entry = {"name": name}
    if top is None:
        return entry
    if name == "Posterize":  # bits: start - round(bin / ((bins - 1) / span))
        start, span = top
        mag = float(start - round(index / ((bins - 1) / span)))
    elif name == "Solarize":
        mag = 255.0 - 255.0 * index / (bins - 1)
    else:
        mag = top * index / (bins - 1)
    if signed and rng.integers(2):
        mag = -mag
    entry["magnitude"] = float(mag) + 0.0  # no -0.0 in the recorded params
    if name.startswith("Translate"):
        entry["unit"] = unit
    return entry


class Policy(Op):
    """Shared options: ``fill`` (grey level of uncovered pixels after shear/translate/rotate,
    default 0 as torchvision) and ``min_visibility`` (boxes keeping less of their area are dropped, default 0.3)."""

    OPTIONS = {"fill": (int, 0), "min_visibility": (float, 0.3)}
    BOUNDS = {"fill": (0, 255), "min_visibility": (0, 1)}

    def run(self, image, labels, chain):
        for entry in chain:
            image, labels = apply_member(image, labels, entry, self.options["fill"], self.options["min_visibility"])
        return image, labels

    def apply(self, image, labels, params):
        return self.run(image, labels, params["chain"])


@register
class RandAugment(Policy):
    """RandAugment: ``num_ops`` (default 2) members in a row, uniformly chosen (repeats allowed),
    all at magnitude bin ``magnitude`` (default 9) of ``num_magnitude_bins`` (option, default 31).
    Ranges draw one integer per record.  ``num_ops`` 0 is the identity."""

    name = "randaugment"
    RANGES = {"num_ops": ((2.0, 2.0), (0.0, 16.0)), "magnitude": ((9.0, 9.0), (0.0, 100.0))}
    INTEGERS = ("num_ops", "magnitude")
    OPTIONS = {**Policy.OPTIONS, "num_magnitude_bins": (int, 31)}
    BOUNDS = {**Policy.BOUNDS, "num_magnitude_bins": (2, 101)}

    @classmethod
    def check(cls, ranges, options):
        bad, bins = super().check(ranges, options), options["num_magnitude_bins"]
        if bad is None and ranges["magnitude"][1] >= bins:
            return "magnitude", f"{ranges['magnitude'][1]} is not below num_magnitude_bins ({bins})"
        return bad

    def sample(self, rng, size):
        n, mag = self.integer(rng, "num_ops"), self.integer(rng, "magnitude")
        names, bins = list(RANDAUGMENT), self.options["num_magnitude_bins"]
        return {
            "chain": [member(rng, RANDAUGMENT, names[rng.integers(len(names))], mag, bins, "frac") for _ in range(n)]
        }


@register
class TrivialAugment(Policy):
    """TrivialAugmentWide: one uniformly chosen member at a uniformly chosen magnitude bin
    of ``num_magnitude_bins`` (option, default 31)."""

    name = "trivial_augment"
    OPTIONS = {**Policy.OPTIONS, "num_magnitude_bins": (int, 31)}
    BOUNDS = {**Policy.BOUNDS, "num_magnitude_bins": (2, 101)}

    def sample(self, rng, size):
        names, bins = list(TRIVIAL), self.options["num_magnitude_bins"]
        name = names[rng.integers(len(names))]
        return {"chain": [member(rng, TRIVIAL, name, int(rng.integers(bins)), bins, "px")]}


@register
class AugMix(Policy):
    """AugMix: ``mixture_width`` (default 3) chains of ``chain_depth`` members (default -1: 1 to 3 at
    random), magnitudes from the lowest ``severity`` (default 3) of 10 bins; the chains are mixed with
    Dirichlet(``alpha``) weights (default [1, 1]) and the result with the original by Beta(alpha, alpha).

    ``all_ops`` (default true) adds Brightness, Color, Contrast and Sharpness; ``geometric`` (default
    true) keeps the shear/translate/rotate members, which a dataset with boxes, keypoints or masks
    cannot use (an error asks for ``geometric = false``).  Recorded: ``chains``, ``weights``, ``mix``.
    """

    name = "augmix"
    RANGES = {"alpha": ((1.0, 1.0), (0.01, 100.0))}
    OPTIONS = {
        **Policy.OPTIONS,
        "severity": (int, 3),
        "mixture_width": (int, 3),
        "chain_depth": (int, -1),
        "all_ops": (bool, True),
        "geometric": (bool, True),
    }
    BOUNDS = {**Policy.BOUNDS, "severity": (1, 10), "mixture_width": (1, 16), "chain_depth": (-1, 16)}

    def space(self):
        names = [n for n in AUGMIX if self.options["geometric"] or n not in GEOMETRIC]
        return names + (list(AUGMIX_ALL) if self.options["all_ops"] else [])

    def sample(self, rng, size):
        alpha, width = self.uniform(rng, "alpha"), self.options["mixture_width"]
        mix = float(rng.dirichlet([alpha, alpha])[0])
        weights = [float(w) * (1 - mix) for w in rng.dirichlet([alpha] * width)]
        names, space, chains = self.space(), {**AUGMIX, **{k: RANDAUGMENT[k] for k in AUGMIX_ALL}}, []
        for _ in range(width):
            depth = self.options["chain_depth"] if self.options["chain_depth"] > 0 else int(rng.integers(1, 4))
            picks = [names[rng.integers(len(names))] for _ in range(depth)]
            chains.append([_augmix_member(rng, space, n, int(rng.integers(self.options["severity"]))) for n in picks])
        return {"chains": chains, "weights": weights, "mix": mix}

    def apply(self, image, labels, params):
        if self.options["geometric"] and has_labels(labels):
            raise OpError(  # a recipe/dataset mismatch: the CLI prints it as one line
                "op augmix: geometric: augmix blends differently warped copies, so boxes, keypoints and masks "
                "cannot follow them: set geometric = false on the recipe's augmix op, or use randaugment or "
                "trivial_augment"
            )
        out = np.float32(params["mix"]) * image.astype(np.float32)
        for chain, w in zip(params["chains"], params["weights"]):
            out += np.float32(w) * self.run(image, labels, chain)[0].astype(np.float32)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(image.shape), labels


def _augmix_member(rng, space, name, index):
    """AugMix's members use 10 bins (torchvision's ``_PARAMETER_MAX``); its Posterize runs 4..0 bits."""
    return member(rng, space if name in AUGMIX_ALL else AUGMIX, name, index, 10, "frac")
