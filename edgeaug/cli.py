"""The ``edgeaug`` command: a thin typer layer over the library."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Offline, deterministic data augmentation for edge devices.\n\n"
    "Build a pack of augmented, already-quantized model inputs on the workstation; "
    "load it on the device with numpy and lmdb only (python -m edgeaug.loader).",
)


def _fail(msg: str, code: int = 2) -> None:
    typer.secho(f"error: {msg}", fg="red", err=True)
    raise typer.Exit(code)


@contextmanager
def _errors() -> Iterator[None]:
    """Turn the library's expected errors into one clear line and exit code 2."""
    from edgeaug.build.builder import BuildError
    from edgeaug.build.writer import WriteError
    from edgeaug.config.fields import ConfigError
    from edgeaug.device.format import FormatError
    from edgeaug.sources.scan import SourceError

    try:
        yield
    except (BuildError, ConfigError, FormatError, SourceError, WriteError, OSError) as e:
        _fail(str(e))


@contextmanager
def _progress(label: str, enabled: bool = True):
    """A rich progress bar on stderr; yields a ``progress(done, total)`` callback."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


@app.command()
def build(
    source: Path = typer.Argument(
        ..., help="A folder with one subfolder per class, or a CSV/JSONL manifest with path,label."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="The pack file to write (e.g. flowers-rpi4.lmdb)."),
    target: str = typer.Option(
        ..., "--target", "-t", help="A shipped profile name (see `edgeaug targets`) or a .toml path."
    ),
    recipe: Optional[Path] = typer.Option(
        None, "--recipe", "-r", help="Recipe TOML; default: the shipped default recipe."
    ),
    variants: Optional[int] = typer.Option(
        None, "--variants", "-k", help="Augmented variants per image (overrides the recipe)."
    ),
    seed: int = typer.Option(0, "--seed", "-s", help="Build seed: same inputs + seed = byte-identical pack."),
    workers: Optional[int] = typer.Option(
        None, "--workers", "-w", help="Worker processes (default: all cores). Never changes the output."
    ),
    val: float = typer.Option(
        0.0, "--val", help="Fraction of sources per class held out (unaugmented) as the val split."
    ),
    on_error: str = typer.Option(
        "skip", "--on-error", help="skip: skip and report unreadable sources; fail: stop at the first."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    resume: Optional[bool] = typer.Option(
        None,
        "--resume/--no-resume",
        help="An interrupted build of OUTPUT resumes by default when the inputs match; "
        "--resume insists, --no-resume starts over.",
    ),
) -> None:
    """Build a pack: K seeded augmented variants of every image, as the target's exact tensors."""
    from edgeaug.build.builder import build as run_build

    with _errors(), _progress("rendering", not quiet) as progress:
        res = run_build(source, output, target, recipe, variants, seed, workers, val, on_error, progress, resume=resume)
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


