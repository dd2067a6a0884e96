"""Commands that look into a pack: inspect (the manifest), explain (one record), preview (a contact sheet)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edgeaug.commands.common import errors, fail


def inspect(
    pack: Path = typer.Argument(..., help="The pack file."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a summary."),
) -> None:
    """Show what a pack holds: target, recipe, seed, counts, versions, fingerprint."""
    from edgeaug.device.loader import Pack

    with errors(pack), Pack(str(pack)) as p:
        m = p.manifest
        info = {
            **p.info(),
            "recipe": m["recipe"],
            "counts": m["counts"],
            "versions": m["versions"],
            "skipped": m["skipped"],
            "val_fraction": m["val_fraction"],
            "quantization_audit": m.get("quantization_audit"),
            "labels": p.labels_summary(),
        }
    if as_json:
        typer.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    typer.echo(f"{pack}: edgeaug pack v{info['format_version']}, fingerprint {info['fingerprint']}")
    typer.echo(f"  target   {info['target']}: {info['dtype']} {info['shape']}")
    typer.echo(
        f"  records  {info['records']} ({', '.join(f'{k} {v}' for k, v in info['splits'].items())}), "
        f"seed {info['seed']}"
    )
    typer.echo(
        f"  recipe   {info['recipe']['variants']} variants, original "
        f"{'included' if info['recipe']['include_original'] else 'excluded'}, "
        f"ops: {', '.join(o['op'] for o in info['recipe']['ops']) or 'none'}" + _plain_note(info["recipe"])
    )
    typer.echo(f"  classes  {', '.join(info['classes'])}")
    typer.echo(f"  labels   {_labels_line(info['labels'])}")
    typer.echo(f"  storage  {_storage(info['compression'], info['size'])}")
    typer.echo(f"  built by {', '.join(f'{k} {v}' for k, v in info['versions'].items())}")
    if info["skipped"]:
        typer.echo(f"  skipped  {len(info['skipped'])} sources (see --json)")
    _show_audit(info["quantization_audit"])


def _plain_note(recipe: dict) -> str:
    """The recipe's plain variants (no multi-image op: ``Pack.plain_variants``, for close_mosaic), if any."""
    n, k = int(recipe.get("plain_variants", 0)), int(recipe["variants"])
    if not n:
        return ""
    which = f"variant {k}" if n == 1 else f"variants {k - n + 1}..{k}"
    return f"; plain (no multi-image op): {which}"


def _storage(comp: dict, size: dict) -> str:
    """Codec, level, and the record bytes against the same records with raw tensors."""
    codec = comp.get("codec", "none")
    head = "raw tensors" if codec == "none" else f"{codec} level {comp.get('level')}"
    mb = size["file_bytes"] / 1e6
    if codec == "none":
        return f"{head}, file {mb:,.1f} MB"
    return (
        f"{head}, file {mb:,.1f} MB; records {size['vs_raw']:.3f}x their raw size "
        f"({size['record_bytes'] / 1e6:,.1f} of {size['raw_record_bytes'] / 1e6:,.1f} MB), "
        f"tensors {size['tensor_vs_raw']:.3f}x"
    )


def _labels_line(s: dict) -> str:
    """Instance masks and offline mixed records (soft labels) in the pack, from ``Pack.labels_summary``."""
    inst = (
        f"{s['instances']} instance masks in {s['with_instances']} records"
        if s["with_instances"]
        else "no instance masks"
    )
    mixed = f"{s['mixed']} mixed records (soft labels)" if s["mixed"] else "no mixed records"
    bad = f", {s['unreadable']} unreadable (run verify)" if s["unreadable"] else ""
    return f"{inst}, {mixed}{bad}"


def _show_audit(entry) -> None:
    from edgeaug.builder.audit import warnings_for

    if not entry:
        return
    for c, ch in enumerate(entry["channels"]):
        typer.echo(
            f"  quant ch{c} clipped {ch['clip_low']:.2%} low / {ch['clip_high']:.2%} high, "
            f"mean |err| {ch['mae']:.4g}, max |err| {ch['max_error']:.4g}"
        )
    for w in warnings_for(entry):
        typer.secho(f"  warning: {w}", fg="yellow")


# --- one record, and a contact sheet ----------------------------------------------


def explain(
    pack: Path = typer.Argument(..., help="The pack file."),
    index: int = typer.Argument(
        ..., help="Record index in the whole pack (train records first, then val); negative counts from the end."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print JSON: record, split, source, source_index, variant, label, params and partners."
    ),
) -> None:
    """Show the source, variant and the ops with their sampled parameters that made one record."""
    from edgeaug.device.loader import Pack
    from edgeaug.preview import explain as explain_record

    with errors(pack), Pack(str(pack)) as p:
        i = index + p.records if index < 0 else index
        if not 0 <= i < p.records:
            n = p.records
            valid = f"0..{n - 1}, or -{n}..-1 from the end" if n else "it is empty"
            fail(f"INDEX {index} is outside the pack's {n} records ({valid})")
        lines = [json.dumps(_explain_json(p, i), indent=2)] if as_json else explain_record(p, i)
    typer.echo("\n".join(lines))


def _explain_json(pack, index: int) -> dict:
    """Which source and variant record ``index`` is, its split and label, and the stored op parameters."""
    r = pack.record_at(index)
    sources = pack.manifest["sources"]
    return {
        "record": index,
        "split": "val" if r["split"] else "train",
        "source_index": r["source"],
        "source": sources[r["source"]]["path"] if r["source"] < len(sources) else None,
        "variant": r["variant"],
        "label": r["label"],
        "params": r["params"],
        "partners": _partners(r["params"].get("ops", [])),
    }


def _partners(entries: list) -> list:
    """The paths of the partners a multi-image op combined into the record (its params name them)."""
    out: list = []
    for e in entries if isinstance(entries, list) else []:
        if isinstance(e, dict) and e.get("on"):
            rels = e.get("partner_rels")
            out += [str(p) for p in rels] if isinstance(rels, list) else []
            out += _partners(e.get("ops", []))
    return out


def preview(
    pack: Path = typer.Argument(..., help="The pack file."),
    output: Path = typer.Option(
        ...,
        "-o",
        "--output",
        help="The contact sheet to write; its suffix sets the format: .png, .jpg or .jpeg, .webp, .bmp.",
    ),
    count: int = typer.Option(16, "--count", "-n", min=1, help="How many records to show."),
    start: int = typer.Option(0, "--start", min=0, help="First record index (whole pack)."),
    shuffle: bool = typer.Option(False, "--shuffle", help="Pick records at random (from --start on), by --seed."),
    seed: int = typer.Option(0, "--seed", help="With --shuffle: the same seed shows the same records."),
    per_class: bool = typer.Option(
        False, "--per-class", help="Take the classes in turn (by the sources' labels), e.g. 4 classes x 4 records."
    ),
) -> None:
    """Write a contact sheet of records, de-quantized, with boxes, masks and keypoints drawn.

    A legend under the grid names the class colours (boxes, mask tints) and the keypoint colours.
    """
    from edgeaug.preview import write_preview

    with errors(output):
        try:
            out = write_preview(pack, output, count, start, shuffle, seed, per_class)
        except (IndexError, ValueError) as e:
            fail(str(e))
    typer.echo(f"wrote {out}")
