#!/usr/bin/env python3
"""The entropy floor of compressed packs (issue 25): how small can lossless records of real photos get?

Builds a raw pack of real photos with the real builder (default recipe, seed 1,
one original + --variants augmented records per photo), decodes its records and
stores every tensor with each codec below, checking that each decodes back to
exactly the tensor.  Size is the stored bytes against the raw tensor bytes;
decode is native CPU ms per record (process_time, all threads, best of
--repeat), so a reader sees what a smaller record costs.

Codecs: the pack codec of ``edgeaug/device/codec.py`` (zstd 1, zlib 6: what
``edgeaug build --compress`` stores), zstd 19 and lzma on the same filtered
residual, the order-0 entropy of that residual (a bound for any coder of
independent bytes), PNG and WebP lossless (OpenCV), and, with the optional
``imagecodecs`` package, JPEG-XL lossless (effort 7 and 9), WebP lossless
(method 6), JPEG-LS and lossless JPEG 2000.  Rows it cannot measure print
"not installed".  Results are split overall, per photo, original (variant 0)
against augmented records, and augmented records with against without the
recipe's gaussian_noise op (from each record's stored params).

    python scripts/bench_codec_floor.py [--photos DIR | --pack RAW.lmdb] [--target rpi4]
        [--variants 7] [--seed 1] [--repeat 3] [--json]

Without --photos or --pack it gathers the ten photos of docs/benchmarks.md:
scikit-learn's china and flower and scikit-image's astronaut, chelsea, coffee,
motorcycle left/right, rocket, retina and hubble_deep_field (both packages must
be importable; their files ship inside the wheels).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import lzma
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

SKIMAGE_FILES = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "rocket.jpg",
    "retina.jpg",
    "hubble_deep_field.jpg",
)
SKLEARN_FILES = ("china.jpg", "flower.jpg")


def _package_dir(name: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"error: {name} is not importable; give --photos DIR (or pip install {pip_name} in a venv)")
    return Path(list(spec.submodule_search_locations)[0])


def gather_photos(dest: Path) -> Path:
    """The ten benchmark photos, copied byte for byte from the scikit-learn and scikit-image wheels."""
    folder = dest / "photo"
    folder.mkdir(parents=True, exist_ok=True)
    files = [_package_dir("sklearn", "scikit-learn") / "datasets" / "images" / f for f in SKLEARN_FILES]
    files += [_package_dir("skimage", "scikit-image") / "data" / f for f in SKIMAGE_FILES]
    for f in files:
        if not f.is_file():
            raise SystemExit(f"error: {f}: not in this install (a newer version fetches it); give --photos DIR")
        shutil.copyfile(f, folder / f.name)
    return dest


def build_raw(photos: Path, out: Path, target: str, variants: int, seed: int) -> Path:
    """A raw pack of the photos (the real builder, default recipe), as scripts/bench_codec.py builds it."""
    from edgeaug.builder.pipeline import build

    src = out.parent / "sources"
    n = _script("bench_codec").copy_photos(photos, src)
    build(src, out, target, "default", variants=variants, seed=seed, workers=1)
    print(f"built {out.name}: {n} photos x {variants + 1} records", file=sys.stderr)
    return out


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_records(path: Path) -> Tuple[List[np.ndarray], List[Dict[str, Any]], str]:
    """(tensors, [{photo, variant, noise}], layout) of every record of a pack."""
    from edgeaug.loader import Pack

    xs, meta = [], []
    with Pack(str(path)) as p:
        names = [Path(s["path"]).stem for s in p.manifest["sources"]]
        layout = p.manifest["target"]["layout"]
        for r in range(p.records):
            rec = p.record_at(r)
            ops = rec["params"].get("ops", [])
            noise = any(o.get("op") == "gaussian_noise" and o.get("on") for o in ops)
            xs.append(np.ascontiguousarray(rec["x"]))
            meta.append({"photo": names[rec["source"]], "variant": rec["variant"], "noise": noise})
    return xs, meta, layout


# --- the codecs: name -> (encode(x) -> bytes, decode(bytes, like) -> array) or a reason it is missing --------

Codec = Tuple[Callable[[np.ndarray], Any], Callable[[Any, np.ndarray], np.ndarray]]


def pack_codecs(layout: str) -> Dict[str, Codec]:
    """The pack's own codec, and stronger back ends on its filtered residual."""
    import zstandard

    from edgeaug.device import codec as cd

    def ours(name: str, level: int) -> Codec:
        def enc(x):
            return cd.encode(x, name, level, layout)

        def dec(e, like):
            out = np.empty_like(like)
            cd.decode_into(e.data, out, e.method, layout)
            return out

        return enc, dec

    def residual(compress, decompress) -> Codec:
        def enc(x):
            f, d = cd.choose_filter(x, layout)
            return f, compress(np.ascontiguousarray(d).tobytes())

        def dec(e, like):
            out = np.empty_like(like)
            cd.undo_filter(np.frombuffer(decompress(e[1]), np.uint8).reshape(like.shape), out, e[0], layout)
            return out

        return enc, dec

    zc, zd = zstandard.ZstdCompressor(level=19), zstandard.ZstdDecompressor()
    return {
        "edgeaug zstd 1 (pack default)": ours("zstd", 1),
        "edgeaug zlib 6": ours("zlib", 6),
        "zstd 19, our filtered residual": residual(zc.compress, zd.decompress),
        "prototype: planar, zstd 1 per channel": planar(layout, 1),
        "prototype: context split, zstd 1 (13 frames)": context_split(layout, 1),
        "prototype: context split, zstd 19 (13 frames)": context_split(layout, 19),
        "lzma 6, our filtered residual": residual(lzma.compress, lzma.decompress),
        "lzma 9e, our filtered residual": residual(
            lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME), lzma.decompress
        ),
    }


