"""Domain ops from reference images: ``histogram_match`` and ``fda``.

Both take a folder of unlabelled images (e.g. captures from the device)::

    [[ops]]
    op = "fda"
    p = 0.5
    reference = "captures/"   # relative to the recipe file's folder
    beta = [0.01, 0.05]       # low-frequency window, fraction of the shorter side
    strength = [0.5, 1.0]     # blend towards the reference

When the recipe is read, the folder's images (sorted by name) are hashed into
the option ``files`` (``[[name, sha256], ...]``): the manifest's recipe pins
them, so they enter the pack's fingerprint, and ``verify --source`` re-reads
the folder and names the file that changed.  Each record's params store the
chosen reference's index into that list and its name.  Decoded references
are cached per process (small derived data: a histogram's CDF, a resized
spectrum), keyed by the file's sha256.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from edgeaug.ops.base import MagnitudeOp, Op, OpError, RecipePath, confined_path, register

EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}  # as edgeaug.sources
MAX_FILES = 10000
_CACHE: "OrderedDict[Tuple[Any, ...], Any]" = OrderedDict()  # one per process: (kind, sha256, ...) -> data
CACHE_ENTRIES = 64  # an fda entry is a float32 spectrum of the output size (0.6 MB at 224x224)


def hash_folder(folder: Path, text: str, fields: Any) -> List[List[str]]:
    """``[[name, sha256], ...]`` of the folder's images, sorted by name; errors name the folder or file."""
    if not folder.is_dir():
        fields.fail("reference", f"{text!r}: no such folder (relative paths start at the recipe's folder)")
    names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in EXTS and p.is_file())
    if not names:
        fields.fail("reference", f"{folder}: no images ({', '.join(sorted(EXTS))})")
    if len(names) > MAX_FILES:
        fields.fail("reference", f"{folder}: {len(names)} images, more than {MAX_FILES}")
    out = []
    for n in names:
        if not (folder / n).resolve().is_relative_to(folder.resolve()):
            fields.fail("reference", f"{folder / n} is a symlink leading outside {folder}: refused")
        data = (folder / n).read_bytes()
        if _decode(data) is None:
            fields.fail("reference", f"{folder / n}: not a readable image")
        out.append([n, hashlib.sha256(data).hexdigest()])
    return out


def _decode(data: bytes) -> Optional[np.ndarray]:
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _cached(key: Tuple[Any, ...], make) -> Any:
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    value = _CACHE[key] = make()
    if len(_CACHE) > CACHE_ENTRIES:
        _CACHE.popitem(last=False)
    return value


class ReferenceOp(Op):
    """Base of ops that read a folder of reference images (option ``reference``; ``files`` pins them)."""

    OPTIONS = {"reference": (str, None), "files": (list, [])}

    @classmethod
    def resolve_options(cls, options: Dict[str, Any], base: Any, fields: Any) -> Dict[str, Any]:
        """Resolve ``reference`` against the recipe's folder and pin each image's sha256 in ``files``."""
        text = options["reference"]
        if isinstance(base, tuple):  # an untrusted recipe (a pack's manifest): confined to these folders
            folder = confined_path(text, base, fields, "reference", "folder", folder=True)
        else:
            folder = Path(text) if base is None or Path(text).is_absolute() else Path(base) / text
        files = hash_folder(folder, text, fields)
        pinned = options["files"]
        if pinned:
            _compare(pinned, files, folder, fields)
        return {**options, "reference": RecipePath(text, str(folder.resolve())), "files": files}

    def sample(self, rng: np.random.Generator, size) -> Dict[str, Any]:
        files = self._files()
        i = int(rng.integers(0, len(files)))
        return {"index": i, "name": files[i][0], **{k: self.uniform(rng, k) for k in self.RANGES}}

    def _files(self) -> List[List[str]]:
        if not self.options["files"]:  # built directly, not from a recipe
            from types import SimpleNamespace

            def fail(field, msg):
                raise OpError(f"{self.name}.{field}: {msg}")

            self.options = self.resolve_options(self.options, None, SimpleNamespace(fail=fail))
        return self.options["files"]

    def reference(self, params: Dict[str, Any]) -> Tuple[str, np.ndarray]:
        """The chosen reference (its sha256, RGB pixels): read, checked and decoded once per process."""
        files = self._files()
        i = int(params["index"])
        if not 0 <= i < len(files) or files[i][0] != params.get("name", files[i][0]):
            raise OpError(f"{self.name}: reference {params.get('name')!r} (index {i}) is not in the pinned list")
        name, digest = files[i]
        folder = Path(getattr(self.options["reference"], "path", str(self.options["reference"])))

        def load() -> np.ndarray:
            data = (folder / name).read_bytes()
            if hashlib.sha256(data).hexdigest() != digest:
                raise OpError(f"{folder / name} changed since the recipe pinned sha256 {digest}")
            img = _decode(data)
            if img is None:
                raise OpError(f"{folder / name}: not a readable image")
            return img

        return digest, load()