@app.command()
def inspect(
    pack: Path = typer.Argument(..., help="The pack file."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a summary."),
) -> None:
    """Show what a pack holds: target, recipe, seed, counts, versions, fingerprint."""
    from edgeaug.device.loader import Pack

    with _errors(), Pack(str(pack)) as p:
        m = p.manifest
        info = {
            **p.info(),
            "recipe": m["recipe"],
            "counts": m["counts"],
            "versions": m["versions"],
            "skipped": m["skipped"],
            "val_fraction": m["val_fraction"],
            "quantization_audit": m.get("quantization_audit"),
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
        f"ops: {', '.join(o['op'] for o in info['recipe']['ops']) or 'none'}"
    )
    typer.echo(f"  classes  {', '.join(info['classes'])}")
    typer.echo(f"  built by {', '.join(f'{k} {v}' for k, v in info['versions'].items())}")
    if info["skipped"]:
        typer.echo(f"  skipped  {len(info['skipped'])} sources (see --json)")
    _show_audit(info["quantization_audit"])


def _show_audit(entry) -> None:
    from edgeaug.build.audit import warnings_for

    if not entry:
        return
    for c, ch in enumerate(entry["channels"]):
        typer.echo(
            f"  quant ch{c} clipped {ch['clip_low']:.2%} low / {ch['clip_high']:.2%} high, "
            f"mean |err| {ch['mae']:.4g}, max |err| {ch['max_error']:.4g}"
        )
    for w in warnings_for(entry):
        typer.secho(f"  warning: {w}", fg="yellow")


@app.command()
def verify(
    pack: Path = typer.Argument(..., help="The pack file."),
    source: Optional[Path] = typer.Option(
        None, "--source", help="The build's source dataset: regenerate records and compare bytes."
    ),
    sample: Optional[int] = typer.Option(
        None, "--sample", help="With --source, regenerate only N records (chosen reproducibly)."
    ),
) -> None:
    """Check every record's digest; with --source, regenerate records and compare bytes.

    Exit code 0 only if everything checked matches.
    """
    from edgeaug.verify import verify_pack

    with _errors():
        rep = verify_pack(pack, source, sample)
    for line in rep.digest_problems + rep.source_problems + [str(m) for m in rep.mismatches]:
        typer.echo(line)
    typer.echo(rep.summary())
    if not rep.ok:
        raise typer.Exit(1)


@app.command()
def targets() -> None:
    """List the shipped device profiles."""
    from edgeaug.config.targets import list_targets, load_target

    for p in list_targets():
        t = load_target(p)
        typer.echo(
            f"{t.name:15} {t.device.name} ({t.device.arch}, {t.device.word_size}-bit): "
            f"{t.dtype} {t.layout} {t.height}x{t.width} {t.color}"
        )


@app.command()
def demo(
    out: Path = typer.Option(Path("edgeaug-demo"), "--out", help="Folder for the sample dataset and the pack."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help="Worker processes."),
) -> None:
    """Generate a small procedural dataset, build an rpi4 pack, verify it and load it."""
    from edgeaug.demo import run_demo

    with _errors(), _progress("rendering") as progress:
        summary = run_demo(out, workers, progress, typer.echo)
    if not summary["verified"]:
        _fail("the demo pack did not verify", 1)


@app.command("bundle-loader")
def bundle_loader(
    out: Path = typer.Option(Path("edgeaug_loader.py"), "--out", "-o", help="The single .py file to write."),
) -> None:
    """Write the device loader as one self-contained file (numpy + optional lmdb only)."""
    from edgeaug.device.bundle import BundleError, write_bundle

    try:
        path = write_bundle(out)
    except (BundleError, OSError) as e:
        _fail(str(e))
    typer.echo(f"wrote {path}: copy it to the device, then 'python3 {path.name} verify PACK'")


# --- ONNX: targets from models, adapted models, eval (onnx / onnxruntime optional) ---

target_app = typer.Typer(no_args_is_help=True, help="Derive device target profiles from models.")
app.add_typer(target_app, name="target")


@contextmanager
def _model_errors() -> Iterator[None]:
    from edgeaug.models.profile import ModelError

    with _errors():
        try:
            yield
        except ModelError as e:
            _fail(str(e))


def _numbers(text: Optional[str], flag: str):
    from edgeaug.models.profile import parse_numbers

    return None if text is None else parse_numbers(text, flag)


@target_app.command("from-onnx")
def target_from_onnx(
    model: Path = typer.Argument(..., help="The ONNX model (float, QDQ-quantized, or adapted)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="TOML to write; default targets/NAME.toml."),
    name: Optional[str] = typer.Option(
        None,
        "--name",
        help="Profile name, the file targets/NAME.toml when -o is not given (default: the model's file name).",
    ),
    size: Optional[str] = typer.Option(None, "--size", help="HxW for dynamic height/width, e.g. 224x224."),
    mean: Optional[str] = typer.Option(
        None, "--mean", help="Per-channel mean, e.g. 0.485,0.456,0.406 (default: model metadata 'mean', else 0)."
    ),
    std: Optional[str] = typer.Option(None, "--std", help="Per-channel std (default: model metadata 'std', else 1)."),
    color: Optional[str] = typer.Option(
        None, "--color", help="RGB, BGR or GRAY (default: metadata 'color', else by channels)."
    ),
    layout: Optional[str] = typer.Option(None, "--layout", help="NCHW or NHWC when the shape is ambiguous."),
    input_name: Optional[str] = typer.Option(None, "--input", help="Which input, for multi-input models."),
    device: Optional[str] = typer.Option(None, "--device", help="Device name stored in the profile."),
    arch: str = typer.Option("any", "--arch", help="Device arch: aarch64, armv7l, x86_64 or any."),
    word_size: int = typer.Option(64, "--word-size", help="32 or 64 (the device OS)."),
) -> None:
    """Write a target profile read from the model: input name, shape, dtype, layout, quantization."""
    from edgeaug.models.from_model import write_target

    with _model_errors():
        hw = None
        if size is not None:
            parts = size.lower().split("x")
            if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
                _fail(f"--size: expected HxW like 224x224, got {size!r}")
            hw = (int(parts[0]), int(parts[1]))
        name = name or model.stem
        out = output or Path("targets") / f"{name}.toml"
        dev = {"arch": arch, "word_size": word_size, **({"name": device} if device else {})}
        t = write_target(
            model,
            out,
            name=name,
            size=hw,
            mean=_numbers(mean, "--mean"),
            std=_numbers(std, "--std"),
            color=color,
            layout=layout,
            input_name=input_name,
            device=dev,
        )
    q = f", scale {t.scale!r}, zero point {t.zero_point}" if t.dtype in ("uint8", "int8") else ""
    typer.echo(f"wrote {out}: {t.input_name} {t.dtype} {t.layout} {t.height}x{t.width} {t.color}{q}")


@app.command("adapt-model")
def adapt_model(
    model: Path = typer.Argument(..., help="A QDQ-quantized model (or a float one with --insert-preprocess)."),
    output: Path = typer.Option(..., "-o", "--output", help="The adapted model to write."),
    insert_preprocess: bool = typer.Option(
        False, "--insert-preprocess", help="Float model: take uint8 NHWC pixels (Cast, normalize, Transpose inserted)."
    ),
    mean: Optional[str] = typer.Option(
        None, "--mean", help="With --insert-preprocess: per-channel mean (default: metadata, else 0)."
    ),
    std: Optional[str] = typer.Option(
        None, "--std", help="With --insert-preprocess: per-channel std (default: metadata, else 1)."
    ),
    layout: Optional[str] = typer.Option(None, "--layout", help="The model's layout when ambiguous: NCHW or NHWC."),
    input_name: Optional[str] = typer.Option(None, "--input", help="Which input, for multi-input models."),
) -> None:
    """Make a model take the pack's integer tensor directly (drops a QDQ model's input QuantizeLinear)."""
    from edgeaug.models.adapt import adapt_model as run_adapt

    with _model_errors():
        r = run_adapt(
            model, output, insert_preprocess, _numbers(mean, "--mean"), _numbers(std, "--std"), layout, input_name
        )
    what = "input QuantizeLinear removed" if r.kind == "qdq" else "pixel preprocessing inserted"
    typer.echo(
        f"wrote {output}: {what}; input {r.input_name} is {r.dtype} {list(r.shape)}, "
        f"scale {r.scale!r}, zero point {r.zero_point}"
    )
    typer.echo(f"next: edgeaug target from-onnx {output} -o targets/{output.stem}.toml")


@app.command("eval")
def eval_pack(
    pack: Path = typer.Argument(..., help="The pack file."),
    model: Path = typer.Option(..., "--model", "-m", help="An ONNX model whose input is the pack's tensor."),
    split: Optional[str] = typer.Option(None, "--split", help="train or val (default: val when the pack has one)."),
    batch: int = typer.Option(32, "--batch", help="Batch size (a fixed-batch model uses its own)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Accuracy of a classifier on a pack split and samples/s, batches fed with no conversion."""
    from edgeaug.models.evaluate import evaluate

    if split not in (None, "train", "val"):
        _fail(f"--split: {split!r} is not train or val")
    with _model_errors():
        r = evaluate(pack, model, split, batch)
    if as_json:
        typer.echo(json.dumps(r, indent=2, sort_keys=True))
        return
    acc = (
        "no class labels"
        if r["accuracy"] is None
        else f"accuracy {100 * r['accuracy']:.2f}% ({r['correct']}/{r['labelled']})"
    )
    typer.echo(
        f"{model.name} on {pack.name} [{r['split']}]: {acc}; {r['samples_per_s']:.0f} samples/s "
        f"({r['model_samples_per_s']:.0f} inference only, batch {r['batch']})"
    )


@app.command()
def explain(
    pack: Path = typer.Argument(..., help="The pack file."),
    index: int = typer.Argument(..., help="Record index in the whole pack (train records first, then val)."),
    as_json: bool = typer.Option(False, "--json", help="Print the stored parameters as JSON."),
) -> None:
    """Show the source, variant and the ops with their sampled parameters that made one record."""
    from edgeaug.device.loader import Pack
    from edgeaug.preview import explain as explain_record

    with _errors(), Pack(str(pack)) as p:
        if not 0 <= index < p.records:
            _fail(f"INDEX {index} is outside the pack's {p.records} records")
        lines = [json.dumps(p.record_at(index)["params"], indent=2)] if as_json else explain_record(p, index)
    typer.echo("\n".join(lines))


@app.command()
def preview(
    pack: Path = typer.Argument(..., help="The pack file."),
    output: Path = typer.Option(..., "-o", "--output", help="The PNG contact sheet to write."),
    count: int = typer.Option(16, "--count", "-n", help="How many records to show."),
    start: int = typer.Option(0, "--start", help="First record index (whole pack)."),
) -> None:
    """Write a contact sheet of records, de-quantized, with boxes, masks and keypoints drawn."""
    from edgeaug.preview import write_preview

    if count < 1:
        _fail("--count must be at least 1")
    with _errors():
        try:
            out = write_preview(pack, output, count, start)
        except IndexError as e:
            _fail(str(e))
    typer.echo(f"wrote {out}")


if __name__ == "__main__":
    app()