# The step-2 prototypes of issue 25: still zstd on our filtered residual, decoded by vectorized numpy.
CTX_EDGES = np.array([1, 3, 8])  # |residual| buckets: 0, 1-2, 3-7, >= 8
_MAG = np.minimum(np.arange(256), 256 - np.arange(256))
CTX_LUT = np.searchsorted(CTX_EDGES, _MAG, side="right").astype(np.uint8)  # residual byte -> bucket


def _ctx_streams(d3: np.ndarray) -> List[np.ndarray]:
    """The parts of an (h, w, 3) residual: the middle channel's even rows; its odd rows split by the larger
    bucket of the residuals above and below (decoded first); the outer channels split by the bucket of the
    co-located middle-channel residual.  Each part is one zstd frame."""
    g = d3[..., 1]
    be = CTX_LUT[g[0::2]]
    bg = np.maximum(be, np.vstack([be[1:], be[-1:]]))[: g.shape[0] // 2]
    bc = CTX_LUT[g]
    k = len(CTX_EDGES) + 1
    parts = [g[0::2]] + [g[1::2][bg == j] for j in range(k)]
    return parts + [d3[..., c][bc == j] for c in (0, 2) for j in range(k)]


def context_split(layout: str, level: int) -> Codec:
    """Context splitting (issue 25 step 2 (b)), prototype: 1 + 3 x 4 zstd frames, a u2 length each."""
    import zstandard

    from edgeaug.device import codec as cd

    zc, zd, k = zstandard.ZstdCompressor(level=level), zstandard.ZstdDecompressor(), len(CTX_EDGES) + 1

    def enc(x):
        f, d = cd.choose_filter(x, layout)
        parts = _ctx_streams(np.asarray(d).reshape(x.shape))
        return f, [zc.compress(np.ascontiguousarray(p).tobytes()) for p in parts]

    def dec(e, like):
        (h, w, _), (f, frames) = like.shape, e
        parts = [np.frombuffer(zd.decompress(z), np.uint8) for z in frames]
        d3 = np.empty(like.shape, np.uint8)
        d3[0::2, :, 1] = parts[0].reshape(-1, w)
        be = CTX_LUT[d3[0::2, :, 1]]
        bg = np.maximum(be, np.vstack([be[1:], be[-1:]]))[: h // 2]
        go = np.empty((h // 2, w), np.uint8)
        for j in range(k):
            go[bg == j] = parts[1 + j]
        d3[1::2, :, 1] = go
        bc = CTX_LUT[d3[..., 1]]
        for i, c in enumerate((0, 2)):
            plane = np.empty((h, w), np.uint8)
            for j in range(k):
                plane[bc == j] = parts[1 + k + i * k + j]
            d3[..., c] = plane
        out = np.empty_like(like)
        cd.undo_filter(d3, out, f, layout)
        return out

    return enc, dec


def planar(layout: str, level: int) -> Codec:
    """Planar layout (issue 25 step 2 (a)), prototype: each channel's residual its own zstd frame."""
    import zstandard

    from edgeaug.device import codec as cd

    zc, zd = zstandard.ZstdCompressor(level=level), zstandard.ZstdDecompressor()

    def enc(x):
        f, d = cd.choose_filter(x, layout)
        d3 = np.asarray(d).reshape(x.shape)
        return f, [zc.compress(np.ascontiguousarray(d3[..., c]).tobytes()) for c in range(x.shape[2])]

    def dec(e, like):
        d3 = np.empty(like.shape, np.uint8)
        for c, z in enumerate(e[1]):
            d3[..., c] = np.frombuffer(zd.decompress(z), np.uint8).reshape(like.shape[:2])
        out = np.empty_like(like)
        cd.undo_filter(d3, out, e[0], layout)
        return out

    return enc, dec


def image_codecs() -> Dict[str, Any]:
    """OpenCV's PNG and WebP, and imagecodecs' JPEG-XL, WebP, JPEG-LS, JPEG 2000 (or "not installed")."""
    import cv2

    def cv(ext: str, params: List[int]) -> Codec:
        return (
            lambda x: cv2.imencode(ext, x, params)[1].tobytes(),
            lambda b, like: cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_UNCHANGED),
        )

    rows: Dict[str, Any] = {
        "PNG (OpenCV, compression 9)": cv(".png", [cv2.IMWRITE_PNG_COMPRESSION, 9]),
        "WebP lossless (OpenCV, quality 101)": cv(".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),
    }
    names = ("JPEG-XL lossless effort 7", "JPEG-XL lossless effort 9", "WebP lossless method 6 (imagecodecs)")
    names += ("JPEG-LS lossless", "JPEG 2000 lossless (reversible 5/3)")
    try:
        import imagecodecs as ic
    except ImportError:
        return {**rows, **{n: "not installed (imagecodecs)" for n in names}}
    rows[names[0]] = (
        lambda x: ic.jpegxl_encode(x, lossless=True, effort=7),
        lambda b, like: ic.jpegxl_decode(b, numthreads=1),
    )
    rows[names[1]] = (
        lambda x: ic.jpegxl_encode(x, lossless=True, effort=9),
        lambda b, like: ic.jpegxl_decode(b, numthreads=1),
    )
    rows[names[2]] = (lambda x: ic.webp_encode(x, 100, lossless=True, method=6), lambda b, like: ic.webp_decode(b))
    rows[names[3]] = (lambda x: ic.jpegls_encode(x), lambda b, like: ic.jpegls_decode(b))
    rows[names[4]] = (lambda x: ic.jpeg2k_encode(x, reversible=True), lambda b, like: ic.jpeg2k_decode(b))
    for n, flag in zip(names, ("JPEGXL", "JPEGXL", "WEBP", "JPEGLS", "JPEG2K")):
        if not getattr(ic, flag).available:
            rows[n] = f"not installed (imagecodecs without {flag})"
    return rows


def _nbytes(e: Any) -> int:
    if isinstance(e, tuple):  # (filter bits, data or frames): a header byte, and a u2 length per frame
        return 1 + (len(e[1]) if isinstance(e[1], bytes) else sum(2 + len(z) for z in e[1]))
    if hasattr(e, "data"):  # codec.Encoded: its data (the method byte is in the record header already)
        return len(e.data)
    return len(e)


def measure(codec: Codec, xs: List[np.ndarray], repeat: int) -> Dict[str, Any]:
    """Stored bytes per record, decode ms per record (best of ``repeat``), lossless on every record (or raises)."""
    enc, dec = codec
    sizes, ms, enc_ms = [], [], []
    for x in xs:
        t0 = time.process_time()
        e = enc(x)
        enc_ms.append((time.process_time() - t0) * 1e3)
        y = dec(e, x)
        if y.shape != x.shape or not np.array_equal(y, x):
            raise SystemExit("error: a codec did not decode a record losslessly")
        best = float("inf")
        for _ in range(repeat):
            t0 = time.process_time()
            dec(e, x)
            best = min(best, time.process_time() - t0)
        sizes.append(_nbytes(e))
        ms.append(best * 1e3)
    return {"sizes": sizes, "decode_ms": float(np.mean(ms)), "encode_ms": float(np.mean(enc_ms))}


def entropy_row(xs: List[np.ndarray], layout: str, split: bool = False) -> Dict[str, Any]:
    """The order-0 entropy of our chosen residual (or of its context-split parts, each on its own), as bytes:
    what a coder of independent bytes (an ideal arithmetic coder; Huffman needs >= 1 bit a byte) reaches."""
    from edgeaug.device.codec import _entropy, choose_filter

    sizes = []
    for x in xs:
        d = np.asarray(choose_filter(x, layout)[1]).view(np.uint8)
        parts = _ctx_streams(d.reshape(x.shape)) if split else [d]
        sizes.append(sum(_entropy(p) / 8 * p.size for p in parts if p.size))
    return {"sizes": sizes, "decode_ms": None, "encode_ms": None}


# --- report -------------------------------------------------------------------------------------------------------


def groups(meta: List[Dict[str, Any]]) -> Dict[str, List[int]]:
    g = {
        "all": list(range(len(meta))),
        "original (v0)": [i for i, m in enumerate(meta) if m["variant"] == 0],
        "augmented": [i for i, m in enumerate(meta) if m["variant"] > 0],
        "aug + noise": [i for i, m in enumerate(meta) if m["variant"] > 0 and m["noise"]],
        "aug, no noise": [i for i, m in enumerate(meta) if m["variant"] > 0 and not m["noise"]],
    }
    for photo in sorted({m["photo"] for m in meta}):
        g[photo] = [i for i, m in enumerate(meta) if m["photo"] == photo]
    return g


def ratio(res: Dict[str, Any], idx: List[int], raw: int) -> Optional[float]:
    return sum(res["sizes"][i] for i in idx) / (raw * len(idx)) if idx else None


def report(results: Dict[str, Any], meta: List[Dict[str, Any]], raw: int) -> None:
    g = groups(meta)
    split = ["all", "original (v0)", "augmented", "aug + noise", "aug, no noise"]
    counts = ", ".join(f"{k} {len(g[k])}" for k in split)
    print(f"\nstored / raw tensor bytes ({raw:,} B per record); records: {counts}\n")
    print("| codec | " + " | ".join(split) + " | decode ms/record | encode ms/record |")
    print("|---|" + "---|" * (len(split) + 2))
    for name, res in results.items():
        if isinstance(res, str):
            print(f"| {name} | {res} |" + " |" * (len(split) + 1))
            continue
        cells = [f"{ratio(res, g[k], raw):.3f}" if g[k] else "-" for k in split]
        dm = "-" if res["decode_ms"] is None else f"{res['decode_ms']:.2f}"
        em = "-" if res["encode_ms"] is None else f"{res['encode_ms']:.1f}"
        print(f"| {name} | " + " | ".join(cells) + f" | {dm} | {em} |")
    photos = [k for k in g if k not in split]
    print("\nper photo (stored / raw, all its records)\n")
    print("| codec | " + " | ".join(photos) + " |\n|---|" + "---|" * len(photos))
    for name, res in results.items():
        if not isinstance(res, str):
            print(f"| {name} | " + " | ".join(f"{ratio(res, g[p], raw):.3f}" for p in photos) + " |")


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, help="a folder of real photos (default: the ten benchmark photos)")
    ap.add_argument("--pack", type=Path, help="measure an existing raw pack instead of building one")
    ap.add_argument("--target", default="rpi4", help="target profile of the built pack (default rpi4)")
    ap.add_argument("--variants", type=int, default=7, help="augmented records per photo (default 7, plus v0)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="decodes per record, the best counts (default 3)")
    ap.add_argument("--json", action="store_true", help="also print every per-record size as JSON")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="edgeaug-floor-"))
    try:
        pack = args.pack
        if pack is None:
            photos = args.photos or gather_photos(work / "photos")
            pack = build_raw(photos, work / "raw.lmdb", args.target, args.variants, args.seed)
        xs, meta, layout = load_records(pack)
        if not xs or xs[0].dtype != np.uint8 or xs[0].ndim != 3:
            raise SystemExit(f"error: {pack}: this bench measures uint8 image records")
        if layout != "NHWC" or xs[0].shape[2] != 3:
            raise SystemExit(f"error: {pack}: this bench measures (h, w, 3) NHWC records, not {layout}")
        results: Dict[str, Any] = {
            "order-0 entropy of our residual (bound)": entropy_row(xs, layout),
            "order-0 entropy of the context-split parts": entropy_row(xs, layout, split=True),
        }
        for name, c in {**pack_codecs(layout), **image_codecs()}.items():
            print(f"measuring {name}", file=sys.stderr)
            results[name] = c if isinstance(c, str) else measure(c, xs, args.repeat)
        report(results, meta, xs[0].nbytes)
        if args.json:
            print(json.dumps({"records": meta, "results": results}))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
