"""Commands on packs and datasets: build, verify, targets, recipes, ops, demo, bundle-loader.

The commands that look into a pack (inspect, explain, preview) are in :mod:`edgeaug.commands.inspect`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from edgeaug.commands.common import OnError, errors, fail, progress_to, shard_arg, val_arg

_SOURCE_HELP = (
    "The labelled images, read by kind: (1) a folder with one subfolder per class; (2) a YOLO folder: images/ "
    "and labels/ (data.yaml: names, kpt_shape, flip_idx); (3) a COCO folder (one .json beside images/ or in "
    "annotations/) or the COCO .json itself; (4) a segmentation folder: images/ and masks/ (PNG class ids, "
    "classes.txt); (5) a CSV or JSONL manifest with path,label (JSONL also boxes, keypoints; both mask)."
)


def build(
    source: Path = typer.Argument(..., help=_SOURCE_HELP),
    output: Path = typer.Option(..., "-o", "--output", help="The pack file to write (e.g. flowers-rpi4.lmdb)."),
    target: str = typer.Option(
        ..., "--target", "-t", help="A shipped profile name (see `edgeaug targets`) or a .toml path."
    ),
    recipe: Optional[str] = typer.Option(
        None,
        "--recipe",
        "-r",
        help="A shipped recipe name (see `edgeaug recipes`: default, detection) or a recipe .toml path; "
        "default: the shipped default recipe.",
    ),
    variants: Optional[int] = typer.Option(
        None,
        "--variants",
        "-k",
        help="Augmented variants per image (overrides the recipe); 0 builds the originals only.",
    ),
    seed: int = typer.Option(0, "--seed", "-s", help="Build seed: same inputs + seed = byte-identical pack."),
    workers: Optional[int] = typer.Option(
        None, "--workers", "-w", help="Worker processes (default: all cores). Never changes the output."
    ),
    val: float = typer.Option(
        0.0,
        "--val",
        min=0.0,
        callback=val_arg,
        help="Fraction of sources per class held out (unaugmented) as the val split, in [0, 1); a split left "
        "empty is warned about.",
    ),
    on_error: OnError = typer.Option(
        OnError["skip"], "--on-error", help="skip: skip and report unreadable sources; fail: stop at the first."
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress (a bar on a terminal, else a line every 10 s on stderr)."
    ),
    resume: Optional[bool] = typer.Option(
        None,
        "--resume/--no-resume",
        help="An interrupted build of OUTPUT resumes by default when the inputs match; "
        "--resume insists, --no-resume starts over.",
    ),
    dask_scheduler: Optional[str] = typer.Option(
        None,
        "--dask-scheduler",
        help="Render on the Dask cluster at tcp://HOST:PORT (pip install 'edgeaug\\[dask]'); its workers must "
        "see SOURCE at the same path. Same pack, byte for byte.",
    ),
    shard: Optional[str] = typer.Option(
        None,
        "--shard",
        metavar="I/N",
        callback=shard_arg,
        help="I/N: render only shard I of N (0-based) into OUTPUT.partial, e.g. one per Slurm array task on "
        "machines sharing the folder; then the same command without --shard seals the pack.",
    ),
    compress: Optional[str] = typer.Option(
        None,
        "--compress",
        help="none | zlib | zstd: store each record's tensor losslessly compressed (about 0.55x on photos; "
        "zstd needs python3-zstandard on the device, zlib always works). none keeps the zero-copy mapped path. "
        "Default: the target profile's [pack] compress (every shipped profile: none).",
    ),
    level: Optional[int] = typer.Option(
        None, "--level", help="Codec level (zlib 0-9, default 6; zstd 1-19, default 1; or the profile's [pack] level)."
    ),
) -> None:
    """Build a pack: K seeded augmented variants of every image, as the target's exact tensors.

    Ctrl-C stops the build and keeps the finished sources in OUTPUT.partial: the same command resumes.
    """
    from edgeaug.builder.processes import start_early, use_single_threaded_blas

    use_single_threaded_blas()  # before numpy is imported
    start_early(workers, dask_scheduler)  # the worker processes' imports overlap this process's own
    from edgeaug.builder.pipeline import BuildError
    from edgeaug.builder.pipeline import build as run_build
    from edgeaug.builder.writer import WriteError
    from edgeaug.config.recipe import load_recipe

    with errors():
        rcp = load_recipe(recipe).with_variants(variants)
        if rcp.variants == 0 and not rcp.include_original:
            fail("--variants 0 with a recipe that excludes the original leaves nothing to build")
    if rcp.variants == 0:
        typer.echo("note: 0 variants: building the originals only (no augmented variants)", err=True)
    with errors(output), progress_to("rendering", not quiet) as progress:
        try:
            more = dict(resume=resume, dask_scheduler=dask_scheduler, shard=shard, compress=compress, level=level)
            res = run_build(source, output, target, rcp, None, seed, workers, val, on_error.value, progress, **more)
        except KeyboardInterrupt:
            _interrupted(output)
        except (BuildError, WriteError) as e:
            if resume:  # --resume insisted: say how to start over instead
                partial = output.with_name(output.name + ".partial")
                fail(f"{e}\n  to start over instead: the same command with --no-resume (it clears {partial})")
            raise
    _report_build(res)
    _warn_empty_splits(res, val)


def _interrupted(output: Path) -> None:
    """Ctrl-C during a build: say what was kept, exit 130 (128 + SIGINT) as shells expect."""
    partial = output.with_name(output.name + ".partial")
    if partial.exists():
        msg = f"interrupted: the sources finished so far are kept in {partial}; rerun the same command to resume"
    else:
        msg = "interrupted before any source was saved; rerun the same command to start again"
    typer.secho(msg, fg="yellow", err=True)
    raise typer.Exit(130)


def _report_build(res) -> None:
    if res.shard is not None:
        i, n = res.shard
        typer.echo(
            f"rendered shard {i}/{n}: {res.records} records into {res.path}; {res.chunks_done} of "
            f"{res.chunks_total} chunks of the build are done; when all are, run the same command "
            f"without --shard to seal the pack"
        )
        return
    if res.resumed:
        typer.echo(f"resumed an interrupted build: {res.resumed} sources were already written")
    typer.echo(
        f"wrote {res.path}: {res.records} records ({', '.join(f'{k} {v}' for k, v in res.splits.items())}) "
        f"in {res.seconds:.1f}s; fingerprint {res.fingerprint}"
    )
    for s in res.skipped:
        typer.secho(f"skipped {s['path']}: {s['reason']}", fg="yellow", err=True)
    for w in res.warnings:
        typer.secho(f"warning: {w}", fg="yellow", err=True)


def _warn_empty_splits(res, val: float) -> None:
    """--val 0.99 leaves nothing to train on, --val 0.01 nothing to validate on: say so, with the counts."""
    if res.shard is not None or not val:
        return
    train, held = res.splits.get("train", 0), res.splits.get("val", 0)
    if held == 0:
        typer.secho(
            f"warning: --val {val:g} held out no source: the val split is empty (val 0, train {train} records); "
            "a class needs about 1/(2*val) sources for one to be held out",
            fg="yellow",
            err=True,
        )
    if train == 0:
        typer.secho(
            f"warning: --val {val:g} held out every source: the train split is empty (train 0, val {held} records)",
            fg="yellow",
            err=True,
        )


def verify(
    pack: Path = typer.Argument(..., help="The pack file."),
    source: Optional[Path] = typer.Option(
        None, "--source", help="The build's source dataset: regenerate records and compare bytes."
    ),
    sample: Optional[int] = typer.Option(
        None, "--sample", help="With --source, regenerate only N records (chosen reproducibly)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress while regenerating."),
    recipe_dir: Optional[Path] = typer.Option(
        None,
        "--recipe-dir",
        help="With --source: the folder of the recipe the pack was built with, where model files the recipe "
        "names (the onnx op) are found. A pack's model paths must be relative and stay inside SOURCE's folder "
        "or this one.",
    ),
) -> None:
    """Check every record's digest; with --source, regenerate records and compare bytes.

    Exit code 0 only if everything checked matches.
    """
    from edgeaug.verify import verify_pack

    with errors(pack), progress_to("regenerating", source is not None and not quiet, "records") as progress:
        rep = verify_pack(pack, source, sample, progress, recipe_dir)
    for line in rep.digest_problems + rep.source_problems + [str(m) for m in rep.mismatches]:
        typer.echo(line)
    typer.echo(rep.summary())
    if not rep.ok:
        raise typer.Exit(1)


def targets() -> None:
    """List the shipped device profiles."""
    from edgeaug.config.targets import list_targets, load_target

    for p in list_targets():
        t = load_target(p)
        typer.echo(
            f"{t.name:15} {t.device.name} ({t.device.arch}, {t.device.word_size}-bit): "
            f"{t.dtype} {t.layout} {t.height}x{t.width} {t.color}"
        )


def recipes() -> None:
    """List the shipped recipes: pass a name to `build --recipe` (or copy the file and edit it)."""
    from edgeaug.config.recipe import describe_recipe, list_recipes, load_recipe

    with errors():
        for p in list_recipes():
            r = load_recipe(p)
            ops = ", ".join(o.op for o in r.ops) or "no ops"
            typer.echo(f"{p.stem:10} {describe_recipe(p)}")
            typer.echo(f"{'':10} {r.variants} variants, {r.resize} resize; ops: {ops}")
            typer.echo(f"{'':10} {p}")


def ops(
    name: Optional[str] = typer.Argument(None, help="One op's entry only (e.g. mosaic); all ops when omitted."),
    as_json: bool = typer.Option(False, "--json", help="A JSON list of {op, kind, summary, ranges, options}."),
) -> None:
    """List every recipe op with its kind, parameters, default ranges, allowed bounds and options.

    In a recipe, a range is written `param = \\[low, high]` (or one number) and must stay within the allowed
    bounds; options are fixed settings. Kinds: geometric ops compose into one warp, tone ops fuse into one
    lookup table, photometric ops run in recipe order on the output image.
    """
    from edgeaug.ops.catalog import catalogue, describe, text_lines
    from edgeaug.ops.registry import OPS

    if name is not None and name not in OPS:
        fail(f"no op named {name!r}; `edgeaug ops` lists them: {', '.join(sorted(OPS))}")
    entries = [describe(name)] if name else catalogue()
    if as_json:
        typer.echo(json.dumps(entries, indent=2))
        return
    for e in entries:
        typer.echo("\n".join(text_lines(e)))


def demo(
    out: Path = typer.Option(Path("edgeaug-demo"), "--out", help="Folder for the sample dataset and the pack."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help="Worker processes."),
) -> None:
    """Generate a small procedural dataset, build an rpi4 pack, verify it and load it."""
    from edgeaug.demo import run_demo

    with errors(out), progress_to("rendering") as progress:
        summary = run_demo(out, workers, progress, typer.echo)
    if not summary["verified"]:
        fail("the demo pack did not verify", 1)


def bundle_loader(
    out: Path = typer.Option(Path("edgeaug_loader.py"), "--out", "-o", help="The single .py file to write."),
) -> None:
    """Write the device loader as one self-contained file (numpy + optional lmdb only)."""
    from edgeaug.bundle import BundleError, write_bundle

    try:
        path = write_bundle(out)
    except (BundleError, OSError) as e:
        fail(str(e))
    typer.echo(f"wrote {path}: copy it to the device, then 'python3 {path.name} verify PACK'")


# --- ONNX: targets from models, adapted models, eval (onnx / onnxruntime optional) ---
