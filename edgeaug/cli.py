"""The ``edgeaug`` command: a thin typer layer over the library.

Each command imports the library modules it uses inside its function, so that
``edgeaug --help`` and light commands start without loading numpy and OpenCV.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional, TextIO

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


class LineProgress:
    """Progress as plain lines, for logs and pipes: the first update, then every ``interval`` seconds, and the last.

    ``done`` is the last count reported (an interrupted build says how far it got).
    """

    def __init__(
        self,
        label: str,
        unit: str,
        out: Optional[TextIO] = None,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.unit, self.out, self.interval, self.clock = label, unit, out, interval, clock
        self.start, self.last, self.done = clock(), None, 0

    def __call__(self, done: int, total: int) -> None:
        self.done = done
        now = self.clock()
        if self.last is not None and done < total and now - self.last < self.interval:
            return
        self.last = now
        pct = f" ({100 * done / total:.0f}%)" if total else ""
        print(
            f"{self.label}: {done}/{total} {self.unit}{pct}, {now - self.start:.0f}s",
            file=self.out or sys.stderr,
            flush=True,
        )


@contextmanager
def _progress(label: str, enabled: bool = True, unit: str = "sources"):
    """A ``progress(done, total)`` callback: a rich bar on a terminal, periodic lines on stderr otherwise."""
    if not enabled:
        yield None
        return
    if not sys.stderr.isatty():
        yield LineProgress(label, unit)
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


_SOURCE_HELP = (
    "The labelled images, read by kind: (1) a folder with one subfolder per class; (2) a YOLO folder: images/ "
    "and labels/ (data.yaml: names, kpt_shape, flip_idx); (3) a COCO folder (one .json beside images/ or in "
    "annotations/) or the COCO .json itself; (4) a segmentation folder: images/ and masks/ (PNG class ids, "
    "classes.txt); (5) a CSV or JSONL manifest with path,label (JSONL also boxes, keypoints; both mask)."
)


@app.command()
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
        0.0, "--val", help="Fraction of sources per class held out (unaugmented) as the val split."
    ),
    on_error: str = typer.Option(
        "skip", "--on-error", help="skip: skip and report unreadable sources; fail: stop at the first."
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
        help="Render on the Dask cluster at tcp://HOST:PORT (pip install 'edgeaug[dask]'); its workers must "
        "see SOURCE at the same path. Same pack, byte for byte.",
    ),
    shard: Optional[str] = typer.Option(
        None,
        "--shard",
        help="I/N: render only shard I of N (0-based) into OUTPUT.partial, e.g. one per Slurm array task on "
        "machines sharing the folder; then the same command without --shard seals the pack.",
    ),
) -> None:
    """Build a pack: K seeded augmented variants of every image, as the target's exact tensors.

    Ctrl-C stops the build and keeps the finished sources in OUTPUT.partial: the same command resumes.
    """
    from edgeaug.build.builder import build as run_build
    from edgeaug.config.recipe import load_recipe

    with _errors():
        rcp = load_recipe(recipe).with_variants(variants)
        if rcp.variants == 0 and not rcp.include_original:
            _fail("--variants 0 with a recipe that excludes the original leaves nothing to build")
    if rcp.variants == 0:
        typer.echo("note: 0 variants: building the originals only (no augmented variants)", err=True)
    with _errors(), _progress("rendering", not quiet) as progress:
        try:
            more = dict(resume=resume, dask_scheduler=dask_scheduler, shard=shard)
            res = run_build(source, output, target, rcp, None, seed, workers, val, on_error, progress, **more)
        except KeyboardInterrupt:
            _interrupted(output)
    _report_build(res)


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
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress while regenerating."),
) -> None:
    """Check every record's digest; with --source, regenerate records and compare bytes.

    Exit code 0 only if everything checked matches.
    """
    from edgeaug.verify import verify_pack

    with _errors(), _progress("regenerating", source is not None and not quiet, "records") as progress:
        rep = verify_pack(pack, source, sample, progress)
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
def recipes() -> None:
    """List the shipped recipes: pass a name to `build --recipe` (or copy the file and edit it)."""
    from edgeaug.config.recipe import describe_recipe, list_recipes, load_recipe

    with _errors():
        for p in list_recipes():
            r = load_recipe(p)
            ops = ", ".join(o.op for o in r.ops) or "no ops"
            typer.echo(f"{p.stem:10} {describe_recipe(p)}")
            typer.echo(f"{'':10} {r.variants} variants, {r.resize} resize; ops: {ops}")
            typer.echo(f"{'':10} {p}")


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
    from edgeaug.models.litert import LiteRTError
    from edgeaug.models.profile import ModelError

    with _errors():
        try:
            yield
        except (ModelError, LiteRTError) as e:
            _fail(str(e))


def _numbers(text: Optional[str], flag: str):
    from edgeaug.models.profile import parse_numbers

    return None if text is None else parse_numbers(text, flag)


# Options shared by `target from-onnx` and `target from-tflite`.
_T_OUTPUT = typer.Option(None, "-o", "--output", help="TOML to write; default targets/NAME.toml.")
_T_NAME = typer.Option(
    None,
    "--name",
    help="Profile name, the file targets/NAME.toml when -o is not given (default: the model's file name).",
)
_T_SIZE = typer.Option(None, "--size", help="HxW for dynamic height/width, e.g. 224x224.")
_T_MEAN = typer.Option(
    None, "--mean", help="Per-channel mean, e.g. 0.485,0.456,0.406 (default: model metadata 'mean', else 0)."
)
_T_STD = typer.Option(None, "--std", help="Per-channel std (default: model metadata 'std', else 1).")
_T_COLOR = typer.Option(None, "--color", help="RGB, BGR or GRAY (default: metadata 'color', else by channels).")
_T_LAYOUT = typer.Option(None, "--layout", help="NCHW or NHWC when the shape is ambiguous.")
_T_INPUT = typer.Option(None, "--input", help="Which input, for multi-input models.")
_T_DEVICE = typer.Option(None, "--device", help="Device name stored in the profile.")
_T_ARCH = typer.Option("any", "--arch", help="Device arch: aarch64, armv7l, x86_64 or any.")
_T_WORD = typer.Option(64, "--word-size", help="32 or 64 (the device OS).")


@target_app.command("from-onnx")
def target_from_onnx(
    model: Path = typer.Argument(..., help="The ONNX model (float, QDQ-quantized, or adapted)."),
    output: Optional[Path] = _T_OUTPUT,
    name: Optional[str] = _T_NAME,
    size: Optional[str] = _T_SIZE,
    mean: Optional[str] = _T_MEAN,
    std: Optional[str] = _T_STD,
    color: Optional[str] = _T_COLOR,
    layout: Optional[str] = _T_LAYOUT,
    input_name: Optional[str] = _T_INPUT,
    device: Optional[str] = _T_DEVICE,
    arch: str = _T_ARCH,
    word_size: int = _T_WORD,
) -> None:
    """Write a target profile read from the model: input name, shape, dtype, layout, quantization."""
    from edgeaug.models.from_model import write_target

    _model_target(
        write_target, model, output, name, size, mean, std, color, layout, input_name, device, arch, word_size
    )


@target_app.command("from-tflite")
def target_from_tflite(
    model: Path = typer.Argument(..., help="The .tflite (LiteRT) model: float, or full-integer quantized."),
    output: Optional[Path] = _T_OUTPUT,
    name: Optional[str] = _T_NAME,
    size: Optional[str] = _T_SIZE,
    mean: Optional[str] = _T_MEAN,
    std: Optional[str] = _T_STD,
    color: Optional[str] = _T_COLOR,
    layout: Optional[str] = _T_LAYOUT,
    input_name: Optional[str] = _T_INPUT,
    device: Optional[str] = _T_DEVICE,
    arch: str = _T_ARCH,
    word_size: int = _T_WORD,
) -> None:
    """Write a target profile read from a .tflite model's input tensor: name, shape, dtype, scale, zero point.

    Normalization comes from --mean/--std, else the model's metadata, else the input's quantized range.
    No interpreter is needed (the flatbuffer is read directly).
    """
    from edgeaug.models.litert import write_tflite_target

    _model_target(
        write_tflite_target, model, output, name, size, mean, std, color, layout, input_name, device, arch, word_size
    )


def _model_target(write, model, output, name, size, mean, std, color, layout, input_name, device, arch, word_size):
    """Derive, write and report a target with ``write(model, out, **kw)``; the models' warnings become lines."""
    import warnings

    with _model_errors(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hw = _size(size)
        name = name or model.stem
        out = output or Path("targets") / f"{name}.toml"
        dev = {"arch": arch, "word_size": word_size, **({"name": device} if device else {})}
        t = write(
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
    for w in caught:
        typer.secho(f"warning: {w.message}", fg="yellow", err=True)
    q = f", scale {t.scale!r}, zero point {t.zero_point}" if t.dtype in ("uint8", "int8") else ""
    typer.echo(f"wrote {out}: {t.input_name} {t.dtype} {t.layout} {t.height}x{t.width} {t.color}{q}")


def _size(size: Optional[str]):
    if size is None:
        return None
    parts = size.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        _fail(f"--size: expected HxW like 224x224, got {size!r}")
    return int(parts[0]), int(parts[1])


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
    model: Path = typer.Option(
        ..., "--model", "-m", help="An ONNX or .tflite (LiteRT) model whose input is the pack's tensor."
    ),
    split: Optional[str] = typer.Option(None, "--split", help="train or val (default: val when the pack has one)."),
    batch: int = typer.Option(32, "--batch", help="Batch size (a fixed-batch model uses its own)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Accuracy of a classifier on a pack split and samples/s, batches fed with no conversion."""
    if split not in (None, "train", "val"):
        _fail(f"--split: {split!r} is not train or val")
    with _model_errors():
        if model.suffix.lower() == ".tflite":
            from edgeaug.models.litert import evaluate_tflite

            r = evaluate_tflite(pack, model, split, batch)
        else:
            from edgeaug.models.evaluate import evaluate

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
    as_json: bool = typer.Option(
        False, "--json", help="Print JSON: record, split, source, source_index, variant, label and params."
    ),
) -> None:
    """Show the source, variant and the ops with their sampled parameters that made one record."""
    from edgeaug.device.loader import Pack
    from edgeaug.preview import explain as explain_record

    with _errors(), Pack(str(pack)) as p:
        if not 0 <= index < p.records:
            _fail(f"INDEX {index} is outside the pack's {p.records} records")
        lines = [json.dumps(_explain_json(p, index), indent=2)] if as_json else explain_record(p, index)
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
    }


@app.command()
def preview(
    pack: Path = typer.Argument(..., help="The pack file."),
    output: Path = typer.Option(
        ..., "-o", "--output", help="The contact sheet to write; its suffix sets the format (.png, .jpg, .webp)."
    ),
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
        except (IndexError, ValueError) as e:
            _fail(str(e))
    typer.echo(f"wrote {out}")


if __name__ == "__main__":
    app()