def _compare(pinned: Any, files: List[List[str]], folder: Path, fields: Any) -> None:
    """A pinned list that differs from the folder: an error naming the first file that differs."""
    try:
        old = {str(n): str(h) for n, h in pinned}
    except (TypeError, ValueError):
        fields.fail("files", "expected a list of [name, sha256] pairs")
    new = dict((n, h) for n, h in files)
    for n in sorted(set(old) | set(new)):
        if n not in new:
            fields.fail("reference", f"{folder / n}: missing (the recipe pinned it)")
        if n not in old:
            fields.fail("reference", f"{folder / n}: not in the pinned list (added since the build)")
        if old[n] != new[n]:
            fields.fail("reference", f"{folder / n} changed: sha256 {new[n]}, the recipe pinned {old[n]}")


@register
class HistogramMatch(MagnitudeOp, ReferenceOp):
    """Match each channel's histogram to a reference image's, blended by ``strength``.

    out = (1 - s) * image + s * matched, one lookup table per channel (the
    matched value of a level is where the reference's CDF reaches the image's).
    """

    name, KEY = "histogram_match", "strength"
    RANGES = {"strength": ((0.5, 1.0), (0.0, 1.0))}

    def effect(self, image, s, params):
        import cv2

        digest = self._files()[int(params["index"])][1]
        ref_cdf = _cached(("cdf", digest), lambda: _cdfs(self.reference(params)[1]))
        cdf = _cdfs(image)
        levels = np.arange(256, dtype=np.float64)
        luts = []
        for c in range(3):
            matched = np.interp(cdf[c], ref_cdf[c], levels)
            luts.append(np.clip(np.rint((1.0 - s) * levels + s * matched), 0, 255).astype(np.uint8))
        return cv2.LUT(image, np.stack(luts, -1)[None]).reshape(image.shape)


def _cdfs(img: np.ndarray) -> List[np.ndarray]:
    """Each channel's normalized cumulative histogram (256,)."""
    out = []
    for c in range(3):
        h = np.bincount(img[..., c].ravel(), minlength=256).astype(np.float64)
        out.append(np.cumsum(h) / h.sum())
    return out


@register
class FDA(ReferenceOp):
    """Fourier Domain Adaptation (Yang & Soatto, CVPR 2020): take a reference's low-frequency amplitudes.

    Per channel, the image's amplitude spectrum inside the window of
    half-width ``floor(beta * min(h, w))`` around frequency 0 becomes
    ``(1 - s) * own + s * reference`` (the reference resized to the image);
    the phase is kept.  OpenCV's float32 DFT, one channel at a time.
    """

    name = "fda"
    RANGES = {"beta": ((0.01, 0.05), (0.0, 0.5)), "strength": ((1.0, 1.0), (0.0, 1.0))}

    def apply(self, image, labels, params):
        import cv2

        h, w = image.shape[:2]
        b = min(int(np.floor(params["beta"] * min(h, w))), (min(h, w) - 1) // 2)  # the window fits once
        s = params["strength"]
        if s <= 0:
            return image, labels
        digest = self._files()[int(params["index"])][1]
        ref = _cached(("amp", digest, h, w), lambda: _amplitude(self.reference(params)[1], h, w))
        rows = np.r_[0 : b + 1, h - b : h]
        cols = np.r_[0 : b + 1, w - b : w]
        win = np.ix_(rows, cols)
        planes = []
        for c in range(3):
            spec = cv2.dft(np.ascontiguousarray(image[..., c], np.float32), flags=cv2.DFT_COMPLEX_OUTPUT)
            z = spec[..., 0][win] + 1j * spec[..., 1][win]
            amp = np.abs(z)
            mixed = (1.0 - s) * amp + s * ref[c][win]
            safe = np.where(amp > 0, amp, 1.0)
            z = np.where(amp > 0, z / safe * mixed, mixed)  # keep the phase; none at amplitude 0: take it real
            spec[..., 0][win], spec[..., 1][win] = z.real, z.imag
            planes.append(cv2.idft(spec, flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE))
        out = np.rint(np.clip(np.stack(planes, -1), 0, 255)).astype(np.uint8)
        return out, labels


def _amplitude(ref: np.ndarray, h: int, w: int) -> List[np.ndarray]:
    """Each channel's amplitude spectrum (h, w) of the reference resized to the image."""
    import cv2

    img = ref if ref.shape[:2] == (h, w) else cv2.resize(ref, (w, h), interpolation=cv2.INTER_AREA)
    out = []
    for c in range(3):
        spec = cv2.dft(np.ascontiguousarray(img[..., c], np.float32), flags=cv2.DFT_COMPLEX_OUTPUT)
        out.append(cv2.magnitude(spec[..., 0], spec[..., 1]))
    return out
