"""Looking at a pack: ``explain`` one record's ops, ``preview`` a contact sheet.

Records hold model tensors, not pictures: :func:`to_rgb` undoes the target's
quantization table, layout and colour order to get back a viewable uint8 RGB
image (exact up to the table's clipping and rounding).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np

from edgeaug.config.targets import QRANGE, quantization_lut, target_from_dict
from edgeaug.device.labels import describe_mix
from edgeaug.device.loader import Pack

PALETTE = np.array(
    [
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (210, 245, 60),
        (250, 190, 212),
        (0, 128, 128),
        (220, 190, 255),
        (170, 110, 40),
        (255, 250, 200),
        (128, 0, 0),
        (170, 255, 195),
    ],
    np.uint8,
)


def _class_colors() -> np.ndarray:
    """256 distinct RGB colours, one per class id: the 16 of PALETTE, then hues a golden angle apart."""
    import colorsys

    more = []
    for k in range(256 - len(PALETTE)):
        h, v = (k * 0.618033988749895) % 1.0, (0.95, 0.75, 0.55)[k % 3]
        more.append([round(255 * c) for c in colorsys.hsv_to_rgb(h, 0.65 + 0.1 * (k % 4), v)])
    return np.concatenate([PALETTE, np.array(more, np.uint8)])


#: Class id -> colour, shared by boxes and mask tints (mask values are class ids 0..255).
CLASS_COLORS = _class_colors()


def color_of(i: int) -> tuple:
    """The colour of class ``i`` (boxes, mask tints and the legend agree)."""
    return tuple(int(v) for v in CLASS_COLORS[int(i) % len(CLASS_COLORS)])


def keypoint_color(i: int) -> tuple:
    """The colour of keypoint ``i`` of an instance (the sheet's legend names them)."""
    return color_of(i + 3)


# --- explain ----------------------------------------------------------------------


def explain(pack: Any, index: int) -> List[str]:
    """Human-readable lines: which source and variant record ``index`` is, and its ops."""
    r = pack.record_at(index)
    m = pack.manifest
    src = m["sources"][r["source"]]["path"] if r["source"] < len(m["sources"]) else "?"
    split = "val" if r["split"] else "train"
    label = _class_name(m, r["label"])
    lines = [
        f"record {index}: {split}, source {r['source']} {src!r}, variant {r['variant']}"
        f"{' (original)' if r['variant'] == 0 else ''}, label {r['label']}{label}",
        f"  labels: {len(r['boxes'])} boxes, {len(r['keypoints'])} keypoints, "
        f"mask {'yes' if r['mask'] is not None else 'no'}{_instances_note(r)}; digest {r['digest'][:16]}",
    ]
    if r.get("mix"):
        lines.append(f"  soft label (mixed record): {describe_mix(r['mix'], m.get('classes', []))}")
    ops = r["params"].get("ops", [])
    resize = m.get("recipe", {}).get("resize", "?")
    size = f"{m['target']['width']}x{m['target']['height']}"
    lines.append(_ops_header(ops, resize, size) if ops else f"  no ops: only the {resize} resize to {size}")
    lines += _op_lines(ops, 2)
    return lines


def _ops_header(ops: Sequence[Dict[str, Any]], resize: str, size: str) -> str:
    """How the record's ops were rendered: one resample of the geometry unless a multi-image op made the frame."""
    from edgeaug.ops.auto import Policy
    from edgeaug.ops.registry import OPS

    first = [OPS.get(e.get("op")) for e in _fired(ops[:1])]  # a multi-image op is first (or in a first one_of)
    if any(getattr(k, "multi", False) for k in first):
        how = (
            f"the multi-image op renders the {size} frame from the source and its partners (each resampled "
            "once), then the geometric ops after it warp that frame once more"
        )
    else:
        how = f"the geometric ones (matrices, distortion fields) and the {resize} resize to {size} resample once"
    kinds = [OPS.get(e.get("op")) for e in _fired(ops)]
    policy = any(isinstance(k, type) and issubclass(k, Policy) for k in kinds)
    extra = "; an auto policy's geometric members warp the output again" if policy else ""
    return f"  ops in recipe order ({how}; photometric ones follow in order{extra}):"


def _fired(entries: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The entries that fired, depth first (a composite, then its fired children)."""
    out: List[Dict[str, Any]] = []
    for e in entries:
        if isinstance(e, dict) and e.get("on"):
            out += [e] + _fired(e.get("ops", []))
    return out


def _instances_note(r: Dict[str, Any]) -> str:
    inst = r.get("instances")
    return "" if inst is None else f", {len(inst)} instance masks"


def _class_name(m: Dict[str, Any], label: int) -> str:
    classes = m.get("classes", [])
    return f" ({classes[label]})" if 0 <= label < len(classes) else ""


def _op_lines(entries: Sequence[Dict[str, Any]], depth: int) -> List[str]:
    out = []
    for e in entries:
        pad = "  " * depth
        if not e.get("on"):
            out.append(f"{pad}- {e.get('op')}: skipped")
            continue
        params = {k: v for k, v in e.items() if k not in ("op", "on", "ops")}
        out.append(f"{pad}- {e.get('op')}: " + (", ".join(f"{k}={_fmt(v)}" for k, v in params.items()) or "applied"))
        out += _op_lines(e.get("ops", []), depth + 1)
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


# --- de-quantizing ----------------------------------------------------------------


def to_rgb(x: np.ndarray, target: Any) -> np.ndarray:
    """The uint8 RGB (H, W, 3) image a stored tensor came from (nearest table entry)."""

    img = np.asarray(x)
    if target.layout == "NCHW":
        img = img.transpose(1, 2, 0)
    lut = quantization_lut(target)
    out = np.empty(img.shape, np.uint8)
    for c in range(img.shape[2]):
        if target.dtype in QRANGE:  # exact inverse table over the integer range
            lo, hi = QRANGE[target.dtype]
            vals = np.arange(lo, hi + 1, dtype=np.float64)
            inv = np.abs(lut[:, c].astype(np.float64)[None, :] - vals[:, None]).argmin(1)
            out[..., c] = inv.astype(np.uint8)[img[..., c].astype(np.int64) - lo]
        else:  # float dtypes: invert (p/255 - mean)/std
            p = (img[..., c].astype(np.float64) * target.std[c] + target.mean[c]) * 255.0
            out[..., c] = np.clip(np.rint(p), 0, 255).astype(np.uint8)
    if target.color == "BGR":
        out = out[..., ::-1]
    elif target.color == "GRAY":
        out = np.repeat(out, 3, axis=2)
    return np.ascontiguousarray(out)


# --- contact sheet ----------------------------------------------------------------


def draw_record(rec: Dict[str, Any], target: Any, classes: Sequence[str], zoom: int) -> np.ndarray:
    """One tile: the de-quantized image, mask overlay, boxes, keypoints and a caption."""
    import cv2

    img = to_rgb(rec["x"], target)
    if rec["mask"] is not None and rec["mask"].any():
        tint = CLASS_COLORS[rec["mask"]]  # each class id its own colour; 0 (background) stays untinted
        on = rec["mask"][..., None] > 0
        img = np.where(on, (0.55 * img + 0.45 * tint).astype(np.uint8), img)
    img = cv2.resize(img, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
    if rec["mask"] is not None:  # class boundaries in white, so same-colour regions stay apart
        m = np.kron(rec["mask"], np.ones((zoom, zoom), np.uint8))
        edge = np.zeros(m.shape, bool)
        edge[:, 1:] |= m[:, 1:] != m[:, :-1]
        edge[1:] |= m[1:] != m[:-1]
        img[edge] = 255
    if rec.get("instances") is not None:
        _outline_instances(img, rec["instances"], rec["boxes"][:, 0], zoom)
    for c, x0, y0, x1, y1 in rec["boxes"].tolist():
        col = color_of(int(c))
        cv2.rectangle(img, (round(x0 * zoom), round(y0 * zoom)), (round(x1 * zoom) - 1, round(y1 * zoom) - 1), col, 1)
        name = classes[int(c)] if 0 <= int(c) < len(classes) else str(int(c))
        cv2.putText(
            img,
            name,
            (round(x0 * zoom) + 2, max(10, round(y0 * zoom) + 10)),
            cv2.FONT_HERSHEY_PLAIN,
            0.8,
            col,
            1,
            cv2.LINE_AA,
        )
    for i, (x, y, v) in enumerate(rec["keypoints"].tolist()):
        if v > 0:
            c = (round(x * zoom), round(y * zoom))
            cv2.circle(img, c, 4, (0, 0, 0), -1, cv2.LINE_AA)
            cv2.circle(img, c, 3, keypoint_color(i), -1, cv2.LINE_AA)
    cap = f"#{rec['index']} s{rec['source']} v{rec['variant']}"
    if 0 <= rec["label"] < len(classes):
        cap += f" {classes[rec['label']]}"
    _caption(img, cap, 0)
    if rec.get("mix"):  # an offline mixed record: its soft label at the bottom
        _caption(img, "mix " + describe_mix(rec["mix"], classes), img.shape[0] - 12)
    return img


def _caption(img: np.ndarray, text: str, y: int) -> None:
    import cv2

    (w, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_PLAIN, 0.8, 1)
    cv2.rectangle(img, (0, y), (w + 4, y + 12), (0, 0, 0), -1)
    cv2.putText(img, text, (2, y + 10), cv2.FONT_HERSHEY_PLAIN, 0.8, (255, 255, 255), 1, cv2.LINE_AA)


def _outline_instances(img: np.ndarray, instances: np.ndarray, classes: np.ndarray, zoom: int) -> None:
    """Each instance mask's outline in its box's class colour, on the zoomed tile (in place)."""
    import cv2

    for m, c in zip(instances, classes.tolist()):
        big = np.kron(m.astype(np.uint8), np.ones((zoom, zoom), np.uint8))
        contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(img, contours, -1, color_of(int(c)), max(1, zoom // 3), cv2.LINE_8)


def pick_records(
    pack: Any, count: int = 16, start: int = 0, shuffle: bool = False, seed: int = 0, per_class: bool = False
) -> List[int]:
    """Which records a sheet shows: ``count`` from ``start`` on, in order, or shuffled with ``seed``.

    ``per_class`` takes the classes in turn (by their sources' labels in the
    manifest), so a pack whose first records are all one class shows them all.
    """
    if count < 1:
        raise ValueError("--count must be at least 1")
    if not 0 <= start < pack.records:
        raise IndexError(f"--start {start} is outside the pack's {pack.records} records")
    idx = np.arange(start, pack.records)
    if shuffle:
        idx = np.random.default_rng(seed).permutation(idx)
    if per_class:
        from edgeaug.verify import record_sources

        src = pack.manifest["sources"]
        labels = np.asarray([e["label"] for e in src], np.int64)[record_sources(pack.manifest, pack.records)][idx]
        groups = [idx[labels == c] for c in np.unique(labels)]
        rank = np.concatenate([np.arange(len(g)) for g in groups])
        group = np.concatenate([np.full(len(g), j) for j, g in enumerate(groups)])
        idx = np.concatenate(groups)[np.lexsort((group, rank))]  # round robin over the classes
    return [int(i) for i in idx[:count]]


def contact_sheet(
    pack: Any, count: int = 16, start: int = 0, columns: int = 0, records: Sequence[int] | None = None
) -> np.ndarray:
    """A grid of records (``records``, else ``start .. start+count-1``; whole pack) as RGB uint8.

    A legend row under the grid names the classes drawn (boxes, mask tints) and the keypoint colours.
    """
    records = list(records) if records is not None else pick_records(pack, count, start)
    target = target_from_dict(pack.manifest["target"])
    zoom = max(1, math.ceil(160 / max(target.width, target.height)))  # small targets get bigger
    classes = pack.manifest.get("classes", [])
    tiles, recs = [], [dict(pack.record_at(r), index=r) for r in records]
    for rec in recs:
        tiles.append(draw_record(rec, target, classes, zoom))
    cols = columns or math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    th, tw = tiles[0].shape[:2]
    gap = 4
    sheet = np.full((rows * (th + gap) + gap, cols * (tw + gap) + gap, 3), 40, np.uint8)
    for i, t in enumerate(tiles):
        y, x = gap + (i // cols) * (th + gap), gap + (i % cols) * (tw + gap)
        sheet[y : y + th, x : x + tw] = t
    items = legend_items(recs, classes)
    return np.concatenate([sheet, legend(items, sheet.shape[1])]) if items else sheet


def legend_items(recs: Sequence[Dict[str, Any]], classes: Sequence[str]) -> List[tuple]:
    """(text, colour) for every class drawn as a box or mask tint, then every keypoint index drawn."""
    ids = sorted(
        {int(c) for r in recs for c in r["boxes"][:, 0]}
        | {int(v) for r in recs if r["mask"] is not None for v in np.unique(r["mask"]) if v}
    )
    items = [(classes[c] if 0 <= c < len(classes) else f"class {c}", color_of(c)) for c in ids]
    kps = max((len(r["keypoints"]) for r in recs if len(r["keypoints"]) and r["keypoints"][:, 2].any()), default=0)
    return items + [(f"kp {i}", keypoint_color(i)) for i in range(kps)]


def legend(items: Sequence[tuple], width: int) -> np.ndarray:
    """Rows of colour swatches with their names, ``width`` pixels wide (RGB uint8)."""
    import cv2

    font, row_h, x, rows = cv2.FONT_HERSHEY_PLAIN, 16, 4, [[]]
    for text, col in items:
        w = 16 + cv2.getTextSize(text, font, 0.9, 1)[0][0] + 10
        if x + w > width and rows[-1]:
            rows.append([])
            x = 4
        rows[-1].append((x, text, col))
        x += w
    img = np.full((len(rows) * row_h + 4, width, 3), 40, np.uint8)
    for k, row in enumerate(rows):
        y = 4 + k * row_h
        for x, text, col in row:
            cv2.rectangle(img, (x, y + 2), (x + 10, y + 12), col, -1)
            cv2.putText(img, text, (x + 14, y + 12), font, 0.9, (255, 255, 255), 1, cv2.LINE_AA)
    return img


#: Contact sheet formats by file suffix, with OpenCV's encoder options.
SHEET_FORMATS = {
    ".png": (),
    ".jpg": ("JPEG_QUALITY", 95),
    ".jpeg": ("JPEG_QUALITY", 95),
    ".webp": ("WEBP_QUALITY", 95),
    ".bmp": (),
}


def write_preview(
    pack_path: str | Path,
    out: str | Path,
    count: int = 16,
    start: int = 0,
    shuffle: bool = False,
    seed: int = 0,
    per_class: bool = False,
) -> Path:
    """Write the contact sheet in the format ``out``'s suffix names (PNG, JPEG, WebP, BMP); returns its path.

    Records are picked by :func:`pick_records`.  An unknown suffix or a missing
    folder is a ValueError, raised before any record is read.
    """
    import cv2

    out = Path(out)
    fmt = out.suffix.lower()
    if fmt not in SHEET_FORMATS:
        raise ValueError(f"{out}: unknown image format {out.suffix or '(no suffix)'!r}: use {', '.join(SHEET_FORMATS)}")
    if not out.parent.is_dir():
        raise ValueError(f"{out}: the folder {out.parent} does not exist")
    opts = SHEET_FORMATS[fmt]
    params = [getattr(cv2, f"IMWRITE_{opts[0]}"), opts[1]] if opts else []
    with Pack(str(pack_path)) as pack:
        sheet = contact_sheet(pack, records=pick_records(pack, count, start, shuffle, seed, per_class))
    ok, buf = cv2.imencode(fmt, sheet[..., ::-1], params)
    if not ok:
        raise OSError(f"{out}: could not encode the {fmt[1:].upper()} image")
    out.write_bytes(buf.tobytes())
    return out
